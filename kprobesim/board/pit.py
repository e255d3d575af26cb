"""i8254 PIT channel 0 on virtual time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine

from . import NEVER


class Pit:
    """i8254 channel 0 in rate-generator mode: IRQ0 (vector 32) every ``reload`` ticks.

    One tick is one retired instruction. The pending edge is latched until taken.
    """

    VECTOR = 32

    def __init__(self) -> None:
        self.reload = 0
        self.next_fire = NEVER
        self.latched = False
        self._low: int | None = None

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(0x40, 4, lambda off, size: 0, self._write)
        machine.add_port(0x20, 2, lambda off, size: 0, lambda off, size, value: None)  # PIC, EOI
        machine.add_port(0xA0, 2, lambda off, size: 0, lambda off, size, value: None)
        machine.add_timer(self)

    def _write(self, offset: int, size: int, value: int) -> None:
        if offset == 3:  # mode/command: a new count follows, low byte first
            self._low = None
            return
        if offset != 0:
            return
        if self._low is None:
            self._low = value & 0xFF
            return
        self.reload = ((value & 0xFF) << 8 | self._low) or 0x10000
        self._low = None
        self.next_fire = self.machine.now() + self.reload
        self.machine.timer_changed()

    def deadline(self) -> int:
        return self.machine.now() if self.latched else self.next_fire

    def pending(self, now: int) -> int | None:
        if now >= self.next_fire:
            self.latched = True
            missed = (now - self.next_fire) // self.reload + 1
            self.next_fire += missed * self.reload
        return self.VECTOR if self.latched else None

    def delivered(self, now: int) -> None:
        self.latched = False
