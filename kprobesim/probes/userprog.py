"""User programs a uprobe can name (the ``PATH`` of ``PATH:OFFSET``).

The bundled firmware links its user task's code (``firmware/kernel/user.c``) on pages of its own
between the symbols ``__user_text_start`` and ``__user_text_end``. That code is the user program
``init`` (the task's comm): an ``OFFSET`` counts from ``__user_text_start`` (as if the program's
file were its text), a ``SYMBOL`` is one of the functions inside it. Any image that defines the
two symbols has such a program.
"""

from __future__ import annotations

from dataclasses import dataclass

from kprobesim.errors import ProbeError
from kprobesim.image import Image, Symbol
from kprobesim.numbers import kernel_number

PROGRAM = "init"
START, END = "__user_text_start", "__user_text_end"


@dataclass(frozen=True)
class UserProgram:
    """The text ``[lo, hi)`` of a user program and its functions."""

    name: str
    lo: int
    hi: int
    functions: tuple[Symbol, ...]

    def contains(self, addr: int) -> bool:
        return self.lo <= addr < self.hi

    def function(self, name: str) -> Symbol | None:
        return next((s for s in self.functions if s.name == name), None)

    def containing(self, addr: int) -> Symbol | None:
        """The function of the program whose bytes hold ``addr``."""
        return next((s for s in self.functions if s.addr <= addr < s.addr + s.size), None)

    def describe(self, addr: int) -> str:
        """``init:u_strlen+0x4`` (or ``init:0x1c`` outside every function)."""
        sym = self.containing(addr)
        if sym is None:
            return f"{self.name}:{addr - self.lo:#x}"
        off = addr - sym.addr
        return f"{self.name}:{sym.name}" + (f"+{off:#x}" if off else "")


def user_program(image: Image) -> UserProgram | None:
    """The image's user program, or None when it marks none."""
    if not (image.has_symbol(START) and image.has_symbol(END)):
        return None
    lo, hi = image.symbol(START).addr, image.symbol(END).addr
    if not lo < hi:
        return None
    funcs = tuple(
        s for s in image.symbols if s.is_func and s.size and lo <= s.addr < hi and s.name not in (START, END)
    )
    return UserProgram(PROGRAM, lo, hi, funcs)


def resolve(image: Image, path: str, location: str) -> tuple[UserProgram, int]:
    """``PATH`` and ``OFFSET``/``SYMBOL[+OFF]`` -> the program and the address (ProbeError
    naming the problem: no such program, an unknown symbol, a kernel symbol, out of range)."""
    prog = user_program(image)
    where = f"{path}:{location}"
    if prog is None or path.lstrip("/") != prog.name:
        known = f" (this image's user program is '{prog.name}')" if prog else " (this image has no user program)"
        raise ProbeError(f"{where}: no such file '{path}'{known} (ENOENT)")
    number = kernel_number(location)
    if number is not None:
        if not 0 <= number < prog.hi - prog.lo:
            if image.in_text(number) and not prog.contains(number):
                raise ProbeError(
                    f"{where}: {image.describe(number)} ({number:#x}) is a kernel address, not an offset into "
                    f"{prog.name}: use a kprobe (EINVAL)"
                )
            raise ProbeError(
                f"{where}: offset {number:#x} is outside {prog.name} ({prog.hi - prog.lo:#x} bytes of text) (EINVAL)"
            )
        return prog, prog.lo + number
    name, plus, off_text = location.partition("+")
    offset = kernel_number(off_text) if plus else 0
    if offset is None or not name:
        raise ProbeError(f"{where}: bad location '{location}' (expected OFFSET, SYMBOL or SYMBOL+OFFSET) (EINVAL)")
    sym = prog.function(name)
    if sym is None:
        if image.has_symbol(name):
            raise ProbeError(f"{where}: {name} is kernel text, not in {prog.name}: use a kprobe (EINVAL)")
        raise ProbeError(f"{where}: {prog.name} has no function '{name}' (ENOENT)")
    if offset >= sym.size:
        raise ProbeError(f"{where}: offset {offset:#x} is beyond {name} ({sym.size:#x} bytes) (EINVAL)")
    return prog, sym.addr + offset
