"""Abstract scalars for the verifier: tristate numbers with signed and unsigned bounds.

A :class:`Range` describes the values a register may hold at one width (64 or 32 bits): a
*tnum* (``value``/``mask``: bits in ``mask`` are unknown, the others equal ``value``'s) and
unsigned and signed intervals. Every operation keeps the three consistent (each refines the
others), as Linux's ``reg_bounds_sync`` does. A :class:`Scalar` pairs the 64-bit range with the
range of its low 32 bits (what ``w`` registers and ``jmp32`` see). Operations never claim a value
the concrete machine cannot produce (the property tests check this against the ALU).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from . import alu, isa

M64 = isa.MASK64
M32 = isa.MASK32


def _smin(bits: int) -> int:
    return -(1 << (bits - 1))


def _smax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def _s(v: int, bits: int) -> int:
    return alu.signed(v, bits)


@dataclass(frozen=True, slots=True)
class Range:
    """Values at one width: tnum (``value``, ``mask``), ``umin..umax``, ``smin..smax``."""

    bits: int
    value: int
    mask: int
    umin: int
    umax: int
    smin: int
    smax: int

    # -- constructors -------------------------------------------------------------------------
    @staticmethod
    def unknown(bits: int) -> Range:
        full = (1 << bits) - 1
        return Range(bits, 0, full, 0, full, _smin(bits), _smax(bits))

    @staticmethod
    def const(v: int, bits: int) -> Range:
        v &= (1 << bits) - 1
        return Range(bits, v, 0, v, v, _s(v, bits), _s(v, bits))

    @staticmethod
    def make(bits: int, value: int, mask: int, umin: int, umax: int, smin: int, smax: int) -> Range | None:
        """The consistent range (None if no value satisfies every constraint)."""
        return _make(bits, value, mask, umin, umax, smin, smax)

    # -- queries --------------------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return self.mask == 0

    def contains(self, other: Range) -> bool:
        """Every value of ``other`` is one of ``self``'s."""
        return (self.umin <= other.umin and other.umax <= self.umax and self.smin <= other.smin
                and other.smax <= self.smax and (other.mask & ~self.mask) == 0
                and (other.value & ~self.mask) == (self.value & ~self.mask))

    def show(self) -> str:
        if self.is_const:
            return str(_s(self.value, self.bits)) if self.bits == 64 else str(self.value)
        parts = []
        full = (1 << self.bits) - 1
        if self.smin != _smin(self.bits):
            parts.append(f"smin={self.smin}")
        if self.smax != _smax(self.bits):
            parts.append(f"smax={self.smax}")
        if self.umin:
            parts.append(f"umin={self.umin}")
        if self.umax != full:
            parts.append(f"umax={self.umax}")
        if self.mask != full:
            parts.append(f"var_off=({self.value:#x}; {self.mask:#x})")
        return ",".join(parts)


@functools.lru_cache(maxsize=1 << 16)
def _make(bits: int, value: int, mask: int, umin: int, umax: int, smin: int, smax: int) -> Range | None:
    full = (1 << bits) - 1
    top = bits - 1
    wrap = 1 << bits
    while True:
        before = (value, mask, umin, umax, smin, smax)
        # tnum -> unsigned
        if value > umin:
            umin = value
        if value | mask < umax:
            umax = value | mask
        # signed <-> unsigned
        if smin >= 0:
            umin, umax = max(umin, smin), min(umax, smax)
        elif smax < 0:
            umin, umax = max(umin, smin & full), min(umax, smax & full)
        if umin > umax:
            return None
        if (umin >> top) == (umax >> top):  # same sign: the unsigned range is a signed one
            lo = umin - wrap if umin >> top else umin
            hi = umax - wrap if umax >> top else umax
            smin, smax = max(smin, lo), min(smax, hi)
        if smin > smax:
            return None
        # unsigned -> tnum: the high bits umin and umax share are known
        hi_mask = full & ~((1 << (umin ^ umax).bit_length()) - 1)
        if (value & ~mask & hi_mask) != (umin & ~mask & hi_mask):
            return None
        known_hi = hi_mask & mask
        value = (value & ~known_hi) | (umin & known_hi)
        mask &= ~hi_mask
        if before == (value, mask, umin, umax, smin, smax):
            return Range(bits, value & ~mask & full, mask & full, umin, umax, smin, smax)


def _tnum_add(a: Range, b: Range, full: int) -> tuple[int, int]:
    sm = (a.mask + b.mask) & full
    sv = (a.value + b.value) & full
    sigma = (sm + sv) & full
    chi = sigma ^ sv
    mu = (chi | a.mask | b.mask) & full
    return sv & ~mu & full, mu


