"""A Linux kernel panic, seen on the console, ends the run as one clear report.

Linux's ``panic()`` prints ``Kernel panic - not syncing: REASON``, a stack dump, and, when it
stays up (``panic=0``, the default), ``---[ end Kernel panic - not syncing: REASON ]---``
before it spins forever; with ``panic=N`` it first waits N seconds, and with ``panic=-1`` it
restarts the machine at once (the end line is never printed). The watch reads the console's
complete lines as they arrive; once a panic line has been seen the run ends at the end line,
at the restart or power-off the kernel asks for, or after ``GRACE`` more instructions,
whichever comes first, as a :class:`GuestPanic` carrying the reason and the last console lines.
"""

from __future__ import annotations

import re

from ..errors import GuestPanic

#: The panic line, after the optional printk timestamp (``[    1.234567] ``).
_PANIC = re.compile(rb"^(?:\[[ \d.]+\] )?(Kernel panic - not syncing: .*?)\r?$", re.MULTILINE)
_END = re.compile(rb"^(?:\[[ \d.]+\] )?---\[ end Kernel panic - not syncing: ", re.MULTILINE)
GRACE = 50_000_000  # instructions from the panic line to the report, at most (its stack dump)
BEFORE = 3  # console lines shown before the panic line
AFTER = 30  # console lines shown from the panic line on (its call trace): the first and the last


class PanicWatch:
    """Looks for a Linux panic in a console transcript, one complete line batch at a time."""

    def __init__(self) -> None:
        self.reset(b"")

    def reset(self, console: bytes) -> None:
        """Start over on ``console`` (e.g. a restored snapshot's), which holds no panic yet."""
        self.scanned = console.rfind(b"\n") + 1  # the console's complete lines end here
        self.reason: str | None = None
        self.at = 0  # virtual time of the panic line
        self.offset = 0  # where the panic line starts in the console
        self.ended = False

    def feed(self, console: bytes | bytearray, now: int) -> bool:
        """Read the lines completed since the last call; True when the report is complete."""
        end = console.rfind(b"\n") + 1
        if end <= self.scanned:
            return False
        chunk = bytes(console[self.scanned : end])
        self.scanned = end
        if self.reason is None:
            found = _PANIC.search(chunk)
            if found is None:
                return False
            self.reason = found.group(1).decode("utf-8", "replace")
            self.at, self.offset = now, end - len(chunk) + found.start()
        self.ended = self.ended or _END.search(chunk) is not None
        return self.ended

    def due(self, now: int, exited: bool) -> bool:
        """A panic was seen and its report is complete: the end line, an exit, or the grace spent."""
        return self.reason is not None and (self.ended or exited or now - self.at >= GRACE)

    def error(self, console: bytes | bytearray, now: int) -> GuestPanic:
        """The report: the reason, and the console's last lines (a few before the panic line,
        the panic line and what followed; a long call trace loses its middle)."""
        before, after = (_lines(bytes(part)) for part in (console[: self.offset], console[self.offset :]))
        if len(after) > AFTER:
            after = [after[0], f"... ({len(after) - AFTER + 1} lines)", *after[-(AFTER - 2) :]]
        return GuestPanic(f"{self.reason} (after {now} instructions)", before[-BEFORE:] + after)


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n") if line.strip()]
