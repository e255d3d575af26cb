"""A Linux kernel's own symbol table, read from its image or memory the way ``/proc/kallsyms``
is produced from it (``kernel/kallsyms.c``), with no ELF symbol table needed.

``scripts/kallsyms`` emits these arrays into ``.rodata`` (names after the kernel's symbols):

- ``num_syms`` (u32) and ``names``: per symbol a length (one byte, or two little-endian 7-bit
  groups when the high bit is set) and that many token codes; the first character of the
  expanded string is the symbol's type letter (``T``, ``t``, ``D``...);
- ``markers`` (u32): the ``names`` offset of every 256th symbol;
- ``token_table``: 256 NUL-terminated strings, ``token_index`` (u16): their offsets;
- ``offsets`` (u32 each) and ``relative_base`` (u64), CONFIG_KALLSYMS_BASE_RELATIVE: an
  address is ``relative_base + offset``, or, with CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86_64),
  ``offset`` itself when non-negative and ``relative_base - 1 - offset`` when negative.

Linux 6.1 puts ``offsets``/``relative_base`` first; since 6.2 they follow ``token_index``.
Nothing gives the tables' location, so they are found by scanning: the token table holds the
single-character tokens ``0`` to ``9`` back to back, and everything else is checked against
the structure above (increasing token index and markers, names that decode exactly into the
marker positions, addresses in table order).
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from ..errors import ImageError

_DIGITS = b"".join(b"%d\0" % d for d in range(10))
_LONG_NAME = 0x80


class KallsymsError(ImageError):
    """No kallsyms tables in the bytes given, or tables that do not decode."""


@dataclass(frozen=True)
class KSym:
    address: int
    type: str  # the letter /proc/kallsyms prints: T t D d R r B b W V A ...
    name: str


@dataclass
class Kallsyms:
    """The decoded table: ``symbols`` in table order (ascending address, as kallsyms sorts them)."""

    symbols: list[KSym]
    relative_base: int
    absolute_percpu: bool
    layout: str  # "6.1" (offsets first) or "6.2+" (offsets after token_index)
    tables: dict[str, int] = field(default_factory=dict)  # array name -> offset in the bytes scanned
    _by_name: dict[str, KSym] = field(default_factory=dict, repr=False)
    _addrs: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for sym in self.symbols:
            self._by_name.setdefault(sym.name, sym)
        self._addrs = [s.address for s in self.symbols]

    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, name: str) -> KSym:
        return self._by_name[name]

    def get(self, name: str) -> KSym | None:
        return self._by_name.get(name)

    def lookup(self, address: int) -> tuple[KSym, int] | None:
        """The symbol at or below ``address`` and the offset into it (the last of equal addresses)."""
        i = bisect.bisect_right(self._addrs, address) - 1
        return (self.symbols[i], address - self.symbols[i].address) if i >= 0 else None

    def proc_text(self) -> str:
        """The table as ``/proc/kallsyms`` prints it for the core kernel (``%px %c %s``)."""
        return "".join(f"{s.address:016x} {s.type} {s.name}\n" for s in self.symbols)

    def text(self) -> list[KSym]:
        """Function symbols (``T``/``t``/``W``/``w`` of code), the ones kprobes target."""
        return [s for s in self.symbols if s.type in "Tt"]


def _tokens_at(data: bytes, start: int, count: int) -> list[bytes] | None:
    """``count`` NUL-terminated, non-empty printable strings from ``start``, or None."""
    out = []
    pos = start
    for _ in range(count):
        end = data.find(b"\0", pos, pos + 256)
        if end <= pos:
            return None
        token = data[pos:end]
        if min(token) < 0x20 or max(token) > 0x7E:
            return None
        out.append(token)
        pos = end + 1
    return out


def _token_table(data: bytes, hit: int) -> tuple[int, int, list[bytes]] | None:
    """(token_table offset, token_index offset, tokens) around a ``0\\01\\0...9\\0`` hit."""
    tail = _tokens_at(data, hit, 256 - ord("0"))
    if tail is None:
        return None
    end = hit + sum(len(t) + 1 for t in tail)
    for idx_at in range(end, end + 8):
        if idx_at % 2 or idx_at + 512 > len(data):
            continue
        index = struct.unpack_from("<256H", data, idx_at)
        table = hit - index[ord("0")]
        if index[0] != 0 or table < 0 or table + index[255] != end - len(tail[-1]) - 1:
            continue
        head = _tokens_at(data, table, ord("0"))
        if head is None:
            continue
        tokens = head + tail
        offs = [0]
        for t in tokens[:-1]:
            offs.append(offs[-1] + len(t) + 1)
        if list(index) == offs:
            return table, idx_at, tokens
    return None


def _markers(data: bytes, table: int) -> list[tuple[int, list[int]]]:
    """Candidates (offset, values) for the u32 markers array: it ends just before the token
    table, or before ``seqs_of_names`` (3 or 4 bytes a symbol, Linux 6.2 and some 6.1 stable
    kernels) that sits between the two. Nearest first."""
    window_start = max(0, table - (1 << 21)) & ~3
    words = struct.unpack_from(f"<{(table - window_start) // 4}I", data, window_start)
    found = []
    for i in range(len(words) - 2, -1, -1):
        if words[i] != 0 or not 256 * 2 <= words[i + 1] <= 256 * 260:
            continue
        values = [0]
        j = i + 1
        while j < len(words) and 256 * 2 <= words[j] - values[-1] <= 256 * 260:
            values.append(words[j])
            j += 1
        end = window_start + 4 * (i + len(values))
        gap = table - end
        m = len(values)
        if gap < 8 or any(w * 256 * (m - 1) < gap <= w * 256 * m + 8 for w in (3, 4)):
            found.append((window_start + 4 * i, values))
    return found


def _name_lengths(data: bytes, start: int, count: int, limit: int) -> int | None:
    """Skip ``count`` compressed names from ``start``; the end offset, or None past ``limit``."""
    pos = start
    for _ in range(count):
        if pos >= limit:
            return None
        n = data[pos]
        pos += 1
        if n & _LONG_NAME:
            n = (n & 0x7F) | (data[pos] << 7)
            pos += 1
        if n == 0:
            return None
        pos += n
    return pos if pos <= limit else None


def _names_start(data: bytes, markers_at: int, markers: list[int]) -> tuple[int, int, int] | None:
    """(num_syms offset, names offset, num_syms) such that the names decode onto the markers."""
    m = len(markers)
    low, high = 256 * (m - 1) + 1, 256 * m
    last = markers[-1]
    top = markers_at - last - 1
    for q in range(top - top % 4, max(0, top - 256 * 300), -4):
        (n,) = struct.unpack_from("<I", data, q)
        if not low <= n <= high:
            continue
        for names in sorted({q + 4, (q + 4 + 7) & ~7}):
            if names + last >= markers_at:
                continue
            pos, ok = names, True
            for k in range(1, m):
                pos = _name_lengths(data, pos, 256, markers_at)
                if pos != names + markers[k]:
                    ok = False
                    break
            if not ok:
                continue
            end = _name_lengths(data, pos, n - 256 * (m - 1), markers_at + 1)
            if end is not None and markers_at - end < 8:
                return q, names, n
    return None


def _expand(data: bytes, names: int, n: int, tokens: list[bytes]) -> list[tuple[str, str]]:
    strings = [t.decode("latin-1") for t in tokens]
    look = strings.__getitem__
    out = []
    pos = names
    for _ in range(n):
        length = data[pos]
        pos += 1
        if length & _LONG_NAME:
            length = (length & 0x7F) | (data[pos] << 7)
            pos += 1
        text = "".join(map(look, data[pos:pos + length]))
        pos += length
        out.append((text[:1], text[1:]))
    return out


def _addresses(offsets: tuple[int, ...], base: int) -> tuple[list[int], bool]:
    """Addresses for the offsets, choosing between plain base-relative and absolute-percpu by
    which one gives a table in ascending order (how kallsyms sorts it)."""
    negative = sum(1 for o in offsets if o & 0x80000000)
    if negative > len(offsets) // 2:
        addrs = [base - 1 - (o - (1 << 32)) if o & 0x80000000 else o for o in offsets]
        return addrs, True
    return [(base + o) & 0xFFFFFFFFFFFFFFFF for o in offsets], False


def _ascending(addrs: list[int], absolute_percpu: bool) -> bool:
    # absolute per-CPU symbols (small values) sort before the kernel's; check the rest
    relevant = [a for a in addrs if a >= 1 << 32] if absolute_percpu else addrs
    return len(relevant) > len(addrs) // 2 and all(x <= y for x, y in zip(relevant, relevant[1:], strict=False))


def _offsets(data: bytes, n: int, num_at: int, index_at: int) -> tuple[str, int, int, tuple[int, ...]] | None:
    """(layout, offsets offset, relative_base, offsets) for the two orders Linux has used."""
    candidates = []
    # 6.2+: token_index (512 bytes), offsets, then relative_base 8-aligned
    after = index_at + 512
    for start in sorted({after, (after + 3) & ~3, (after + 7) & ~7}):
        rb = (start + 4 * n + 7) & ~7
        candidates.append(("6.2+", start, rb))
    # 6.1: offsets, relative_base 8-aligned, num_syms
    for rb in sorted({num_at - 8, (num_at - 8) & ~7}):
        for start in (rb - 4 * n, rb - 4 * n - 4):
            candidates.append(("6.1", start, rb))
    for layout, start, rb in candidates:
        if start < 0 or rb + 8 > len(data):
            continue
        offsets = struct.unpack_from(f"<{n}I", data, start)
        (base,) = struct.unpack_from("<Q", data, rb)
        addrs, _ = _addresses(offsets, base)
        if base and _ascending(addrs, _addresses(offsets, base)[1]):
            return layout, start, base, offsets
    return None


def find_kallsyms(data: bytes | bytearray | memoryview) -> Kallsyms:
    """Locate and decode the kallsyms tables in ``data`` (a kernel image, a vmlinux, or guest
    memory). Raises KallsymsError naming what was missing."""
    data = bytes(data)
    found = None
    hit = data.find(_DIGITS)
    while hit >= 0 and found is None:
        tt = _token_table(data, hit)
        if tt is not None:
            for mk in _markers(data, tt[0]):
                ns = _names_start(data, mk[0], mk[1])
                if ns is not None:
                    found = (tt, mk, ns)
                    break
        hit = data.find(_DIGITS, hit + 1)
    if found is None:
        raise KallsymsError("no kallsyms tables found (a kernel built without CONFIG_KALLSYMS, or not a kernel)")
    (table, index_at, tokens), (markers_at, _), (num_at, names_at, n) = found
    off = _offsets(data, n, num_at, index_at)
    if off is None:
        raise KallsymsError("kallsyms names found but no base-relative offsets table matches them")
    layout, offsets_at, base, offsets = off
    addrs, absolute = _addresses(offsets, base)
    syms = [KSym(a, t, name) for a, (t, name) in zip(addrs, _expand(data, names_at, n, tokens), strict=True)]
    tables = {"num_syms": num_at, "names": names_at, "markers": markers_at, "token_table": table,
              "token_index": index_at, "offsets": offsets_at}
    return Kallsyms(syms, base, absolute, layout, tables)
