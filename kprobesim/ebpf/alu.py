"""Reference semantics of the ALU and conditional jumps (used by the interpreter and helpers).

Registers hold unsigned values in ``[0, 2**64)``.  Written for clarity; the translator emits its
own inlined Python for the same operations, and the property tests check they agree.
"""

from __future__ import annotations

from . import isa

M64 = isa.MASK64
M32 = isa.MASK32


def signed(v: int, bits: int) -> int:
    """Interpret the low ``bits`` bits of ``v`` as two's complement."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def sdiv(a: int, b: int, bits: int) -> int:
    """Signed division truncating toward zero (C semantics); x / 0 = 0; MIN / -1 wraps to MIN."""
    mask = (1 << bits) - 1
    sa, sb = signed(a, bits), signed(b, bits)
    if sb == 0:
        return 0
    q = abs(sa) // abs(sb)
    return (-q if (sa < 0) != (sb < 0) else q) & mask


def smod(a: int, b: int, bits: int) -> int:
    """Signed remainder with the sign of the dividend (C semantics); x % 0 = x."""
    mask = (1 << bits) - 1
    sa, sb = signed(a, bits), signed(b, bits)
    if sb == 0:
        return a & mask
    r = abs(sa) % abs(sb)
    return (-r if sa < 0 else r) & mask


def bswap(v: int, bits: int) -> int:
    """Reverse the bytes of the low ``bits`` bits of ``v`` (result zero-extended)."""
    n = bits // 8
    return int.from_bytes((v & ((1 << bits) - 1)).to_bytes(n, "little"), "big")


def alu(op: int, a: int, b: int, off: int, bits: int) -> int:
    """Apply ALU operation ``op`` (the high 4 bits of the opcode) to ``a`` and ``b``.

    ``bits`` is 64 (ALU64) or 32 (ALU, result zero-extended).  ``b`` is the source operand
    already reduced to ``bits`` (sign-extended immediates for ALU64).  END is handled elsewhere.
    """
    mask = M64 if bits == 64 else M32
    a &= mask
    b &= mask
    shift_mask = bits - 1
    if op == isa.ADD:
        return (a + b) & mask
    if op == isa.SUB:
        return (a - b) & mask
    if op == isa.MUL:
        return (a * b) & mask
    if op == isa.DIV:
        if off == 1:
            return sdiv(a, b, bits)
        return a // b if b else 0
    if op == isa.MOD:
        if off == 1:
            return smod(a, b, bits)
        return a % b if b else a
    if op == isa.OR:
        return a | b
    if op == isa.AND:
        return a & b
    if op == isa.XOR:
        return a ^ b
    if op == isa.LSH:
        return (a << (b & shift_mask)) & mask
    if op == isa.RSH:
        return a >> (b & shift_mask)
    if op == isa.ARSH:
        return (signed(a, bits) >> (b & shift_mask)) & mask
    if op == isa.NEG:
        return -a & mask
    if op == isa.MOV:
        if off:  # movsx: sign-extend the low ``off`` bits of the source
            return signed(b, off) & mask
        return b
    raise ValueError(f"bad ALU op {op:#x}")


def end(v: int, imm: int, to_be: bool) -> int:
    """Byte-order conversion on a little-endian machine: ``le`` truncates, ``be``/``bswap``
    swaps; both zero-extend to 64 bits."""
    if to_be:
        return bswap(v, imm)
    return v & ((1 << imm) - 1)


def cond(op: int, a: int, b: int, bits: int) -> bool:
    """Evaluate conditional jump ``op`` on ``a`` and ``b`` compared as ``bits``-bit values."""
    mask = M64 if bits == 64 else M32
    a &= mask
    b &= mask
    if op == isa.JEQ:
        return a == b
    if op == isa.JNE:
        return a != b
    if op == isa.JGT:
        return a > b
    if op == isa.JGE:
        return a >= b
    if op == isa.JLT:
        return a < b
    if op == isa.JLE:
        return a <= b
    if op == isa.JSET:
        return bool(a & b)
    sa, sb = signed(a, bits), signed(b, bits)
    if op == isa.JSGT:
        return sa > sb
    if op == isa.JSGE:
        return sa >= sb
    if op == isa.JSLT:
        return sa < sb
    if op == isa.JSLE:
        return sa <= sb
    raise ValueError(f"bad jump op {op:#x}")
