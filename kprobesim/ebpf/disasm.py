"""Disassembler producing the assembler's syntax (see :mod:`kprobesim.ebpf.asm`).

Every line it prints assembles back to exactly the same slots: an encoding the syntax cannot
express (reserved fields set, unknown opcodes) is printed as ``raw 0x<word>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import isa
from .asm import assemble
from .errors import AsmError
from .isa import Insn

_LDX_NAMES = {(isa.MEM, isa.B): "ldxb", (isa.MEM, isa.H): "ldxh", (isa.MEM, isa.W): "ldxw",
              (isa.MEM, isa.DW): "ldxdw", (isa.MEMSX, isa.B): "ldxsb",
              (isa.MEMSX, isa.H): "ldxsh", (isa.MEMSX, isa.W): "ldxsw"}
_SZ = {isa.B: "b", isa.H: "h", isa.W: "w", isa.DW: "dw"}
_ATOMIC_NAMES = {isa.ADD: "add", isa.OR: "or", isa.AND: "and", isa.XOR: "xor"}


def _r(n: int) -> str:
    return f"%r{n}"


def _imm(v: int) -> str:
    return str(v) if -0x10000 < v < 0x10000 else f"{v & isa.MASK32:#x}"


def _memop(base: int, off: int) -> str:
    return f"[{_r(base)}{off:+d}]" if off else f"[{_r(base)}]"


def _candidate(insn: Insn, nxt: Insn | None) -> tuple[str, int] | None:
    op, dst, src, off, imm = insn
    cls = op & 7
    if op == isa.LDDW:
        if nxt is None:
            return None
        if src == isa.PSEUDO_IMM:
            return f"lddw {_r(dst)}, {isa.lddw_value(insn, nxt):#x}", 2
        name = isa.PSEUDO_NAMES.get(src)
        if name is None:
            return None
        arg = f"{imm:+d}" if src == isa.PSEUDO_FUNC else str(imm)
        extra = f"{nxt.imm:+d}" if nxt.imm else ""
        return f"lddw {_r(dst)}, {name}[{arg}]{extra}", 2
    if cls == isa.LDX:
        name = _LDX_NAMES.get((op & 0xE0, op & 0x18))
        if name is None:
            return None
        return f"{name} {_r(dst)}, {_memop(src, off)}", 1
    if cls == isa.ST:
        return f"st{_SZ[op & 0x18]} {_memop(dst, off)}, {_imm(imm)}", 1
    if cls == isa.STX:
        mode = op & 0xE0
        if mode == isa.MEM:
            return f"stx{_SZ[op & 0x18]} {_memop(dst, off)}, {_r(src)}", 1
        if mode == isa.ATOMIC:
            sfx = "32" if op & 0x18 == isa.W else ""
            if imm == isa.XCHG:
                name = "xchg"
            elif imm == isa.CMPXCHG:
                name = "cmpxchg"
            elif imm & ~isa.FETCH in _ATOMIC_NAMES:
                name = ("fetch " if imm & isa.FETCH else "") + _ATOMIC_NAMES[imm & ~isa.FETCH]
            else:
                return None
            return f"lock {name}{sfx} {_memop(dst, off)}, {_r(src)}", 1
        return None
    if cls in (isa.ALU, isa.ALU64):
        code = op & 0xF0
        sfx = "32" if cls == isa.ALU else ""
        if code == isa.END:
            if cls == isa.ALU:
                return f"{'be' if op & isa.X else 'le'}{imm} {_r(dst)}", 1
            return f"bswap{imm} {_r(dst)}", 1
        if code == isa.NEG:
            return f"neg{sfx} {_r(dst)}", 1
        if code == isa.MOV and off and op & isa.X:
            return f"movsx{off}{'32' if cls == isa.ALU else '64'} {_r(dst)}, {_r(src)}", 1
        name = isa.ALU_NAMES.get(code)
        if name is None:
            return None
        if off == 1 and code in (isa.DIV, isa.MOD):
            name = "s" + name
        operand = _r(src) if op & isa.X else _imm(imm)
        return f"{name}{sfx} {_r(dst)}, {operand}", 1
    if cls in (isa.JMP, isa.JMP32):
        code = op & 0xF0
        if code == isa.JA:
            return (f"ja {off:+d}", 1) if cls == isa.JMP else (f"ja32 {imm:+d}", 1)
        if code == isa.EXIT:
            return "exit", 1
        if code == isa.CALL:
            if op & isa.X:
                return f"call {_r(dst)}", 1
            if src == isa.CALL_LOCAL:
                return f"call local {imm:+d}", 1
            if src == isa.CALL_KFUNC:
                return f"call runtime {imm}", 1
            return f"call {imm}", 1
        name = isa.JMP_NAMES.get(code)
        if name is None:
            return None
        operand = _r(src) if op & isa.X else _imm(imm)
        return f"{name}{'32' if cls == isa.JMP32 else ''} {_r(dst)}, {operand}, {off:+d}", 1
    return None


def disasm_insn(insn: Insn, nxt: Insn | None = None) -> tuple[str, int]:
    """Text of the instruction at ``insn`` (``nxt`` is the following slot, for ``lddw``) and the
    number of slots it uses.  Jump targets are relative (``+N``)."""
    cand = _candidate(insn, nxt)
    if cand is not None:
        text, n = cand
        try:
            if assemble(text) == ([insn, nxt] if n == 2 else [insn]):
                return text, n
        except AsmError:
            pass
    return f"raw {insn.word():#018x}", 1


def _jump_target(insn: Insn, pc: int) -> int | None:
    op, cls = insn.opcode, insn.opcode & 7
    if cls == isa.JMP and op & 0xF0 not in (isa.CALL, isa.EXIT):
        return pc + 1 + insn.off
    if op == isa.JA32_OP:
        return pc + 1 + insn.imm
    if cls == isa.JMP32 and op & 0xF0 in isa.JMP_NAMES:
        return pc + 1 + insn.off
    if op == isa.CALL_OP and insn.src == isa.CALL_LOCAL:
        return pc + 1 + insn.imm
    return None


def disassemble(insns: Sequence[Insn], labels: bool = True) -> str:
    """The whole program as text; in-range jump targets get labels ``L<pc>`` if ``labels``."""
    lines: list[tuple[int, str, int | None]] = []
    starts: set[int] = set()
    pc = 0
    while pc < len(insns):
        nxt = insns[pc + 1] if pc + 1 < len(insns) else None
        text, n = disasm_insn(insns[pc], nxt)
        target = None if text.startswith("raw ") else _jump_target(insns[pc], pc)
        lines.append((pc, text, target))
        starts.add(pc)
        pc += n
    named = {t for _, _, t in lines if labels and t is not None and t in starts}
    out: list[str] = []
    for pc, text, target in lines:
        if pc in named:
            out.append(f"L{pc}:")
        if target in named:
            text = text.rsplit(" ", 1)[0] + f" L{target}"
        out.append(text)
    return "\n".join(out) + "\n"
