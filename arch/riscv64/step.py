"""riscv64 break/step variant: ebreak breaks, ``[insn][ebreak]`` slots, interrupt masking."""

from __future__ import annotations

from kprobesim.probes.insn import Decision, Kind, RegView, SlotError

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
