"""Exceptions raised by the eBPF engine.

Every failure of a program (at load time or at run time) is an :class:`EbpfError`; nothing else
leaves the engine.  Run-time errors carry the program counter (slot index) of the faulting
instruction; verifier errors carry the instruction index.
"""

from __future__ import annotations


class EbpfError(Exception):
    """Base class: a program failed to assemble, load or run."""

    def __init__(self, msg: str, pc: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.pc = pc

    def __str__(self) -> str:
        return self.msg if self.pc is None else f"pc {self.pc}: {self.msg}"


class AsmError(EbpfError, ValueError):
    """The assembler could not parse a line (``pc`` is the source line number, 1-based)."""

    def __str__(self) -> str:
        return self.msg if self.pc is None else f"line {self.pc}: {self.msg}"


class VerifierError(EbpfError):
    """The load-time verifier rejected a program; ``str()`` is ``verifier: insn N: reason``."""

    def __init__(self, insn: int, reason: str) -> None:
        super().__init__(reason, insn)
        self.insn = insn
        self.reason = reason

    def __str__(self) -> str:
        return f"verifier: insn {self.insn}: {self.reason}"


class MemoryFault(EbpfError):
    """A load, store or atomic touched memory outside the regions the program may use."""

    def __init__(self, pc: int | None, kind: str, size: int, addr: int, detail: str) -> None:
        super().__init__(f"invalid {kind} of {size} bytes at {addr:#x} ({detail})", pc)
        self.kind = kind
        self.size = size
        self.addr = addr
        self.detail = detail


class BudgetExhausted(EbpfError):
    """The run executed more instructions than its budget (typically an endless loop)."""

    def __init__(self, pc: int, budget: int) -> None:
        super().__init__(f"instruction budget of {budget} exhausted", pc)
        self.budget = budget


class HelperError(EbpfError):
    """A helper failed (raised, returned a non-integer, or the id is unknown at run time)."""


class StopProgram(Exception):
    """Raised by a helper to end the program at once with ``r0 = value`` (e.g. unwind)."""

    def __init__(self, value: int = 0) -> None:
        super().__init__(value)
        self.value = value


class TailCall(Exception):  # noqa: N818 - a control transfer, not an error
    """Raised by ``bpf_tail_call`` to end the program and run ``target`` (a VM) in its place,
    with the same context; whoever ran the program runs the target (see the loader)."""

    def __init__(self, target: object) -> None:
        super().__init__(target)
        self.target = target
