"""The i8042 keyboard controller's reset line (port 0x64, command 0xFE), and nothing behind it.

Linux restarts a PC (``reboot=k``, and after ``panic=N``) by pulsing this line: the run ends
cleanly with status 0. No controller answers otherwise. The status port reads 0xFD: output
buffer full (the data port reads 0xFF for ever, so Linux's i8042 driver flushes it, gives up and
reports "No controller found"; there are no keyboard and mouse) and input buffer empty (so the
reboot path's wait for the controller to accept the reset command ends at once instead of
after 0x10000 polls with 2 us delays, ~10^9 instructions, per attempt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...machine import Machine

PULSE_RESET = 0xFE
STATUS = 0xFD  # output buffer full, input buffer empty, and every other bit set as an absent chip


class I8042ResetLine:
    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(0x60, 1, lambda off, size: 0xFF, lambda off, size, value: None)
        machine.add_port(0x64, 1, lambda off, size: STATUS, self._command)

    def _command(self, offset: int, size: int, value: int) -> None:
        if value & 0xFF == PULSE_RESET:
            self.machine.reboot_requested = True
            self.machine.guest_exit(0)


class Port80:
    """The POST code port: writes (Linux's I/O delay) are taken and ignored."""

    def attach(self, machine: Machine) -> None:
        machine.add_port(0x80, 1, lambda off, size: 0xFF, lambda off, size, value: None)
