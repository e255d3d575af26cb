"""riscv64 break/step variant: ebreak breaks, ``[insn][ebreak]`` slots, interrupt masking."""

from __future__ import annotations

from collections.abc import Callable

from kprobesim.probes.insn import Decision, Kind, RegForm, RegView, SlotError, sext
from kprobesim.probes.insn import register_step as _register_step

from .regs import GPR_NAMES

EBREAK = (0x00100073).to_bytes(4, "little")
C_EBREAK = (0x9002).to_bytes(2, "little")
#: The probe break for a 4-byte instruction (2-byte ones get ``C_EBREAK``: see probe_break).
PROBE_BREAK = EBREAK
#: Placed in the slot right after the copied instruction (Linux uses the 32-bit ebreak).
STEP_BREAK = EBREAK
#: Bytes a slot needs at most: a 4-byte instruction and the step break.
SLOT_SIZE = 8
SLOT_ALIGN = 2

MSTATUS_SIE = 1 << 1
MSTATUS_MIE = 1 << 3
MSTATUS_SPIE = 1 << 5
MSTATUS_MPIE = 1 << 7
#: The bits masked during an out-of-line step: the live enables of both modes (what gates
#: interrupt delivery) and their previous-enable copies (Linux clears SPIE in its trap frame).
IRQ_BITS = MSTATUS_SIE | MSTATUS_MIE | MSTATUS_SPIE | MSTATUS_MPIE


def probe_break(d: Decision) -> bytes:
    """The break patched over ``d``: c.ebreak on 2-byte instructions, ebreak on 4-byte."""
    return C_EBREAK if d.length == 2 else EBREAK


def step_break() -> bytes:
    """The break that ends an out-of-line step."""
    return STEP_BREAK


def make_slot(d: Decision, slot_addr: int) -> bytes:
    """Slot bytes: the original instruction followed by the step break."""
    if d.kind is not Kind.OOL:
        raise SlotError(f"{d.addr:#x}: {d.text!r} is {d.kind.value}, it takes no slot")
    if slot_addr % SLOT_ALIGN:
        raise SlotError(f"slot {slot_addr:#x} is not {SLOT_ALIGN}-byte aligned")
    return d.raw + STEP_BREAK


def step_break_addr(d: Decision, slot_addr: int) -> int:
    """Where the step break of ``d``'s slot sits (the pc reported when the step ends)."""
    return slot_addr + d.length


def is_probe_break(code: bytes) -> bool:
    """Do ``code``'s first bytes hold a probe break (ebreak or c.ebreak)?"""
    return bytes(code[:4]) == EBREAK or bytes(code[:2]) == C_EBREAK


def is_step_break(code: bytes) -> bool:
    """Do ``code``'s first bytes hold the step break (ebreak)?"""
    return bytes(code[:4]) == STEP_BREAK


def after_step(d: Decision, regs: RegView, slot_addr: int, saved: int | None = None) -> None:
    """Resume after the step break: pc = the probed address + length (Linux's ``restore``)."""
    regs["pc"] = d.addr + d.length


def mask_interrupts(regs: RegView, d: Decision | None = None, *, csr: str = "mstatus") -> int:
    """Clear MIE/SIE and MPIE/SPIE in ``csr`` for the step; return the saved bits."""
    status = regs[csr]
    regs[csr] = status & ~IRQ_BITS
    return status & IRQ_BITS


def restore_interrupts(regs: RegView, saved: int, *, csr: str = "mstatus") -> None:
    """Put back exactly the bits mask_interrupts() cleared, leaving the rest of ``csr``."""
    regs[csr] = (regs[csr] & ~IRQ_BITS) | (saved & IRQ_BITS)


def reg_form(raw: bytes) -> RegForm | None:
    """``(op, rd, rs, imm)`` (see :data:`~kprobesim.probes.insn.RegForm`) when ``raw`` only
    computes a register: addi, addiw, lui, c.addi, c.addiw, c.li, c.lui, c.addi16sp,
    c.addi4spn, c.mv, c.add, with rd not x0 (the usual first instructions of a function)."""
    if len(raw) == 4:
        w = int.from_bytes(raw, "little")
        op, rd, f3, rs1 = w & 0x7F, (w >> 7) & 31, (w >> 12) & 7, (w >> 15) & 31
        if not rd:
            return None
        if op == 0x13 and f3 == 0:
            return ("add", rd, rs1, sext(w >> 20, 12))
        if op == 0x1B and f3 == 0:
            return ("add32", rd, rs1, sext(w >> 20, 12))
        if op == 0x37:
            return ("set", rd, 0, sext(w & 0xFFFFF000, 32))
        return None
    h = int.from_bytes(raw[:2], "little")
    q, f3, rd = h & 3, h >> 13, (h >> 7) & 31
    imm6 = sext(((h >> 12) & 1) << 5 | (h >> 2) & 31, 6)
    if q == 0 and f3 == 0:  # c.addi4spn
        uimm = ((h >> 7) & 0xF) << 6 | ((h >> 11) & 3) << 4 | ((h >> 5) & 1) << 3 | ((h >> 6) & 1) << 2
        return ("add", 8 + ((h >> 2) & 7), 2, uimm) if uimm else None
    if q == 1 and rd:
        if f3 == 0:
            return ("add", rd, rd, imm6)  # c.addi
        if f3 == 1:
            return ("add32", rd, rd, imm6)  # c.addiw
        if f3 == 2:
            return ("set", rd, 0, imm6)  # c.li
        if f3 == 3 and rd == 2:  # c.addi16sp
            nz = ((h >> 12) & 1) << 9 | ((h >> 3) & 3) << 7 | ((h >> 5) & 1) << 6
            nz |= ((h >> 2) & 1) << 5 | ((h >> 6) & 1) << 4
            return ("add", 2, 2, sext(nz, 10)) if nz else None
        if f3 == 3:  # c.lui
            return ("set", rd, 0, sext(imm6 << 12, 18)) if imm6 else None
        return None
    if q == 2 and f3 == 4 and rd and (h >> 2) & 31:
        rs2 = (h >> 2) & 31
        return ("addreg", rd, rs2, 0) if (h >> 12) & 1 else ("add", rd, rs2, 0)  # c.add / c.mv
    return None


def register_step(d: Decision) -> Callable[[RegView], None] | None:
    """How a hit on ``d`` goes without its out-of-line step, when the instruction only computes
    a register (see :func:`reg_form`); None otherwise."""
    if d.kind is not Kind.OOL:
        return None
    return _register_step(reg_form(d.raw), GPR_NAMES, "pc", (d.addr + d.length) & 0xFFFF_FFFF_FFFF_FFFF)
