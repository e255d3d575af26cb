"""RISC-V CLINT (machine timer) on virtual time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine

from . import NEVER


class Clint:
    """RISC-V CLINT for hart 0: ``mtime`` is virtual time, ``mtimecmp`` raises interrupt 7."""

    IRQ = 7
    MTIMECMP = 0x4000
    MTIME = 0xBFF8

    def __init__(self, base: int) -> None:
        self.base = base
        self.mtimecmp = NEVER

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.engine.mmio_map(self.base, 0x10000, self._read, None, self._write, None)
        machine.add_timer(self)

    def _read(self, uc: object, offset: int, size: int, ud: object) -> int:
        if self.MTIMECMP <= offset < self.MTIMECMP + 8:
            value, shift = self.mtimecmp, (offset - self.MTIMECMP) * 8
        elif self.MTIME <= offset < self.MTIME + 8:
            value, shift = self.machine.now(), (offset - self.MTIME) * 8
        else:
            return 0
        return (value >> shift) & ((1 << (size * 8)) - 1)

    def _write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        if not self.MTIMECMP <= offset < self.MTIMECMP + 8:
            return
        shift = (offset - self.MTIMECMP) * 8
        mask = ((1 << (size * 8)) - 1) << shift
        self.mtimecmp = (self.mtimecmp & ~mask) | ((value << shift) & mask)
        self.machine.timer_changed()

    def deadline(self) -> int:
        return self.mtimecmp

    def pending(self, now: int) -> int | None:
        return self.IRQ if now >= self.mtimecmp else None

    def delivered(self, now: int) -> None:
        """Level-triggered: pending until the guest moves ``mtimecmp``."""
