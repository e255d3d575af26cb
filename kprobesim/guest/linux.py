"""A Linux kernel ``Image`` as the simulator sees it: symbols from the kernel's own kallsyms
tables (Debian ships only a stub System.map) and where the kernel maps itself.

Linux runs at virtual addresses (``_start`` = KERNEL_LINK_ADDR, 0xffffffff80000000 on riscv64)
over the physical pages it was loaded into; until its MMU is on, that mapping is known only
from the image. ``boot_map`` gives it, so probes by symbol can be placed before the kernel
runs (the break goes into the physical page behind the symbol, as ``text_poke`` would).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ImageError
from ..image import Image, Symbol
from .kallsyms import find_kallsyms

_TEXT_TYPES = "TtWw"


@dataclass
class LinuxImage(Image):
    """A kernel image whose symbols are virtual addresses over a physically loaded image."""

    vbase: int = 0
    pbase: int = 0

    def read(self, addr: int, size: int) -> bytes:
        if self.vbase <= addr:
            addr = addr - self.vbase + self.pbase
        return super().read(addr, size)


def with_kallsyms(image: Image) -> tuple[Image, tuple[int, int, int]]:
    """``image`` with the kernel's kallsyms as its symbols and its text and init text as text,
    and the boot map ``(virtual start, size, physical start)`` of the loaded image."""
    seg = image.segments[0]
    table = find_kallsyms(seg.data)
    out: list[Symbol] = []
    following = 0
    for sym in reversed(table.symbols):  # a function ends where the next higher symbol starts
        is_func = sym.type in _TEXT_TYPES
        size = max(following - sym.address, 0) if is_func else 0
        out.append(Symbol(sym.name, sym.address, size, is_func))
        if sym.address < following or not following:
            following = sym.address
    start, stext, etext = (table.get(n) for n in ("_start", "_stext", "_etext"))
    if start is None or stext is None or etext is None:
        raise ImageError(f"{image.path}: kallsyms has no _start/_stext/_etext: not a Linux kernel image")
    fields = {f.name: getattr(image, f.name) for f in dataclasses.fields(Image)}
    text = [(stext.address, etext.address)]
    sinit, einit = table.get("_sinittext"), table.get("_einittext")
    if sinit is not None and einit is not None:  # init text: probeable until Linux frees it
        text.append((sinit.address, einit.address))
    fields.update(symbols=out, text=text)
    linked = LinuxImage(**fields, vbase=start.address, pbase=seg.addr)
    return linked, (start.address, seg.memsz, seg.addr)
