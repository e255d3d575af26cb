"""Simulation of loongarch64 PC-relative and branch instructions (Linux simu_pc/simu_branch)."""

from __future__ import annotations

from kprobesim.probes.insn import Decision, Kind, RegView, sext, u64

from .decode import LaInsn
from .regs import GPR_NAMES


def _set(regs: RegView, rd: int, value: int) -> None:
    if rd:  # r0 stays zero (Linux writes regs[0] in its pt_regs copy; the CPU never does)
        regs[GPR_NAMES[rd]] = u64(value)


def _taken(op: str, j: int, d: int) -> bool:
    if op == "beq":
        return j == d
    if op == "bne":
        return j != d
    if op == "blt":
        return sext(j, 64) < sext(d, 64)
    if op == "bge":
        return sext(j, 64) >= sext(d, 64)
    if op == "bltu":
        return j < d
    return j >= d  # bgeu


def simulate(d: Decision, regs: RegView) -> None:
    """Apply a SIMULATE decision's effect, including the new ``pc``, to ``regs``."""
    if d.kind is not Kind.SIMULATE or not isinstance(d.info, LaInsn):
        raise ValueError(f"{d.addr:#x}: {d.text!r} is not a simulated instruction")
    i: LaInsn = d.info
    pc = d.addr
    nxt = u64(pc + 4)
    op = i.op
    if op in ("pcaddi", "pcaddu12i", "pcaddu18i"):
        _set(regs, i.rd, pc + i.imm)
        regs["pc"] = nxt
    elif op == "pcalau12i":
        _set(regs, i.rd, (pc + i.imm) & ~0xFFF)
        regs["pc"] = nxt
    elif op in ("b", "bl"):
        _set(regs, i.rd, nxt)
        regs["pc"] = u64(pc + i.imm)
    elif op == "jirl":
        target = u64(regs[GPR_NAMES[i.rj]] + i.imm)  # read rj before writing rd
        _set(regs, i.rd, nxt)
        regs["pc"] = target
    elif op in ("beqz", "bnez"):
        zero = u64(regs[GPR_NAMES[i.rj]]) == 0
        regs["pc"] = u64(pc + i.imm) if zero == (op == "beqz") else nxt
    else:
        j, dd = u64(regs[GPR_NAMES[i.rj]]), u64(regs[GPR_NAMES[i.rd]])
        regs["pc"] = u64(pc + i.imm) if _taken(op, j, dd) else nxt
