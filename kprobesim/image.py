"""Kernel images: ELF (bounds-checked reader) or raw bytes with a System.map; symbols both ways."""

from __future__ import annotations

import bisect
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import elfread
from .errors import ImageError, ProbeError
from .files import open_regular, read_bounded, read_regular
from .numbers import MASK64, kernel_number

ELF_MACHINES = {"riscv64": 243, "x86_64": 62, "loongarch64": 258}
_MACHINE_NAMES = {v: k for k, v in ELF_MACHINES.items()}
_ELF_MAGIC = b"\x7fELF"
_MAP_LINE = re.compile(r"^([0-9a-fA-F]+)\s+([A-Za-z?])\s+(\S+)$", re.ASCII)
_LOCATION = re.compile(r"(?P<name>[A-Za-z_.$][\w.$]*)(?:(?P<sign>[+-])(?P<off>\w*))?", re.ASCII)
MAX_ELF = 1 << 30  # an ELF file (with its debug sections) may have at most 1 GiB
MAX_SYSTEM_MAP = 64 << 20


@dataclass(frozen=True)
class Symbol:
    """A named address range in the image."""

    name: str
    addr: int
    size: int
    is_func: bool


@dataclass(frozen=True)
class Segment:
    """Bytes to place in guest memory (``memsz`` beyond the data is zero-filled)."""

    addr: int
    data: bytes
    memsz: int