def _tnum_sub(a: Range, b: Range, full: int) -> tuple[int, int]:
    dv = (a.value - b.value) & full
    alpha = (dv + a.mask) & full
    beta = (dv - b.mask) & full
    chi = alpha ^ beta
    mu = (chi | a.mask | b.mask) & full
    return dv & ~mu & full, mu


def _from_tnum(bits: int, value: int, mask: int) -> Range:
    r = Range.make(bits, value, mask, 0, (1 << bits) - 1, _smin(bits), _smax(bits))
    assert r is not None
    return r


def binop(op: int, a: Range, b: Range) -> Range:
    """``a op b`` at ``a``'s width (``op``: the ALU opcode's high 4 bits); a sound over-approximation."""
    bits = a.bits
    full = (1 << bits) - 1
    if a.is_const and b.is_const:  # exactly what the engines compute (x / 0 = 0, shifts masked)
        return Range.const(alu.alu(op, a.value, b.value, 0, bits), bits)
    lo_s, hi_s = _smin(bits), _smax(bits)
    if op == isa.ADD:
        v, m = _tnum_add(a, b, full)
        umin, umax = a.umin + b.umin, a.umax + b.umax
        if umax > full:
            umin, umax = 0, full
        smin, smax = a.smin + b.smin, a.smax + b.smax
        if smin < lo_s or smax > hi_s:
            smin, smax = lo_s, hi_s
        return Range.make(bits, v, m, umin, umax, smin, smax) or Range.unknown(bits)
    if op == isa.SUB:
        v, m = _tnum_sub(a, b, full)
        umin, umax = a.umin - b.umax, a.umax - b.umin
        if umin < 0:
            umin, umax = 0, full
        smin, smax = a.smin - b.smax, a.smax - b.smin
        if smin < lo_s or smax > hi_s:
            smin, smax = lo_s, hi_s
        return Range.make(bits, v, m, umin, umax, smin, smax) or Range.unknown(bits)
    if op == isa.MUL:
        if a.umax * b.umax <= full:
            r = Range.make(bits, 0, full, a.umin * b.umin, a.umax * b.umax, lo_s, hi_s)
            return r or Range.unknown(bits)
        return Range.unknown(bits)
    if op == isa.AND:
        v, m = a.value & b.value, (a.mask | a.value) & (b.mask | b.value) & ~(a.value & b.value)
        return Range.make(bits, v, m, 0, min(a.umax, b.umax), lo_s, hi_s) or Range.unknown(bits)
    if op == isa.OR:
        v = a.value | b.value
        m = (a.mask | b.mask) & ~v
        return Range.make(bits, v, m, max(a.umin, b.umin), full, lo_s, hi_s) or Range.unknown(bits)
    if op == isa.XOR:
        v = (a.value ^ b.value) & ~(a.mask | b.mask)
        return _from_tnum(bits, v, a.mask | b.mask)
    if op in (isa.LSH, isa.RSH, isa.ARSH):
        if not b.is_const:
            if op == isa.RSH and a.umax < (1 << bits):  # shifting right never grows an unsigned value
                return Range.make(bits, 0, full, 0, a.umax, lo_s, hi_s) or Range.unknown(bits)
            return Range.unknown(bits)
        k = b.value & (bits - 1)
        if op == isa.LSH:
            v, m = (a.value << k) & full, (a.mask << k) & full
            if a.umax << k <= full:
                return Range.make(bits, v, m, a.umin << k, a.umax << k, lo_s, hi_s) or Range.unknown(bits)
            return _from_tnum(bits, v, m)
        if op == isa.RSH:
            return Range.make(bits, a.value >> k, a.mask >> k, a.umin >> k, a.umax >> k, lo_s, hi_s) or \
                Range.unknown(bits)
        sign = 1 << (bits - 1)
        v = (_s(a.value, bits) >> k) & full
        m = a.mask >> k
        if a.mask & sign:  # unknown sign: the copied bits are unknown
            m |= full & ~(full >> k)
            v &= ~m
        return Range.make(bits, v & ~m, m, 0, full, a.smin >> k, a.smax >> k) or Range.unknown(bits)
    if op == isa.DIV:  # unsigned (the signed forms come here with off=1 handled by the caller)
        if b.is_const and b.value:
            return Range.make(bits, 0, full, a.umin // b.value, a.umax // b.value, lo_s, hi_s) or \
                Range.unknown(bits)
        return Range.make(bits, 0, full, 0, a.umax, lo_s, hi_s) or Range.unknown(bits)
    if op == isa.MOD:
        if b.is_const and b.value:
            if a.umax < b.value:
                return a
            return Range.make(bits, 0, full, 0, b.value - 1, lo_s, hi_s) or Range.unknown(bits)
        return Range.make(bits, 0, full, 0, a.umax, lo_s, hi_s) or Range.unknown(bits)
    return Range.unknown(bits)


def low32(r: Range) -> Range:
    """The range of the low 32 bits of a 64-bit range."""
    v, m = r.value & M32, r.mask & M32
    umin, umax, smin, smax = 0, M32, _smin(32), _smax(32)
    if r.umax - r.umin <= M32 and (r.umin >> 32) == (r.umax >> 32):
        umin, umax = r.umin & M32, r.umax & M32
    if r.smin >= _smin(32) and r.smax <= _smax(32):
        smin, smax = r.smin, r.smax
    return Range.make(32, v, m, umin, umax, smin, smax) or _from_tnum(32, v, m)


def zext(r32: Range) -> Range:
    """A 32-bit result written to a register: the upper half is zero."""
    return Range.make(64, r32.value, r32.mask, r32.umin, r32.umax, r32.umin, r32.umax) or Range.unknown(64)


def sext(r: Range, frm: int, bits: int) -> Range:
    """Sign-extend the low ``frm`` bits of ``r`` to ``bits``."""
    if r.is_const:
        return Range.const(_s(r.value, frm), bits)
    low_mask = (1 << frm) - 1
    if r.umax <= (low_mask >> 1):  # sign bit clear: zero-extension
        return Range.make(bits, r.value & low_mask, r.mask & low_mask, r.umin, r.umax, r.umin, r.umax) or \
            Range.unknown(bits)
    return Range.make(bits, 0, (1 << bits) - 1, 0, (1 << bits) - 1, _smin(frm), _smax(frm)) or Range.unknown(bits)


@dataclass(frozen=True, slots=True)
class Scalar:
    """A register's possible values: the 64-bit range and the range of its low 32 bits."""

    r64: Range
    r32: Range

    @staticmethod
    def unknown() -> Scalar:
        return _UNKNOWN

    @staticmethod
    def const(v: int) -> Scalar:
        v &= M64
        return Scalar(Range.const(v, 64), Range.const(v & M32, 32))

    @staticmethod
    def of64(r: Range) -> Scalar:
        return sync(r, low32(r))

    @staticmethod
    def of32(r32: Range) -> Scalar:
        return Scalar(zext(r32), r32)

    @staticmethod
    def bounded(umin: int, umax: int) -> Scalar:
        return Scalar.of64(Range.make(64, 0, M64, umin, umax, _smin(64), _smax(64)) or Range.unknown(64))

    @property
    def is_const(self) -> bool:
        return self.r64.is_const

    @property
    def value(self) -> int:
        return self.r64.value

    def contains(self, other: Scalar) -> bool:
        return self.r64.contains(other.r64) and self.r32.contains(other.r32)

    def show(self) -> str:
        text = self.r64.show()
        return f"scalar({text})" if text else "scalar()"


_UNKNOWN = Scalar(Range.unknown(64), Range.unknown(32))


def sync(r64: Range, r32: Range) -> Scalar:
    """Refine each half by the other (Linux: ``__reg_combine_32_into_64`` and back)."""
    if (r64.mask >> 32) == 0:  # upper half known: the 32-bit bounds carry over
        hi = r64.value & ~M32
        r = Range.make(64, r64.value, r64.mask, max(r64.umin, hi | r32.umin), min(r64.umax, hi | r32.umax),
                       r64.smin, r64.smax)
        if r is not None:
            r64 = r
    low = low32(r64)
    mask = r32.mask & low.mask
    r = Range.make(32, (r32.value | low.value) & ~mask, mask, max(r32.umin, low.umin), min(r32.umax, low.umax),
                   max(r32.smin, low.smin), min(r32.smax, low.smax))
    if r is not None:
        r32 = r
    return Scalar(r64, r32)


def alu64(op: int, a: Scalar, b: Scalar) -> Scalar:
    """A 64-bit ALU operation on scalars (not DIV/MOD with off=1, not END)."""
    r64 = binop(op, a.r64, b.r64)
    if op in (isa.ADD, isa.SUB, isa.MUL, isa.AND, isa.OR, isa.XOR) or (op == isa.LSH and b.is_const):
        # the low half of these depends only on the low halves
        b32 = b.r32 if op != isa.LSH else Range.const(b.value & 63, 32) if (b.value & 63) < 32 else None
        if b32 is None:
            return Scalar.of64(r64)
        return sync(r64, binop(op, a.r32, b32))
    return Scalar.of64(r64)


def alu32(op: int, a: Scalar, b: Scalar) -> Scalar:
    return Scalar.of32(binop(op, a.r32, b.r32))
