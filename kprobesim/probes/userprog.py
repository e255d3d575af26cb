"""User programs a uprobe can name (the ``PATH`` of ``PATH:OFFSET``).

The bundled firmware links its user task's code (``firmware/kernel/user.c``) on pages of its own
between the symbols ``__user_text_start`` and ``__user_text_end``. That code is the user program
``init`` (the task's comm): an ``OFFSET`` counts from ``__user_text_start`` (as if the program's
file were its text), a ``SYMBOL`` is one of the functions inside it. Any image that defines the
two symbols has such a program.

On a Linux guest a ``PATH`` names an ELF file of the initramfs the machine boots with: its
symbol table gives the functions, its program headers where its text is mapped (a fixed
address: static non-PIE executables), and ``OFFSET`` is a file offset, as in Linux's
``uprobe_events``. The file's own bytes (``source``) are the program's original instructions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kprobesim.elfread import ElfDamage, read_header, read_segments, read_symbols
from kprobesim.errors import ImageError, ProbeError
from kprobesim.image import Image, Symbol
from kprobesim.numbers import kernel_number

if TYPE_CHECKING:
    from kprobesim.machine import Machine

EM_BY_ARCH = {"riscv64": 243, "x86_64": 62, "loongarch64": 258}
ET_EXEC = 2

PROGRAM = "init"
START, END = "__user_text_start", "__user_text_end"


@dataclass(frozen=True)
class UserProgram:
    """The text ``[lo, hi)`` of a user program and its functions."""

    name: str
    lo: int
    hi: int
    functions: tuple[Symbol, ...]
    source: bytes | None = field(default=None, repr=False)  # its file (Linux guests); else in the image
    segments: tuple[tuple[int, int, int], ...] = ()  # (vaddr, file offset, file size) of its text

    def file_bytes(self, addr: int, size: int) -> bytes | None:
        """Up to ``size`` of the file's bytes mapped at ``addr`` (fewer at its segment's end;
        None when the program has no file or ``addr`` is in none of its text)."""
        for vaddr, offset, filesz in self.segments:
            if vaddr <= addr < vaddr + filesz and self.source is not None:
                size = min(size, vaddr + filesz - addr)  # cut at the segment's end
                return self.source[offset + addr - vaddr : offset + addr - vaddr + size]
        return None

    def address_of_offset(self, offset: int) -> int | None:
        """The address a file offset of its text is mapped at."""
        return next((v + offset - o for v, o, n in self.segments if o <= offset < o + n), None)

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
    """The image's user program, or None when it marks none (worked out once per image)."""
    return image.memo("user_program", lambda: _find_user_program(image))


def _find_user_program(image: Image) -> UserProgram | None:
    if not (image.has_symbol(START) and image.has_symbol(END)):
        return None
    lo, hi = image.symbol(START).addr, image.symbol(END).addr
    if not lo < hi:
        return None
    funcs = tuple(
        s for s in image.symbols if s.is_func and s.size and lo <= s.addr < hi and s.name not in (START, END)
    )
    return UserProgram(PROGRAM, lo, hi, funcs)


def elf_program(name: str, data: bytes, arch: str) -> UserProgram:
    """The user program in an ELF executable file (ProbeError if it is not one for ``arch``)."""
    if data[:4] != b"\x7fELF":
        raise ProbeError(f"{name}: not an ELF file (ENOEXEC)")
    try:
        hdr = read_header(data[:64])
        etype = int.from_bytes(data[16:18], "little")
        if hdr.machine != EM_BY_ARCH.get(arch):
            raise ProbeError(f"{name}: an ELF file for machine {hdr.machine}, not {arch} (ENOEXEC)")
        if etype != ET_EXEC:
            raise ProbeError(f"{name}: only static non-PIE executables (ET_EXEC) can be probed, not ELF type {etype}")
        text = [s for s in read_segments(hdr, data[hdr.phoff:], len(data)) if s.executable]
        symbols = read_symbols(hdr, data)
    except ElfDamage as e:
        raise ProbeError(f"{name}: damaged ELF file: {e}") from None
    if not text:
        raise ProbeError(f"{name}: no executable segment")
    funcs = tuple(Symbol(s.name, s.value, s.size, True) for s in symbols if s.is_func and s.size)
    segments = tuple((s.vaddr, s.offset, s.filesz) for s in text)
    lo, hi = min(s.vaddr for s in text), max(s.vaddr + s.filesz for s in text)
    return UserProgram("/" + name.lstrip("/"), lo, hi, funcs, data, segments)


def guest_file_program(machine: Machine, path: str) -> UserProgram | None:
    """The program a guest's initramfs holds at ``path`` (None: the machine boots no initramfs)."""
    archive = getattr(machine.board, "initrd_data", None) or getattr(machine.board, "initrd", None)
    if not isinstance(archive, bytes | bytearray):
        return None
    from kprobesim.guest.initramfs import files

    try:
        found = files(bytes(archive)).get(path.lstrip("/"))
    except ImageError as e:
        raise ProbeError(f"{path}: {e}") from None
    if found is None:
        raise ProbeError(f"{path}: no such file in the initramfs (ENOENT)")
    return elf_program(path, found, machine.arch.name)


def resolve_in(machine: Machine, path: str, location: str) -> tuple[UserProgram, int]:
    """As :func:`resolve`, for the machine's programs: the firmware's, or a guest file."""
    if user_program(machine.image) is None:
        prog = guest_file_program(machine, path)
        if prog is not None:
            return prog, _locate(prog, machine.image, f"{path}:{location}", location)
    return resolve(machine.image, path, location)


def _locate(prog: UserProgram, image: Image, where: str, location: str) -> int:
    """The address of ``OFFSET`` (a file offset) or ``SYMBOL[+OFF]`` in a file's program."""
    number = kernel_number(location)
    if number is not None:
        addr = prog.address_of_offset(number)
        if addr is None:
            raise ProbeError(f"{where}: file offset {number:#x} is not in {prog.name}'s text (EINVAL)")
        return addr
    name, plus, off_text = location.partition("+")
    offset = kernel_number(off_text) if plus else 0
    if offset is None or not name:
        raise ProbeError(f"{where}: bad location '{location}' (expected OFFSET, SYMBOL or SYMBOL+OFFSET) (EINVAL)")
    sym = prog.function(name)
    if sym is None:
        if not prog.functions:
            raise ProbeError(f"{where}: {prog.name} has no symbol table (stripped): name an OFFSET (ENOENT)")
        raise ProbeError(f"{where}: {prog.name} has no function '{name}' (ENOENT)")
    if offset >= sym.size:
        raise ProbeError(f"{where}: offset {offset:#x} is beyond {name} ({sym.size:#x} bytes) (EINVAL)")
    return sym.addr + offset


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
