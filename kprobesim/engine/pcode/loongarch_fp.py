"""LoongArch floating-point semantics SLEIGH gets wrong, as Python helpers for generated code.

Ghidra's LoongArch SLEIGH reads the wrong register for ``ffint.s.l``, leaves ``ftintrne.*`` as a
user-op, truncates where ``ftintrm/rp`` round, uses the host's min/max for ``fmax/fmin``, adds
the register *number* in ``fmadd``, and gets most ``fcmp`` conditions wrong. These follow the
LoongArch reference manual and QEMU (the differential tests' oracle): conversions to integer
saturate and give 0 for NaN; min/max are IEEE 754-2008 minNum/maxNum (a quiet NaN loses to a
number; -0 < +0); fused multiply-add rounds once; an operation with a NaN operand returns that
NaN quietened (a signalling one first; for fmadd the addend first), one with none that is
invalid returns the positive default NaN; the rounding mode is FCSR0.RM unless the mnemonic
names one. Values are raw IEEE bit patterns of ``size`` bytes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .codegen import _f
from .codegen import _fb as _bits

if TYPE_CHECKING:  # pragma: no cover
    from fractions import Fraction

RNE, RZ, RP, RM = 0, 1, 2, 3  # FCSR0.RM encoding
_PRECISION = {4: 24, 8: 53}  # significand bits


def _quiet_bit(size: int) -> int:
    return 1 << (22 if size == 4 else 51)


def _is_nan(v: int, size: int) -> bool:
    return math.isnan(_f(v, size))


def _round(x: float, mode: int) -> int:
    if mode == RZ:
        return math.trunc(x)
    if mode == RP:
        return math.ceil(x)
    if mode == RM:
        return math.floor(x)
    return round(x)  # Python rounds half to even


def ftint(v: int, isize: int, osize: int, mode: int) -> int:
    """ftint*.{w,l}.{s,d}: float -> signed integer of ``osize`` bytes (saturating; NaN -> 0)."""
    x = _f(v, isize)
    if math.isnan(x):
        return 0
    hi = (1 << (8 * osize - 1)) - 1
    lo = -hi - 1
    if math.isinf(x):
        r = hi if x > 0 else lo
    else:
        r = max(lo, min(hi, _round(x, mode)))
    return r & ((1 << (8 * osize)) - 1)


def ffint(v: int, isize: int, osize: int, mode: int) -> int:
    """ffint.{s,d}.{w,l}: signed integer -> float, rounded once in ``mode``."""
    s = 1 << (8 * isize - 1)
    i = ((v & ((1 << (8 * isize)) - 1)) ^ s) - s
    if i == 0:
        return 0
    neg = i < 0
    a = -i if neg else i
    p = _PRECISION[osize]
    shift = a.bit_length() - p
    if shift > 0:
        q, rem = a >> shift, a & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if mode == RNE:
            up = rem > half or (rem == half and q & 1)
        elif mode == RZ:
            up = False
        else:
            up = bool(rem) and (mode == RP) != neg
        a = (q + up) << shift  # at most p + 1 significant bits: exact in the target format
    x = float(a)
    return _bits(-x if neg else x, osize)


def frint(v: int, size: int, mode: int) -> int:
    """frint.{s,d}: round to an integral value in the same format (NaN quieted, inf kept)."""
    x = _f(v, size)
    if math.isnan(x):
        return v | _quiet_bit(size)
    if math.isinf(x):
        return v
    return _bits(math.copysign(float(_round(x, mode)), x), size)


def fminmax(a: int, b: int, size: int, kind: str) -> int:
    """fmax/fmin/fmaxa/fmina (IEEE 754-2008 maxNum/minNum, by magnitude for the -a forms)."""
    x, y = _f(a, size), _f(b, size)
    an, bn = math.isnan(x), math.isnan(y)
    if an or bn:
        q = _quiet_bit(size)
        sa, sb = an and not a & q, bn and not b & q
        if not (sa or sb):
            if not an:
                return a
            if not bn:
                return b
        r = a if (sa or (an and not sb)) else b
        return r | q
    if kind in ("maxa", "mina") and abs(x) != abs(y):
        bigger = a if abs(x) > abs(y) else b
        smaller = b if bigger == a else a
        return bigger if kind == "maxa" else smaller
    sign = 1 << (8 * size - 1)
    if x == y:  # equal, or +0 and -0: max takes the positive, min the negative
        if kind in ("max", "maxa"):
            return a if not a & sign else b
        return a if a & sign else b
    if kind in ("max", "maxa"):
        return a if x > y else b
    return a if x < y else b


def _default_nan(size: int) -> int:
    return 0x7FC00000 if size == 4 else 0x7FF8000000000000


def _pick_nan(a: int, b: int, size: int) -> int:
    """The NaN an operation with a NaN operand returns: a signalling one first, then ``a``'s
    (QEMU's LoongArch rule), quietened."""
    q = _quiet_bit(size)
    an, bn = _is_nan(a, size), _is_nan(b, size)
    if an and not a & q:
        r = a
    elif bn and not b & q:
        r = b
    else:
        r = a if an else b
    return (r | q) & ((1 << (8 * size)) - 1)


def _result(x: float, size: int) -> int:
    """A computed value as ``size`` bytes: an invalid operation gives the default NaN (beyond
    single precision, a value rounds to infinity)."""
    return _default_nan(size) if math.isnan(x) else _bits(x, size)


def _arith(fn: Any) -> Any:
    def op(a: int, b: int, size: int) -> int:
        if _is_nan(a, size) or _is_nan(b, size):
            return _pick_nan(a, b, size)
        x, y = _f(a, size), _f(b, size)
        try:
            return _result(fn(x, y), size)
        except ZeroDivisionError:
            if x == 0:
                return _default_nan(size)
            return _bits(math.copysign(math.inf, x) * math.copysign(1.0, y), size)

    return op


def fsqrt(a: int, size: int) -> int:
    if _is_nan(a, size):
        return _pick_nan(a, a, size)
    x = _f(a, size)
    return _default_nan(size) if x < 0 else _bits(math.sqrt(x), size)


def fcmp(a: int, b: int, size: int, cond: int) -> int:
    """fcmp.cond.{s,d}: cond[4:1] selects less (1), equal (2), unordered (4), not equal (8)."""
    c = cond >> 1
    x, y = _f(a, size), _f(b, size)
    if math.isnan(x) or math.isnan(y):
        return int(bool(c & 4))
    if x == y:
        return int(bool(c & 2))
    return int(bool(c & 8 or (c & 1 and x < y)))


def _round_fraction(v: Fraction, size: int) -> float:
    """``v`` rounded to nearest-even in the format of ``size`` bytes (may overflow to inf)."""
    if size == 8:
        try:
            return float(v)  # correctly rounded
        except OverflowError:
            return -math.inf if v < 0 else math.inf
    from fractions import Fraction  # only fused multiply-add needs exact arithmetic

    neg, a = v < 0, abs(v)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # then 2**e <= a < 2**(e+1)
    if Fraction(2) ** e > a:
        e -= 1
    k = 23 - max(e, -126)  # 24 significant bits; subnormals keep the 2**-149 quantum
    scaled = a * Fraction(2) ** k
    m, rem = divmod(scaled.numerator, scaled.denominator)
    if 2 * rem > scaled.denominator or (2 * rem == scaled.denominator and m & 1):
        m += 1
    x = math.ldexp(float(m), -k)
    if x > 3.4028234663852886e38:  # FLT_MAX
        x = math.inf
    return -x if neg else x


def fma(j: int, k: int, a: int, size: int, op: int) -> int:
    """fmadd (0), fmsub (1), fnmadd (2), fnmsub (3): (j * k +- a), negated for fnm*, rounded
    once."""
    x, y, z = _f(j, size), _f(k, size), _f(a, size)
    if math.isnan(x) or math.isnan(y) or math.isnan(z):
        q = _quiet_bit(size)
        nans = [v for v in (a, j, k) if _is_nan(v, size)]  # QEMU's rule: the addend first
        snans = [v for v in nans if not v & q]
        if (math.isinf(x) and y == 0) or (x == 0 and math.isinf(y)):
            return _default_nan(size)
        return ((snans or nans)[0] | q) & ((1 << (8 * size)) - 1)
    if (math.isinf(x) and y == 0) or (x == 0 and math.isinf(y)):
        return _default_nan(size)
    if op & 1:
        z = -z
    if math.isinf(x) or math.isinf(y) or math.isinf(z):
        r = x * y + z
        if math.isnan(r):
            return _default_nan(size)
    else:
        from fractions import Fraction

        exact = Fraction(x) * Fraction(y) + Fraction(z)
        if exact == 0:
            prod_neg = math.copysign(1.0, x) * math.copysign(1.0, y) < 0
            both_neg = prod_neg and math.copysign(1.0, z) < 0 and x * y == 0 and z == 0
            r = -0.0 if both_neg else 0.0
        else:
            r = _round_fraction(exact, size)
    if op & 2:
        r = -r
    return _result(r, size)


# Single precision is computed in double and rounded once more: exact for + - * / sqrt.
HELPERS = {"FCMP": fcmp, "FMA": fma, "FTINT": ftint, "FFINT": ffint, "FRINT": frint, "FMINMAX": fminmax,
           "FADD": _arith(lambda x, y: x + y), "FSUB": _arith(lambda x, y: x - y),
           "FMUL": _arith(lambda x, y: x * y), "FDIV": _arith(lambda x, y: x / y),
           "FSQRT": fsqrt}
