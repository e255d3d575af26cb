"""The i8042 keyboard controller's reset line (port 0x64, command 0xFE), and nothing behind it.

Linux restarts a PC (``reboot=k``, and after ``panic=N``) by pulsing this line: the run ends
cleanly with status 0. No controller answers otherwise: the status port reads 0xFF, which
Linux's i8042 driver reports as "No controller found" (there are no keyboard and mouse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...machine import Machine

PULSE_RESET = 0xFE


class I8042ResetLine:
    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(0x60, 1, lambda off, size: 0xFF, lambda off, size, value: None)
        machine.add_port(0x64, 1, lambda off, size: 0xFF, self._command)

    def _command(self, offset: int, size: int, value: int) -> None:
        if value & 0xFF == PULSE_RESET:
            self.machine.reboot_requested = True
            self.machine.guest_exit(0)


class Port80:
    """The POST code port: writes (Linux's I/O delay) are taken and ignored."""

    def attach(self, machine: Machine) -> None:
        machine.add_port(0x80, 1, lambda off, size: 0xFF, lambda off, size, value: None)
