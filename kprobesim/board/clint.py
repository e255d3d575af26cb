"""RISC-V CLINT (machine timer) on virtual time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine

from . import NEVER


class Clint:
    """RISC-V CLINT for hart 0: ``mtime`` is virtual time, ``mtimecmp`` raises interrupt 7.

    With ``lines`` (the ``virt`` board) it drives the hart's MTIP and MSIP bits directly:
    MTIP follows ``mtime >= mtimecmp`` (a store of a deadline already passed raises it at
    once, without ending the slice) and ``msip`` at offset 0 drives MSIP. ``mtime`` advances
    one tick every ``insns_per_tick`` retired instructions.
    """

    IRQ = 7
    MSIP = 0x0
    MTIMECMP = 0x4000
    MTIME = 0xBFF8

    def __init__(self, base: int, lines: bool = False, insns_per_tick: int = 1) -> None:
        self.base = base
        self.mtimecmp = NEVER
        self.msip = 0
        self.lines = lines
        self.insns_per_tick = insns_per_tick

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.engine.mmio_map(self.base, 0x10000, self._read, None, self._write, None)
        machine.add_timer(self)

    def _read(self, uc: object, offset: int, size: int, ud: object) -> int:
        if offset < 4:
            return self.msip
        if self.MTIMECMP <= offset < self.MTIMECMP + 8:
            value, shift = self.mtimecmp, (offset - self.MTIMECMP) * 8
        elif self.MTIME <= offset < self.MTIME + 8:
            value, shift = self.machine.now() // self.insns_per_tick, (offset - self.MTIME) * 8
        else:
            return 0
        return (value >> shift) & ((1 << (size * 8)) - 1)

    def _write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        if offset < 4 and self.lines:
            self.msip = value & 1
            self.machine.traps.hart.set_line(1 << 3, bool(self.msip))
            return
        if not self.MTIMECMP <= offset < self.MTIMECMP + 8:
            return
        shift = (offset - self.MTIMECMP) * 8
        mask = ((1 << (size * 8)) - 1) << shift
        self.mtimecmp = (self.mtimecmp & ~mask) | ((value << shift) & mask)
        if self.lines:
            due = self.machine.now() >= self.deadline()
            self.machine.traps.hart.set_line(1 << self.IRQ, due)
            if due:  # already pending: nothing for the run loop to wait for
                return
        self.machine.timer_changed()

    def deadline(self) -> int:
        """The virtual time (instructions) at which ``mtime`` reaches ``mtimecmp``."""
        return min(self.mtimecmp * self.insns_per_tick, NEVER)

    def pending(self, now: int) -> int | None:
        return self.IRQ if now >= self.deadline() else None

    def delivered(self, now: int) -> None:
        """Level-triggered: pending until the guest moves ``mtimecmp``."""
