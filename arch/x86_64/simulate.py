"""Simulation of x86_64 instructions for the int3 step variant (Linux's ``emulate_op``).

The TF variant (DESIGN.md §7) simulates nothing: its decisions are all out-of-line and
step.after_step() applies the resume fix-ups. Simulation reads the registers as they are at
the probe (interrupts not masked: nothing is stepped).
"""

from __future__ import annotations

from kprobesim.probes.insn import Decision, Kind, RegView, u64

from .decode import X86Insn

CF, PF, AF, ZF, SF, TF, IF, DF, OF = 1, 1 << 2, 1 << 4, 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 10, 1 << 11
IOPL, NT, RF, AC, ID = 3 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 21
#: Flags popf may change at CPL 0 in 64-bit mode (VM/VIF/VIP untouched, RF cleared).
POPF_MASK = CF | PF | AF | ZF | SF | TF | IF | DF | OF | IOPL | NT | AC | ID
FIXED_ONE = 1 << 1


def condition(cc: int, flags: int) -> bool:
    """Evaluate Jcc/SETcc/CMOVcc condition ``cc`` (0..15) on ``flags``."""
    cf, zf, sf, of, pf = (bool(flags & f) for f in (CF, ZF, SF, OF, PF))
    base = (of, cf, zf, cf or zf, sf, pf, sf != of, zf or sf != of)[cc >> 1]
    return base != bool(cc & 1)


def _push(regs: RegView, value: int, size: int = 8) -> None:
    sp = u64(regs["rsp"] - size)
    regs.write_mem(sp, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))
    regs["rsp"] = sp


def _pop(regs: RegView, size: int = 8) -> int:
    sp = regs["rsp"]
    value = int.from_bytes(regs.read_mem(sp, size), "little")
    regs["rsp"] = u64(sp + size)
    return value


def memory_accesses(d: Decision, regs: RegView) -> list[tuple[int, int, bool]]:
    """The stack accesses :func:`simulate` makes for ``d`` at these registers: (address, size,
    is a write) each, so a uprobe can let the process take a fault they raise first."""
    i = d.info
    if d.kind is not Kind.SIMULATE or not isinstance(i, X86Insn):
        return []
    sp = regs["rsp"]
    if i.sim in ("call", "call_reg"):
        return [(u64(sp - 8), 8, True)]
    if i.sim == "pushf":
        return [(u64(sp - i.opsize), i.opsize, True)]
    if i.sim == "ret":
        return [(sp, 8, False)]
    if i.sim == "popf":
        return [(sp, i.opsize, False)]
    return []


def simulate(d: Decision, regs: RegView) -> None:
    """Apply a SIMULATE decision (int3 variant) to ``regs``, including the new ``rip``."""
    if d.kind is not Kind.SIMULATE or not isinstance(d.info, X86Insn) or not d.info.sim:
        raise ValueError(f"{d.addr:#x}: {d.text!r} is not a simulated instruction")
    i: X86Insn = d.info
    nxt = u64(d.addr + d.length)
    target = u64(nxt + i.rel)
    op = i.sim
    rip = nxt
    if op == "jmp":
        rip = target
    elif op == "jcc":
        rip = target if condition(i.cond, regs["rflags"]) else nxt
    elif op == "call":
        _push(regs, nxt)
        rip = target
    elif op == "call_reg":
        dest = regs[i.reg]  # read before the push: call *%rsp uses the old rsp
        _push(regs, nxt)
        rip = dest
    elif op == "jmp_reg":
        rip = regs[i.reg]
    elif op == "ret":
        rip = _pop(regs)
        regs["rsp"] = u64(regs["rsp"] + i.imm)
    elif op in ("loop", "loope", "loopne", "jrcxz"):
        mask = 0xFFFF_FFFF if i.addr32 else 0xFFFF_FFFF_FFFF_FFFF
        count = regs["rcx"] & mask
        if op == "jrcxz":
            taken = count == 0
        else:
            count = (count - 1) & mask
            regs["rcx"] = count  # a 32-bit count register write zero-extends
            zf = bool(regs["rflags"] & ZF)
            taken = count != 0 and (op == "loop" or zf == (op == "loope"))
        rip = target if taken else nxt
    elif op == "pushf":
        _push(regs, regs["rflags"] & ~(RF | (1 << 17)), i.opsize)
    elif op == "popf":
        flags = regs["rflags"]
        mask = POPF_MASK & (0xFFFF if i.opsize == 2 else ~0)
        value = _pop(regs, i.opsize)
        regs["rflags"] = (flags & ~mask & ~RF) | (value & mask) | FIXED_ONE
    elif op == "cli":
        regs["rflags"] = regs["rflags"] & ~IF
    elif op == "sti":
        regs["rflags"] = regs["rflags"] | IF
    else:
        raise ValueError(f"{d.addr:#x}: unknown simulated op {op!r}")
    regs["rip"] = rip
