"""A Linux kernel panic, seen on the console, ends the run as one clear report.

Linux's ``panic()`` prints ``Kernel panic - not syncing: REASON``, a stack dump, and, when it
stays up (``panic=0``, the default), ``---[ end Kernel panic - not syncing: REASON ]---``
before it spins forever; with ``panic=N`` it first waits N seconds, and with ``panic=-1`` it
restarts the machine at once (the end line is never printed). The watch reads the console's
complete lines as they arrive; once a panic line has been seen the run ends at the end line,
at the restart or power-off the kernel asks for, or after ``GRACE`` more instructions,
whichever comes first, as a :class:`GuestPanic` carrying the reason and the last console lines.

xv6 (riscv and x86) prints ``panic: REASON`` (x86: ``lapicid N: panic: REASON``), sets its global
``panicked`` and spins. A console line of that form is only a candidate, since a user program
may print it too: it is a panic once the kernel's ``panicked`` flag reads non-zero (the
machine's ``flag`` callable), and is dropped when the flag stays clear for ``GRACE``
instructions or the kernel has no such flag.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import GuestPanic

#: The panic line, after the optional printk timestamp (``[    1.234567] ``).
_PANIC = re.compile(rb"^(?:\[[ \d.]+\] )?(Kernel panic - not syncing: .*?)\r?$", re.MULTILINE)
_END = re.compile(rb"^(?:\[[ \d.]+\] )?---\[ end Kernel panic - not syncing: ", re.MULTILINE)
_XV6 = re.compile(rb"^(?:lapicid \d+: )?(panic: .*?)\r?$", re.MULTILINE)
GRACE = 50_000_000  # instructions from the panic line to the report, at most (its stack dump)
BEFORE = 3  # console lines shown before the panic line
AFTER = 30  # console lines shown from the panic line on (its call trace): the first and the last


class PanicWatch:
    """Looks for a Linux panic in a console transcript, one complete line batch at a time."""

    def __init__(self, flag: Callable[[], bool] | None = None) -> None:
        self.flag = flag  # reads xv6's ``panicked`` (False when the kernel has none)
        self.reset(b"")

    def reset(self, console: bytes) -> None:
        """Start over on ``console`` (e.g. a restored snapshot's), which holds no panic yet."""
        self.scanned = console.rfind(b"\n") + 1  # the console's complete lines end here
        self.reason: str | None = None
        self.at = 0  # virtual time of the panic line
        self.offset = 0  # where the panic line starts in the console
        self.ended = False
        self.candidate: tuple[str, int, int] | None = None  # an xv6-form line: reason, time, offset

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
                xv6 = _XV6.search(chunk) if self.flag is not None and self.candidate is None else None
                if xv6 is not None:
                    self.candidate = (xv6.group(1).decode("utf-8", "replace"), now, end - len(chunk) + xv6.start())
                return False
            self.reason = found.group(1).decode("utf-8", "replace")
            self.at, self.offset = now, end - len(chunk) + found.start()
        self.ended = self.ended or _END.search(chunk) is not None
        return self.ended

    def due(self, now: int, exited: bool) -> bool:
        """A panic was seen and its report is complete: the end line, an exit, or the grace spent."""
        if self.candidate is not None and self.reason is None:
            self._confirm(now)
        return self.reason is not None and (self.ended or exited or now - self.at >= GRACE)

    def _confirm(self, now: int) -> None:
        """An xv6-form line is a panic once ``panicked`` is set (nothing follows it); a line
        the flag never confirms was a program's output."""
        assert self.candidate is not None and self.flag is not None
        if self.flag():
            (self.reason, self.at, self.offset), self.ended = self.candidate, True
        elif now - self.candidate[1] >= GRACE:
            self.candidate = None

    def error(self, console: bytes | bytearray, now: int) -> GuestPanic:
        """The report: the reason, and the console's last lines (a few before the panic line,
        the panic line and what followed; a long call trace loses its middle)."""
        before, after = (_lines(bytes(part)) for part in (console[: self.offset], console[self.offset :]))
        if len(after) > AFTER:
            after = [after[0], f"... ({len(after) - AFTER + 1} lines)", *after[-(AFTER - 2) :]]
        return GuestPanic(f"{self.reason} (after {now} instructions)", before[-BEFORE:] + after)


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n") if line.strip()]
