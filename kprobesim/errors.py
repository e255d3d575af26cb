"""Errors that end a run or a command with one clear line, each with its own exit status."""

from __future__ import annotations


class SimError(Exception):
    """Base of every error the user sees as one line (never a traceback)."""

    exit_status = 64

    def line(self) -> str:
        """The one-line message printed for this error."""
        return f"kprobesim: {self}"


class UsageError(SimError):
    """Bad command line: unknown arch, contradictory options."""

    exit_status = 64


class ImageError(SimError):
    """A missing, unreadable, truncated or foreign image."""

    exit_status = 65


class ProbeError(SimError):
    """A probe that cannot be placed: unknown symbol, bad offset, rejected instruction."""

    exit_status = 66


class SpecError(SimError):
    """A malformed probe spec or fetch argument."""

    exit_status = 67


class HandlerError(SimError):
    """A probe handler of the user's raised: the run ends, naming the handler, the probe and the
    error in one line (the original exception is the ``__cause__``)."""

    exit_status = 68

    def line(self) -> str:
        return f"kprobesim: handler error: {self}"


class BudgetExhausted(SimError):
    """The run used its instruction budget or its wall-clock time limit."""

    exit_status = 124


class GuestFault(SimError):
    """The guest did something the machine cannot continue from (with a register dump)."""

    exit_status = 125

    def __init__(self, message: str, pc: int, registers: str = "") -> None:
        super().__init__(message)
        self.pc = pc
        self.registers = registers

    def line(self) -> str:
        return f"kprobesim: guest fault: {self} at pc={self.pc:#x}"



class GuestPanic(SimError):
    """The guest kernel panicked (Linux's ``Kernel panic - not syncing``): the reason in one line,
    then the last console lines."""

    exit_status = 125

    def __init__(self, message: str, last_lines: list[str]) -> None:
        super().__init__(message)
        self.last_lines = last_lines

    def line(self) -> str:
        return f"kprobesim: guest kernel panic: {self}"

    def details(self) -> str:
        """The console's last lines, indented, as the CLI prints them below the line."""
        return "last console lines:\n" + "\n".join(f"  {line}" for line in self.last_lines)

# Exit statuses of the command: the guest's own status when it can be told apart from the ones
# above, else GUEST_STATUS_OTHER with the real status on stderr. 64..79 are kprobesim's own,
# 124/125 its budget and fault statuses, 128+ what shells report for signals, and the OS keeps
# only the low 8 bits of a status.
GUEST_STATUS_OTHER = 79


def exit_status_of_guest(status: int) -> tuple[int, str | None]:
    """The command's exit status for a guest exit ``status``, and the stderr line when remapped."""
    if 0 <= status <= 63 or 80 <= status <= 123:
        return status, None
    return GUEST_STATUS_OTHER, (
        f"kprobesim: guest exited with status {status}, reported as {GUEST_STATUS_OTHER} "
        "(outside 0..63 and 80..123, which pass through)"
    )
