"""Simulation of riscv64 PC-relative and control-flow instructions on a RegView."""

from __future__ import annotations

from kprobesim.probes.insn import Decision, Kind, RegView, sext, u64

from .decode import RvInsn
from .regs import GPR_NAMES


def _set(regs: RegView, rd: int, value: int) -> None:
    if rd:
        regs[GPR_NAMES[rd]] = u64(value)


def _branch_taken(op: str, a: int, b: int) -> bool:
    if op == "beq":
        return a == b
    if op == "bne":
        return a != b
    if op == "blt":
        return sext(a, 64) < sext(b, 64)
    if op == "bge":
        return sext(a, 64) >= sext(b, 64)
    if op == "bltu":
        return a < b
    return a >= b  # bgeu


def simulate(d: Decision, regs: RegView) -> None:
    """Apply a SIMULATE decision's effect, including the new ``pc``, to ``regs``."""
    if d.kind is not Kind.SIMULATE or not isinstance(d.info, RvInsn):
        raise ValueError(f"{d.addr:#x}: {d.text!r} is not a simulated instruction")
    i: RvInsn = d.info
    pc = d.addr
    nxt = u64(pc + d.length)
    op = i.op
    if op == "auipc":
        _set(regs, i.rd, pc + i.imm)
        regs["pc"] = nxt
    elif op in ("jal", "c.j"):
        _set(regs, i.rd, nxt)
        regs["pc"] = u64(pc + i.imm)
    elif op in ("jalr", "c.jr", "c.jalr"):
        target = u64(regs[GPR_NAMES[i.rs1]] + i.imm) & ~1  # read rs1 before writing rd
        _set(regs, i.rd, nxt)
        regs["pc"] = target
    elif op in ("c.beqz", "c.bnez"):
        zero = u64(regs[GPR_NAMES[i.rs1]]) == 0
        regs["pc"] = u64(pc + i.imm) if zero == (op == "c.beqz") else nxt
    else:
        a, b = u64(regs[GPR_NAMES[i.rs1]]), u64(regs[GPR_NAMES[i.rs2]])
        regs["pc"] = u64(pc + i.imm) if _branch_taken(op, a, b) else nxt
