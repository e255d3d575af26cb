"""The memory an eBPF program can see: regions mapped at distinct synthetic 64-bit addresses.

Each region (context buffer, a stack frame, the input ``mem``, a map value, a helper-filled
buffer...) owns one 4 GiB *slot* of the address space: its base address is ``key << 32`` and the
byte at offset ``o`` lives at ``base + o``.  Finding the region of an address is therefore one
dict lookup on ``addr >> 32`` followed by one bounds check, which keeps the per-access cost low.
Slots are handed out with gaps between them, and the range used (``0x0bf0...`` upwards) is not a
canonical kernel or user address on any supported architecture, so a guest pointer never aliases
a region by accident.

Regions are backed by a ``bytearray`` or a writable ``memoryview`` (e.g. a slice of a map's own
storage, so stores through the pointer update the map) or by read-only ``bytes``.  Every access
is checked; a bad one raises :class:`MemoryFault` naming the pc, the access kind, size and address.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable
from typing import NoReturn

from .errors import EbpfError, MemoryFault

Buffer = bytearray | memoryview | bytes

KEY_BASE = 0x0BF0_0000  # first slot key: addresses start at 0x0bf00000_00000000
KEY_STRIDE = 16  # unmapped slots between regions, so runaway pointers do not land in a neighbour
KEY_LIMIT = 0xFFFF_FFFF
SLOT_MASK = 0xFFFF_FFFF
NULL_GUARD = 0x10000  # addresses below this are reported as null-pointer dereferences
PARKED_LIMIT = 4096  # released temporary regions kept for their key (see release_temporary)

_U = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}
UNPACK = {n: s.unpack_from for n, s in _U.items()}
PACK = {n: s.pack_into for n, s in _U.items()}
_VMASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: (1 << 64) - 1}


class Region:
    """One mapped buffer.  ``base`` is its address; ``size`` its length in bytes."""

    __slots__ = ("key", "base", "buf", "size", "writable", "name", "temporary", "user_key")

    def __init__(self, key: int, buf: Buffer, writable: bool, name: str, temporary: bool,
                 user_key: Hashable | None) -> None:
        self.key = key
        self.base = key << 32
        self.buf = buf
        self.size = len(buf)
        self.writable = writable
        self.name = name
        self.temporary = temporary
        self.user_key = user_key

    def __repr__(self) -> str:
        mode = "rw" if self.writable else "ro"
        return f"Region({self.name!r}, {self.base:#x}, {self.size} bytes, {mode})"


def _as_buffer(buf: Buffer, writable: bool) -> Buffer:
    if isinstance(buf, bytearray):
        return buf
    if isinstance(buf, bytes):
        if writable:
            raise ValueError("a writable region needs a bytearray or a writable memoryview")
        return buf
    if isinstance(buf, memoryview):
        if writable and buf.readonly:
            raise ValueError("a writable region needs a writable memoryview")
        if buf.format != "B" or buf.ndim != 1 or not buf.c_contiguous:
            buf = buf.cast("B")
        return buf
    raise TypeError(f"cannot map a {type(buf).__name__} as eBPF memory")


class Memory:
    """The address space of one VM.

    ``readable`` and ``writable`` map slot keys to regions (``writable`` holds only the writable
    ones, so the read-only check costs nothing); both dicts are only ever mutated in place, so
    translated code may keep bound ``.get`` methods of them.
    """

    def __init__(self) -> None:
        self.readable: dict[int, Region] = {}
        self.writable: dict[int, Region] = {}
        self._by_user_key: dict[Hashable, Region] = {}
        self._temporary: list[Region] = []
        self._parked = 0  # temporary regions released since the last purge (bounds those parked)
        self._caches: list[dict[Hashable, Region]] = []  # see element_cache
        self._next_key = KEY_BASE
        #: ``guest_read(addr, size) -> bytes | None``: the guest kernel's memory, for loads
        #: through BTF-typed pointers (:meth:`probe_load`); None: no guest behind this memory
        self.guest_read: Callable[[int, int], bytes | None] | None = None
        #: loads through BTF-typed pointers that faulted (read as 0), and the last (pc, addr, size)
        self.probe_faults = 0
        self.last_probe_fault: tuple[int, int, int] | None = None

    # --- mapping ---------------------------------------------------------------------------------
    def _alloc_key(self) -> int:
        for _ in range(2):
            while self._next_key <= KEY_LIMIT:
                key = self._next_key
                self._next_key += KEY_STRIDE
                if key not in self.readable:
                    return key
            self._next_key = KEY_BASE
        raise EbpfError("eBPF address space exhausted")

    def map_region(self, buf: Buffer, writable: bool = True, name: str = "buffer", *,
                   key: Hashable | None = None, temporary: bool = False) -> int:
        """Map ``buf`` and return its address.

        ``key``: if a region was already mapped under this key (e.g. ``("map", id, index)``), its
        address is returned again when it is backed by the same object, or it is replaced.
        ``temporary``: unmap it when the current run ends (:meth:`release_temporary`).
        """
        if key is not None:
            old = self._by_user_key.get(key)
            if old is not None:
                if old.buf is buf and old.writable == writable and old.temporary == temporary:
                    held = self.readable.get(old.key)
                    if held is old:
                        return old.base
                    if held is None:  # parked by the last release: map it again, same address
                        self.readable[old.key] = old
                        if writable:
                            self.writable[old.key] = old
                        if temporary:
                            self._temporary.append(old)
                        return old.base
                self._drop(old)
        buf = _as_buffer(buf, writable)
        if len(buf) > SLOT_MASK:
            raise ValueError("region larger than 4 GiB")
        region = Region(self._alloc_key(), buf, writable, name, temporary, key)
        self._install(region)
        return region.base

    def _install(self, region: Region) -> None:
        self.readable[region.key] = region
        if region.writable:
            self.writable[region.key] = region
        if region.user_key is not None:
            self._by_user_key[region.user_key] = region
        if region.temporary:
            self._temporary.append(region)

    def _drop(self, region: Region) -> None:
        if self.readable.get(region.key) is region:
            del self.readable[region.key]
            self.writable.pop(region.key, None)
        if region.user_key is not None and self._by_user_key.get(region.user_key) is region:
            del self._by_user_key[region.user_key]

    def reserve(self, name: str) -> int:
        """Reserve a slot whose buffer is swapped per run with :meth:`rebind` (e.g. the ctx)."""
        return self.map_region(b"", False, name)

    def rebind(self, addr: int, buf: Buffer, writable: bool) -> None:
        """Point the region at ``addr`` at a new buffer (same address, new size and mode)."""
        region = self.readable.get(addr >> 32)
        if region is None or region.base != addr:
            raise EbpfError(f"no region starts at {addr:#x}")
        region.buf = _as_buffer(buf, writable)
        region.size = len(region.buf)
        region.writable = writable
        if writable:
            self.writable[region.key] = region
        else:
            self.writable.pop(region.key, None)

    def unmap(self, addr: int) -> None:
        """Unmap the region containing ``addr`` (no-op if there is none)."""
        region = self.readable.get(addr >> 32)
        if region is not None:
            self._drop(region)

    def release_temporary(self) -> None:
        """Unmap all regions mapped with ``temporary=True``.

        One mapped under a key is parked, not forgotten: mapping the same buffer under that key
        again (the next run's lookup of the same map element) reinstates it at its address
        without building a new region. At most :data:`PARKED_LIMIT` are kept parked.
        """
        readable, writable = self.readable, self.writable
        for region in self._temporary:
            key = region.key
            if readable.get(key) is region:
                del readable[key]
                if region.writable:
                    writable.pop(key, None)
        self._parked += len(self._temporary)
        self._temporary.clear()
        if self._parked > PARKED_LIMIT:
            keyed = self._by_user_key
            for k in [k for k, r in keyed.items() if r.temporary and readable.get(r.key) is not r]:
                del keyed[k]
            for cache in self._caches:
                for k in [k for k, r in cache.items() if readable.get(r.key) is not r]:
                    del cache[k]
            self._parked = 0

    def element_cache(self) -> dict[Hashable, Region]:
        """A dict for a helper's own index of the temporary regions it mapped under user keys
        (a map's lookup: element key -> its value's region), so that it can find a parked one
        without building the user key. Its entries go when :meth:`release_temporary` forgets
        parked regions, so a region found there may be re-mapped at its slot only when that
        slot is free (``readable.get(region.key) is None``) or holds it already."""
        cache: dict[Hashable, Region] = {}
        self._caches.append(cache)
        return cache

    def region_at(self, addr: int) -> Region | None:
        return self.readable.get(addr >> 32)

    def regions(self) -> list[Region]:
        return sorted(self.readable.values(), key=lambda r: r.key)

    # --- fault reporting -------------------------------------------------------------------------
    def describe(self, addr: int, size: int, kind: str) -> str:
        """Why an access of ``size`` bytes at ``addr`` is not allowed."""
        if addr < NULL_GUARD:
            return "null pointer dereference"
        region = self.readable.get(addr >> 32)
        if region is not None:
            off = addr & SLOT_MASK
            if off + size <= region.size and kind != "read":
                return f"region '{region.name}' is read-only"
            return f"offset {off} in region '{region.name}' of {region.size} bytes"
        above = self.readable.get((addr >> 32) + 1)
        if above is not None:
            return f"{above.base - addr} bytes below region '{above.name}'"
        return "outside any mapped region"

    def fault(self, pc: int | None, size: int, addr: int, kind: str) -> NoReturn:
        raise MemoryFault(pc, kind, size, addr, self.describe(addr, size, kind))

    # --- checked accesses used by the interpreter (pc given) -------------------------------------
    def load(self, pc: int | None, addr: int, size: int) -> int:
        region = self.readable.get(addr >> 32)
        if region is not None:
            off = addr & SLOT_MASK
            if off + size <= region.size:
                return UNPACK[size](region.buf, off)[0]
        self.fault(pc, size, addr, "read")

    def probe_load(self, pc: int, addr: int, size: int) -> int:
        """A load through a BTF-typed kernel pointer (Linux's ``BPF_PROBE_MEM``): guest memory
        (or a region of this memory), and 0 when the address cannot be read, as Linux's
        exception table makes it; the fault is counted (:attr:`probe_faults`)."""
        region = self.readable.get(addr >> 32)
        if region is not None:
            off = addr & SLOT_MASK
            if off + size <= region.size:
                return UNPACK[size](region.buf, off)[0]
        elif self.guest_read is not None:
            data = self.guest_read(addr, size)
            if data is not None and len(data) == size:
                return int.from_bytes(data, "little")
        self.probe_faults += 1
        self.last_probe_fault = (pc, addr, size)
        return 0

    def store(self, pc: int | None, addr: int, size: int, value: int) -> None:
        region = self.writable.get(addr >> 32)
        if region is not None:
            off = addr & SLOT_MASK
            if off + size <= region.size:
                PACK[size](region.buf, off, value & _VMASK[size])
                return
        self.fault(pc, size, addr, "write")

    def locate(self, pc: int | None, addr: int, size: int, kind: str) -> tuple[Buffer, int]:
        """The (buffer, offset) of a writable location, for atomics; faults like a store."""
        region = self.writable.get(addr >> 32)
        if region is not None:
            off = addr & SLOT_MASK
            if off + size <= region.size:
                return region.buf, off
        self.fault(pc, size, addr, kind)

    # --- helper-facing API (no pc: the helper-call wrapper adds it) -------------------------------
    def read(self, addr: int, size: int) -> int:
        """Read an unsigned little-endian integer of 1, 2, 4 or 8 bytes."""
        return self.load(None, addr, size)

    def write(self, addr: int, size: int, value: int) -> None:
        """Write an integer of 1, 2, 4 or 8 bytes (truncated to the size)."""
        self.store(None, addr, size, value)

    def _span(self, addr: int, n: int, kind: str) -> tuple[Region, int]:
        table = self.readable if kind == "read" else self.writable
        region = table.get(addr >> 32)
        if n < 0:
            raise EbpfError(f"negative length {n}")
        if region is not None:
            off = addr & SLOT_MASK
            if off + n <= region.size:
                return region, off
        self.fault(None, n, addr, kind)

    def read_bytes(self, addr: int, n: int) -> bytes:
        """Copy ``n`` bytes out of one region."""
        if n == 0:
            return b""
        region, off = self._span(addr, n, "read")
        return bytes(region.buf[off:off + n])

    def write_bytes(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into one writable region."""
        n = len(data)
        if n == 0:
            return
        region, off = self._span(addr, n, "write")
        region.buf[off:off + n] = data

    def view(self, addr: int, n: int, writable: bool = False) -> memoryview:
        """A memoryview on ``n`` bytes at ``addr`` (checked; writable if asked and allowed)."""
        region, off = self._span(addr, n, "write" if writable else "read")
        return memoryview(region.buf)[off:off + n]

    def read_cstr(self, addr: int, max_len: int) -> bytes:
        """Read a NUL-terminated string of at most ``max_len`` bytes (without the NUL)."""
        if max_len <= 0:
            return b""
        region = self.readable.get(addr >> 32)
        if region is None:
            self.fault(None, 1, addr, "read")
        off = addr & SLOT_MASK
        end = min(region.size, off + max_len)
        if off >= region.size:
            self.fault(None, 1, addr, "read")
        chunk = bytes(region.buf[off:end])
        nul = chunk.find(b"\0")
        return chunk if nul < 0 else chunk[:nul]
