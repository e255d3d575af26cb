"""loongarch64 break/step variant: ``break 0xa`` probes, ``[insn][break 0xb]`` slots."""

from __future__ import annotations

from collections.abc import Callable

from kprobesim.probes.insn import Decision, Kind, RegForm, RegView, SlotError, sext
from kprobesim.probes.insn import register_step as _register_step

from .regs import GPR_NAMES

BRK_KPROBE_BP = 0xA
BRK_KPROBE_SSTEPBP = 0xB
PROBE_BREAK = (0x002A0000 | BRK_KPROBE_BP).to_bytes(4, "little")
STEP_BREAK = (0x002A0000 | BRK_KPROBE_SSTEPBP).to_bytes(4, "little")
SLOT_SIZE = 8
SLOT_ALIGN = 4

CRMD_IE = 1 << 2
PRMD_PIE = 1 << 2


def probe_break(d: Decision) -> bytes:
    """The break patched over ``d`` (``break 0xa``)."""
    return PROBE_BREAK


def step_break() -> bytes:
    """The break that ends an out-of-line step (``break 0xb``)."""
    return STEP_BREAK


def make_slot(d: Decision, slot_addr: int) -> bytes:
    """Slot bytes: the original instruction followed by ``break 0xb``."""
    if d.kind is not Kind.OOL:
        raise SlotError(f"{d.addr:#x}: {d.text!r} is {d.kind.value}, it takes no slot")
    if slot_addr % SLOT_ALIGN:
        raise SlotError(f"slot {slot_addr:#x} is not {SLOT_ALIGN}-byte aligned")
    return d.raw + STEP_BREAK


def step_break_addr(d: Decision, slot_addr: int) -> int:
    """Where the step break of ``d``'s slot sits (slot + 4)."""
    return slot_addr + 4


def is_probe_break(code: bytes) -> bool:
    """Do ``code``'s first 4 bytes hold ``break 0xa``?"""
    return bytes(code[:4]) == PROBE_BREAK


def is_step_break(code: bytes) -> bool:
    """Do ``code``'s first 4 bytes hold ``break 0xb``?"""
    return bytes(code[:4]) == STEP_BREAK


def after_step(d: Decision, regs: RegView, slot_addr: int, saved: int | None = None) -> None:
    """Resume after the step break: pc = the probed address + 4 (Linux's ``restore``)."""
    regs["pc"] = d.addr + 4


def mask_interrupts(regs: RegView, d: Decision | None = None) -> int:
    """Clear CRMD.IE (the live enable) and PRMD.PIE (Linux's choice) for the step.

    Returns the saved bits: ``crmd_ie | prmd_pie << 1`` of the original values.
    """
    crmd, prmd = regs["crmd"], regs["prmd"]
    regs["crmd"] = crmd & ~CRMD_IE
    regs["prmd"] = prmd & ~PRMD_PIE
    return (1 if crmd & CRMD_IE else 0) | (2 if prmd & PRMD_PIE else 0)


def restore_interrupts(regs: RegView, saved: int) -> None:
    """Put back exactly CRMD.IE and PRMD.PIE as mask_interrupts() found them."""
    crmd, prmd = regs["crmd"], regs["prmd"]
    regs["crmd"] = (crmd & ~CRMD_IE) | (CRMD_IE if saved & 1 else 0)
    regs["prmd"] = (prmd & ~PRMD_PIE) | (PRMD_PIE if saved & 2 else 0)


def reg_form(raw: bytes) -> RegForm | None:
    """``(op, rd, rs, imm)`` (see :data:`~kprobesim.probes.insn.RegForm`) when ``raw`` only
    computes a register: addi.w, addi.d, ori, lu12i.w, ``or rd, rj, $zero`` (move), with rd not
    r0 (the usual first instructions of a function)."""
    w = int.from_bytes(raw[:4], "little")
    rd, rj = w & 31, (w >> 5) & 31
    if not rd or len(raw) != 4:
        return None
    top10 = w >> 22
    if top10 == 0x00A:  # addi.w
        return ("add32", rd, rj, sext(w >> 10, 12))
    if top10 == 0x00B:  # addi.d
        return ("add", rd, rj, sext(w >> 10, 12))
    if top10 == 0x00E:  # ori: zero-extended 12-bit immediate
        return ("or", rd, rj, (w >> 10) & 0xFFF)
    if w >> 25 == 0x0A:  # lu12i.w
        return ("set", rd, 0, sext(((w >> 5) & 0xFFFFF) << 12, 32))
    if w >> 15 == 0x2A and (w >> 10) & 31 == 0:  # or rd, rj, $zero
        return ("add", rd, rj, 0)
    return None


def register_step(d: Decision) -> Callable[[RegView], None] | None:
    """How a hit on ``d`` goes without its out-of-line step, when the instruction only computes
    a register (see :func:`reg_form`); None otherwise."""
    if d.kind is not Kind.OOL:
        return None
    return _register_step(reg_form(d.raw), GPR_NAMES, "pc", (d.addr + d.length) & 0xFFFF_FFFF_FFFF_FFFF)