@dataclass
class Image:
    """A loadable kernel image and its symbol table."""

    path: Path
    arch: str | None
    entry: int
    segments: list[Segment]
    symbols: list[Symbol] = field(default_factory=list)
    # Kernel text (where probes may go): executable sections of an ELF; a raw image's functions
    # in its System.map; the whole image when nothing says more.
    text: list[tuple[int, int]] = field(default_factory=list)
    #: The ELF's ``.BTF`` section, when it has one.
    btf_section: bytes | None = None

    def __post_init__(self) -> None:
        self.symbols.sort(key=lambda s: (s.addr, s.name))
        if not self.text:
            funcs = [(s.addr, s.addr + s.size) for s in self.symbols if s.is_func and s.size]
            self.text = funcs or [(s.addr, s.addr + s.memsz) for s in self.segments]
        self._by_name = {s.name: s for s in self.symbols}
        self._addrs = [s.addr for s in self.symbols]
        self._memo: dict[str, Any] = {}  # see memo(); not a field: a copy of the fields starts afresh

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        arch: str | None = None,
        base: int | None = None,
        entry: int | None = None,
        symbols: str | Path | None = None,
    ) -> Image:
        """Load an ELF (arch checked or inferred) or a raw image at ``base``.

        Only regular files are read; headers are checked before the rest of the file is read,
        and an image that cannot fit the board's RAM is refused at once."""
        path = Path(path)
        with open_regular(path, "kernel image", ImageError) as f:
            size = os.fstat(f.fileno()).st_size
            try:
                head = f.read(64)
            except OSError as e:
                raise ImageError(f"{path}: cannot read: {e.strerror}") from None
            if not head:
                raise ImageError(f"{path}: empty file")
            if head[:4] == _ELF_MAGIC:
                image = cls._load_elf(path, f, head, size, arch)
                if entry is not None:
                    image.entry = entry
            else:
                if arch is None:
                    raise ImageError(f"{path}: not an ELF file; a raw image needs --arch")
                if base is None:
                    raise ImageError(f"{path}: raw image needs a load address (--base)")
                ram = _ram(arch)[1]
                if size > ram:
                    raise ImageError(f"{path}: {size:,} bytes is larger than {arch}'s RAM ({ram:,} bytes)")
                data = head + read_bounded(f, path, ram - len(head), f"{arch} image", ImageError)
                syms = _read_system_map(Path(symbols)) if symbols else []
                image = cls(path, arch, base if entry is None else entry, [Segment(base, data, len(data))], syms)
        if symbols and head[:4] == _ELF_MAGIC:
            image = cls(
                image.path, image.arch, image.entry, image.segments, _read_system_map(Path(symbols)), image.text,
                image.btf_section,
            )
        return image

    @classmethod
    def _load_elf(cls, path: Path, f: BinaryIO, head: bytes, size: int, arch: str | None) -> Image:
        try:
            hdr = elfread.read_header(head)
        except elfread.ElfDamage as e:
            raise ImageError(f"{path}: {e}") from None
        found = _MACHINE_NAMES.get(hdr.machine)
        if found is None:
            raise ImageError(f"{path}: ELF machine {hdr.machine} is not riscv64, loongarch64 or x86_64")
        if arch is not None and arch != found:
            raise ImageError(f"{path}: ELF is for {found}, not {arch}")
        if size > MAX_ELF:
            raise ImageError(f"{path}: {size:,} bytes is larger than the {MAX_ELF:,} an ELF image may have")
        ram_base, ram_size = _ram(found)
        try:
            # The program headers first: an image whose segments cannot fit RAM is refused unread.
            offset, length = elfread.program_header_span(hdr, size)
            f.seek(offset)
            segs = elfread.read_segments(hdr, f.read(length).ljust(length, b"\0"), size)
            for seg in segs:
                if not (ram_base <= seg.vaddr and seg.vaddr + seg.memsz <= ram_base + ram_size):
                    raise ImageError(
                        f"{path}: segment {seg.vaddr:#x}-{seg.vaddr + seg.memsz:#x} is outside "
                        f"{found} RAM {ram_base:#x}-{ram_base + ram_size:#x}"
                    )
            if not segs:
                raise ImageError(f"{path}: ELF has no loadable segments")
            f.seek(0)
            data = read_bounded(f, path, MAX_ELF, "ELF image", ImageError)
            segments = [
                Segment(s.vaddr, data[s.offset : s.offset + s.filesz], s.memsz)
                for s in segs
            ]
            if any(len(s.data) < t.filesz for s, t in zip(segments, segs, strict=True)):
                raise ImageError(f"{path}: the file shrank while it was read")
            syms = [Symbol(s.name, s.value, s.size, s.is_func) for s in elfread.read_symbols(hdr, data)]
            text = elfread.executable_ranges(hdr, data, segs)
            btf = elfread.section_bytes(hdr, data, ".BTF")
        except elfread.ElfDamage as e:
            raise ImageError(f"{path}: damaged ELF: {e}") from None
        return cls(path, found, hdr.entry, segments, _dedupe(syms), text, btf)

    def btf_data(self) -> bytes | None:
        """The kernel's raw BTF: the ELF's ``.BTF`` section, else a ``.btf`` file beside the image
        (``kernel.elf``/``kernel.bin`` -> ``kernel.btf``, as the bundled firmware ships it)."""
        if self.btf_section:
            return self.btf_section
        side = self.path.with_suffix(".btf")
        try:
            return side.read_bytes() if side != self.path and side.is_file() else None
        except OSError as e:
            raise ImageError(f"{side}: cannot read: {e.strerror}") from None

    # -- symbols ------------------------------------------------------------------------------
    def symbol(self, name: str) -> Symbol:
        """The symbol called ``name`` (ProbeError if the image has none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ProbeError(f"unknown symbol '{name}'") from None

    def find_symbol(self, name: str) -> Symbol | None:
        """The symbol called ``name``, or None."""
        return self._by_name.get(name)

    def has_symbol(self, name: str) -> bool:
        return name in self._by_name

    def resolve(self, spec: str, signed: bool = False) -> int:
        """``SYM``, ``SYM+OFF`` or a number -> address (numbers as the kernel reads them:
        ``0x`` hex, leading ``0`` octal); ``SYM-OFF`` too when ``signed`` (fetch args' ``@SYM-OFF``)."""
        spec = spec.strip()
        value = kernel_number(spec)
        if value is not None:
            return value
        m = _LOCATION.fullmatch(spec)
        if m is None or (m["sign"] == "-" and not signed):
            raise ProbeError(f"bad probe location '{spec}' (expected SYM, SYM+OFF or an address)")
        offset = 0
        if m["off"] is not None:
            offset = kernel_number(m["off"])  # type: ignore[assignment]
            if offset is None:
                raise ProbeError(f"bad offset in '{spec}'")
        return (self.symbol(m["name"]).addr + (-offset if m["sign"] == "-" else offset)) & MASK64

    def lookup(self, addr: int) -> tuple[Symbol, int] | None:
        """The symbol containing ``addr`` and the offset into it."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        while i >= 0:
            sym = self.symbols[i]
            if sym.addr <= addr < sym.addr + max(sym.size, 1):
                return sym, addr - sym.addr
            if sym.addr < addr and sym.size == 0:
                i -= 1
                continue
            return None
        return None

    def describe(self, addr: int) -> str:
        """``sym+0xoff`` when known, else the hex address."""
        found = self.lookup(addr)
        if found is None:
            return f"{addr:#x}"
        sym, off = found
        return f"{sym.name}+{off:#x}" if off else sym.name

    def read(self, addr: int, size: int) -> bytes:
        """Bytes of the image at a guest address (as loaded, before the run)."""
        for seg in self.segments:
            if seg.addr <= addr and addr + size <= seg.addr + seg.memsz:
                start = addr - seg.addr
                chunk = seg.data[start : start + size]
                return chunk + bytes(size - len(chunk))
        raise ImageError(f"{self.path}: address {addr:#x} is not in the image")

    def blacklist(self) -> frozenset[int]:
        """Function addresses the image marks not-probeable (``kprobe_blacklist`` section); read
        once per image (every probe registry asks, and a registry is made after each restore)."""
        return self.memo("blacklist", self._read_blacklist)

    def _read_blacklist(self) -> frozenset[int]:
        if not (self.has_symbol("__start_kprobe_blacklist") and self.has_symbol("__stop_kprobe_blacklist")):
            return frozenset()
        start = self._by_name["__start_kprobe_blacklist"].addr
        stop = self._by_name["__stop_kprobe_blacklist"].addr
        raw = self.read(start, stop - start)
        return frozenset(v for (v,) in struct.iter_unpack("<Q", raw[: len(raw) // 8 * 8]))

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``'s value, computed once per image: for facts that follow from the image's
        bytes and symbols alone (both fixed once it is loaded). The value must not be mutated."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def probe_site(self, addr: int) -> int:
        """Where a probe asked for at ``addr`` goes (the address itself; a guest OS may move it)."""
        return addr

    def add_text(self, lo: int, hi: int) -> None:
        """Declare ``[lo, hi)`` kernel text: code placed in memory at run time (as Linux's module
        text), where probes may then go."""
        if not 0 <= lo < hi:
            raise ImageError(f"{self.path}: bad text range {lo:#x}..{hi:#x}")
        self.text.append((lo, hi))

    def in_text(self, addr: int) -> bool:
        """Is ``addr`` in kernel text (Linux's ``kernel_text_address``)?"""
        return any(lo <= addr < hi for lo, hi in self.text)

    @property
    def span(self) -> tuple[int, int]:
        """Lowest and highest guest address the image occupies."""
        return min(s.addr for s in self.segments), max(s.addr + s.memsz for s in self.segments)


def load_image(
    path: str | Path,
    arch: str | None = None,
    base: int | None = None,
    entry: int | None = None,
    symbols: str | Path | None = None,
) -> Image:
    """:meth:`Image.load` with the board's defaults for a raw image, as the command line has them:
    the load address is the arch's ``default_base`` and a ``System.map`` beside the image is read."""
    path = Path(path)
    if arch is not None:
        from .arch import get_arch

        default_base = get_arch(arch).default_base  # an unknown arch: one clear line before the file
    with open_regular(path, "kernel image", ImageError) as f:  # only the head: FIFOs, devices refused
        try:
            raw = f.read(4) != _ELF_MAGIC
        except OSError:
            raw = False  # Image.load names the problem
    if raw and symbols is None and (path.parent / "System.map").is_file():
        symbols = path.parent / "System.map"
    if raw and base is None and arch is not None:
        base = default_base
    return Image.load(path, arch=arch, base=base, entry=entry, symbols=symbols)


def _ram(arch: str) -> tuple[int, int]:
    from .arch import get_arch

    return get_arch(arch).ram


def _dedupe(syms: list[Symbol]) -> list[Symbol]:
    seen: dict[str, Symbol] = {}
    for s in syms:
        if s.name not in seen or (s.size and not seen[s.name].size):
            seen[s.name] = s
    return list(seen.values())


def _read_system_map(path: Path) -> list[Symbol]:
    """Parse an nm-style System.map; sizes are the distance to the next symbol."""
    raw = read_regular(path, MAX_SYSTEM_MAP, "symbol map", ImageError)
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise ImageError(f"{path}: cannot read symbol map: {e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MAP_LINE.match(line.strip())
        if not m:
            raise ImageError(f"{path}:{n}: not a System.map line: {line.strip()[:60]!r}")
        addr = int(m.group(1), 16)
        if addr > MASK64:
            raise ImageError(f"{path}:{n}: address {m.group(1)} is not a 64-bit address")
        rows.append((addr, m.group(2), m.group(3)))
    rows.sort()
    syms = []
    nxt = 0  # the next higher address, walking down (linear: maps have 100,000s of lines)
    for i in range(len(rows) - 1, -1, -1):
        addr, kind, name = rows[i]
        if i + 1 < len(rows) and rows[i + 1][0] > addr:
            nxt = rows[i + 1][0]
        syms.append(Symbol(name, addr, nxt - addr if nxt > addr else 0, kind in "Tt"))
    syms.reverse()
    return _dedupe(syms)
