"""Kernel images: ELF (through lief) or raw bytes with a System.map; symbols both ways."""

from __future__ import annotations

import bisect
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ImageError, ProbeError

ELF_MACHINES = {"riscv64": 243, "x86_64": 62, "loongarch64": 258}
_MACHINE_NAMES = {v: k for k, v in ELF_MACHINES.items()}
_ELF_MAGIC = b"\x7fELF"
_MAP_LINE = re.compile(r"^([0-9a-fA-F]+)\s+([A-Za-z?])\s+(\S+)$")


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
    executable: bool | None = None  # from the ELF program header; None for raw bytes (unknown)


@dataclass
class Image:
    """A loadable kernel image and its symbol table."""

    path: Path
    arch: str | None
    entry: int
    segments: list[Segment]
    symbols: list[Symbol] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.symbols.sort(key=lambda s: (s.addr, s.name))
        self._by_name = {s.name: s for s in self.symbols}
        self._addrs = [s.addr for s in self.symbols]

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
        """Load an ELF (arch checked or inferred) or a raw image at ``base``."""
        path = Path(path)
        try:
            head = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{path}: no such file") from None
        except OSError as e:
            raise ImageError(f"{path}: cannot read: {e.strerror}") from None
        if not head:
            raise ImageError(f"{path}: empty file")
        if head[:4] == _ELF_MAGIC:
            image = cls._load_elf(path, head, arch)
            if entry is not None:
                image.entry = entry
        else:
            if arch is None:
                raise ImageError(f"{path}: not an ELF file; a raw image needs --arch")
            if base is None:
                raise ImageError(f"{path}: raw image needs a load address (--base)")
            syms = _read_system_map(Path(symbols)) if symbols else []
            image = cls(path, arch, base if entry is None else entry, [Segment(base, head, len(head))], syms)
        if symbols and head[:4] == _ELF_MAGIC:
            image = cls(image.path, image.arch, image.entry, image.segments, _read_system_map(Path(symbols)))
        return image

    @classmethod
    def _load_elf(cls, path: Path, data: bytes, arch: str | None) -> Image:
        if len(data) < 64:
            raise ImageError(f"{path}: truncated ELF header")
        if data[4] != 2 or data[5] != 1:
            raise ImageError(f"{path}: only 64-bit little-endian ELF images are supported")
        machine = struct.unpack_from("<H", data, 18)[0]
        found = _MACHINE_NAMES.get(machine)
        if found is None:
            raise ImageError(f"{path}: ELF machine {machine} is not riscv64, loongarch64 or x86_64")
        if arch is not None and arch != found:
            raise ImageError(f"{path}: ELF is for {found}, not {arch}")
        lief = _lief()
        elf = lief.ELF.parse(list(data))
        if elf is None:
            raise ImageError(f"{path}: malformed ELF")
        segments = []
        for seg in elf.segments:
            if seg.type != lief.ELF.Segment.TYPE.LOAD or seg.virtual_size == 0:
                continue
            content = bytes(seg.content)
            if len(content) < min(seg.physical_size, seg.virtual_size):
                raise ImageError(f"{path}: truncated segment at {seg.virtual_address:#x}")
            executable = bool(seg.flags & lief.ELF.Segment.FLAGS.X)
            segments.append(Segment(seg.virtual_address, content, seg.virtual_size, executable))
        if not segments:
            raise ImageError(f"{path}: ELF has no loadable segments")
        syms = []
        for s in elf.symbols:
            if not s.name or s.type in (lief.ELF.Symbol.TYPE.SECTION, lief.ELF.Symbol.TYPE.FILE):
                continue
            if s.shndx == 0:  # undefined
                continue
            syms.append(Symbol(s.name, s.value, s.size, s.type == lief.ELF.Symbol.TYPE.FUNC))
        return cls(path, found, elf.header.entrypoint, segments, _dedupe(syms))

    # -- symbols ------------------------------------------------------------------------------
    def symbol(self, name: str) -> Symbol:
        """The symbol called ``name`` (ProbeError if the image has none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ProbeError(f"unknown symbol '{name}'") from None

    def has_symbol(self, name: str) -> bool:
        return name in self._by_name

    def resolve(self, spec: str) -> int:
        """``SYM``, ``SYM+OFF`` or a number -> address."""
        spec = spec.strip()
        if re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)", spec):
            return int(spec, 0)
        name, _, off = spec.partition("+")
        try:
            offset = int(off, 0) if off else 0
        except ValueError:
            raise ProbeError(f"bad offset in '{spec}'") from None
        return self.symbol(name).addr + offset

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

    def blacklist(self) -> set[int]:
        """Function addresses the image marks not-probeable (``kprobe_blacklist`` section)."""
        if not (self.has_symbol("__start_kprobe_blacklist") and self.has_symbol("__stop_kprobe_blacklist")):
            return set()
        start = self._by_name["__start_kprobe_blacklist"].addr
        stop = self._by_name["__stop_kprobe_blacklist"].addr
        raw = self.read(start, stop - start)
        return {v for (v,) in struct.iter_unpack("<Q", raw[: len(raw) // 8 * 8])}

    def code(self) -> list[tuple[int, bytes]]:
        """The bytes known to be instructions: executable ELF segments; for raw bytes, the
        functions of the symbol map; nothing when neither says (never data taken for code)."""
        if any(s.executable is not None for s in self.segments):
            return [(s.addr, s.data) for s in self.segments if s.executable]
        out = []
        for sym in self.symbols:
            if sym.is_func and sym.size:
                try:
                    out.append((sym.addr, self.read(sym.addr, sym.size)))
                except ImageError:
                    continue
        return out

    @property
    def span(self) -> tuple[int, int]:
        """Lowest and highest guest address the image occupies."""
        return min(s.addr for s in self.segments), max(s.addr + s.memsz for s in self.segments)


def _lief() -> Any:
    """lief, imported when an ELF is first loaded (importing it takes ~0.5 s; raw images and
    runs that never load an ELF do without)."""
    import lief

    lief.logging.disable()
    return lief


def _dedupe(syms: list[Symbol]) -> list[Symbol]:
    seen: dict[str, Symbol] = {}
    for s in syms:
        if s.name not in seen or (s.size and not seen[s.name].size):
            seen[s.name] = s
    return list(seen.values())


def _read_system_map(path: Path) -> list[Symbol]:
    """Parse an nm-style System.map; sizes are the distance to the next symbol."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such symbol map") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ImageError(f"{path}: cannot read symbol map: {e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MAP_LINE.match(line.strip())
        if not m:
            raise ImageError(f"{path}:{n}: not a System.map line: {line.strip()[:60]!r}")
        rows.append((int(m.group(1), 16), m.group(2), m.group(3)))
    rows.sort()
    syms = []
    for i, (addr, kind, name) in enumerate(rows):
        nxt = next((a for a, _, _ in rows[i + 1 :] if a > addr), addr)
        syms.append(Symbol(name, addr, nxt - addr, kind in "Tt"))
    return _dedupe(syms)
