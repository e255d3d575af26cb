"""A Linux kernel ``Image`` as the simulator sees it: symbols from the kernel's own kallsyms
tables (Debian ships only a stub System.map) and where the kernel maps itself.

Linux runs at virtual addresses (``_start`` = KERNEL_LINK_ADDR, 0xffffffff80000000 on riscv64)
over the physical pages it was loaded into; until its MMU is on, that mapping is known only
from the image. ``boot_map`` gives it, so probes by symbol can be placed before the kernel
runs (the break goes into the physical page behind the symbol, as ``text_poke`` would).
A probe on a function's entry goes past its ftrace pad, which the kernel rewrites at boot
(riscv64: four ``c.nop``; x86_64: the 5-byte ``call __fentry__``, made a nop by ftrace).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ImageError
from ..image import Image, Symbol
from ..task import Task
from .btf import KernelBtfError, find_btf
from .current import linux_current
from .kallsyms import find_kallsyms

_TEXT_TYPES = "TtWw"
FTRACE_PAD = bytes.fromhex("0100" * 4)  # riscv64 -fpatchable-function-entry: four c.nop
CALL_REL32, CALL_LEN = 0xE8, 5  # x86_64 -mfentry: call __fentry__


@dataclass
class LinuxImage(Image):
    """A kernel image whose symbols are virtual addresses over a physically loaded image."""

    vbase: int = 0
    pbase: int = 0
    _btf_blob: bytes | None = None
    _btf_searched: bool = False

    def btf_data(self) -> bytes | None:
        """The kernel's own ``.BTF`` blob, found in the image by its header; None when it was
        built without ``CONFIG_DEBUG_INFO_BTF``."""
        if not self._btf_searched:
            for seg in self.segments:  # the kernel's own (an x86 loader puts its tables first)
                try:
                    self._btf_blob = find_btf(seg.data)
                    break
                except KernelBtfError:
                    continue
            self._btf_searched = True
        return self._btf_blob

    @staticmethod
    def task_source(machine: Any) -> Task:
        """The running task from Linux's ``current`` (see :mod:`kprobesim.guest.current`)."""
        return linux_current(machine)

    def read(self, addr: int, size: int) -> bytes:
        if self.vbase <= addr:
            addr = addr - self.vbase + self.pbase
        return super().read(addr, size)

    def probe_site(self, addr: int) -> int:
        """A function's entry is its ftrace pad (nops that ``ftrace_init`` rewrites early in boot,
        a break there with them; Linux itself probes it through ftrace): probe the first
        instruction after it, where the registers are still those of the entry."""
        found = self.lookup(addr)
        if found is None or found[1] != 0 or not found[0].is_func:
            return addr
        try:
            head = self.read(addr, max(len(FTRACE_PAD), CALL_LEN))
        except ImageError:
            return addr
        if head[: len(FTRACE_PAD)] == FTRACE_PAD and self.arch == "riscv64":
            return addr + len(FTRACE_PAD)
        if head[0] == CALL_REL32 and self.arch == "x86_64" and self.has_symbol("__fentry__"):
            target = addr + CALL_LEN + int.from_bytes(head[1:CALL_LEN], "little", signed=True)
            if target == self.symbol("__fentry__").addr:
                return addr + CALL_LEN
        return addr


def with_kallsyms(
    image: Image, kernel: bytes | None = None, boot_map: tuple[int, int, int] | None = None
) -> tuple[Image, tuple[int, int, int]]:
    """``image`` with the kernel's kallsyms as its symbols and its text and init text as text,
    and the boot map ``(virtual start, size, physical start)`` of the loaded image.

    By default the kernel is the image's first segment, mapped from its ``_start``; a loader
    that placed the kernel otherwise (an x86 vmlinux by its program headers) gives the bytes
    to scan and the map."""
    seg = image.segments[0]
    table = find_kallsyms(seg.data if kernel is None else kernel)
    out: list[Symbol] = []
    following = 0
    for sym in reversed(table.symbols):  # a function ends where the next higher symbol starts
        is_func = sym.type in _TEXT_TYPES
        size = max(following - sym.address, 0) if is_func else 0
        out.append(Symbol(sym.name, sym.address, size, is_func))
        if sym.address < following or not following:
            following = sym.address
    start, stext, etext = (table.get(n) for n in ("_start", "_stext", "_etext"))
    if boot_map is None and start is not None:
        boot_map = (start.address, seg.memsz, seg.addr)
    if boot_map is None or stext is None or etext is None:
        raise ImageError(f"{image.path}: kallsyms has no _start/_stext/_etext: not a Linux kernel image")
    fields = {f.name: getattr(image, f.name) for f in dataclasses.fields(Image)}
    text = [(stext.address, etext.address)]
    sinit, einit = table.get("_sinittext"), table.get("_einittext")
    if sinit is not None and einit is not None:  # init text: probeable until Linux frees it
        text.append((sinit.address, einit.address))
    fields.update(symbols=out, text=text)
    linked = LinuxImage(**fields, vbase=boot_map[0], pbase=boot_map[2])
    return linked, boot_map
