"""Console input fed to a UART as if typed, on virtual time (so runs stay deterministic).

A line is typed once the console has been quiet for ``QUIET`` instructions (the guest has
answered the previous one and waits) and, when a ``prompt`` is given, once the guest's output
since the previous line ends with it (a shell waiting for a command, however long its boot or
the command took); within a line, each byte follows ``GAP`` instructions after the previous one
was read. When everything was typed and the console has been quiet (and prompted) again, the
run ends with status 0: the guest has answered the whole script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import NEVER

if TYPE_CHECKING:
    from ..machine import Machine
    from .ns16550a import Ns16550a

QUIET = 5_000_000  # 0.5 s of virtual time at virt's 10 MHz timebase
GAP = 100_000


class ConsoleInput:
    """A timer that puts the next input byte into the UART's receive buffer."""

    def __init__(self, data: bytes, uart: Ns16550a, end_when_done: bool = True, prompt: bytes = b"") -> None:
        self.data = bytes(data)
        self.prompt = bytes(prompt)
        self.typed_at = -1  # console length when the last line ended (its answer comes after)
        self.pos = 0
        self.uart = uart
        self.end_when_done = end_when_done
        self.last_activity = 0  # virtual time of the last output byte or typed byte

    def retype(self, data: bytes) -> None:
        """Type ``data`` from here on instead of what is left of the script (e.g. another
        script for each run from a snapshot taken at a prompt)."""
        self.data, self.pos = bytes(data), 0

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_timer(self)
        machine.console_listeners.append(self._output)
        self.uart.on_read_rx = machine.timer_changed

    def _output(self) -> None:
        """The guest printed: quiet is counted from this instruction on (exact virtual time,
        whatever the run loop's slices are, so probes that change them type at the same moments);
        a deadline that moved before the slice's end ends the slice there."""
        self.last_activity = max(self.last_activity, self.machine.now())
        self.machine.timer_changed()

    def deadline(self) -> int:
        if self.uart.rx:
            return NEVER
        at_line_start = self.pos == 0 or self.data[self.pos - 1] in b"\r\n"
        if at_line_start and not self._prompted():
            return NEVER
        if self.pos >= len(self.data):
            return self.last_activity + QUIET if self.end_when_done else NEVER
        return self.last_activity + (QUIET if at_line_start else GAP)

    def _prompted(self) -> bool:
        """The guest asked for the next line (always, without a prompt to wait for)."""
        if not self.prompt:
            return True
        out = self.machine.console_bytes
        return len(out) > self.typed_at and out.endswith(self.prompt)

    def pending(self, now: int) -> int | None:
        if now < self.deadline():
            return None
        if self.pos >= len(self.data):
            self.machine.guest_exit(0)
            return None
        byte = self.data[self.pos : self.pos + 1]
        self.uart.receive(byte)
        self.pos += 1
        self.last_activity = now
        if byte in b"\r\n":
            self.typed_at = len(self.machine.console_bytes)
        return None

    def delivered(self, now: int) -> None:
        """Nothing to acknowledge: the UART raises its own interrupt."""
