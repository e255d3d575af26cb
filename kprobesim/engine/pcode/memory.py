"""Guest physical memory: RAM and MMIO regions with Unicorn's mapping rules."""

from __future__ import annotations

import bisect
import mmap
from dataclasses import dataclass
from typing import Any

from unicorn import UcError
from unicorn.unicorn_const import (
    UC_ERR_ARG,
    UC_ERR_MAP,
    UC_ERR_NOMEM,
    UC_PROT_ALL,
)

PAGE = 0x1000


def _zeroed(size: int) -> bytearray | mmap.mmap:
    """Zero-filled RAM. Large regions are anonymous mappings: the OS supplies zero pages on first
    touch, where a bytearray would write every page up front (~80 ms for 256 MiB)."""
    if size >= 1 << 20:
        return mmap.mmap(-1, size)
    return bytearray(size)


@dataclass(slots=True)
class Region:
    begin: int
    end: int  # exclusive
    perms: int
    buf: bytearray | mmap.mmap | None  # None for MMIO
    read_cb: Any = None
    read_ud: Any = None
    write_cb: Any = None
    write_ud: Any = None
    mmio_base: int = 0  # the MMIO mapping's original start (callbacks see addr - mmio_base)


class Memory:
    """Sorted, non-overlapping regions."""

    def __init__(self) -> None:
        self.regions: list[Region] = []
        self.begins: list[int] = []
        self.gen = 0  # bumped on every map change

    def _reindex(self) -> None:
        self.regions.sort(key=lambda r: r.begin)
        self.begins = [r.begin for r in self.regions]
        self.gen += 1

    def find(self, addr: int) -> Region | None:
        i = bisect.bisect_right(self.begins, addr) - 1
        if i >= 0:
            r = self.regions[i]
            if addr < r.end:
                return r
        return None

    @staticmethod
    def _check(addr: int, size: int) -> None:
        if size <= 0 or addr % PAGE or size % PAGE or addr < 0 or addr + size > 1 << 64:
            raise UcError(UC_ERR_ARG)

    def _overlaps(self, addr: int, size: int) -> bool:
        end = addr + size
        i = bisect.bisect_left(self.begins, end) - 1
        return i >= 0 and self.regions[i].end > addr

    def map(self, addr: int, size: int, perms: int = UC_PROT_ALL) -> Region:
        self._check(addr, size)
        if perms & ~UC_PROT_ALL:
            raise UcError(UC_ERR_ARG)
        if self._overlaps(addr, size):
            raise UcError(UC_ERR_MAP)
        r = Region(addr, addr + size, perms, _zeroed(size))
        self.regions.append(r)
        self._reindex()
        return r

    def map_mmio(self, addr: int, size: int, read_cb: Any, read_ud: Any, write_cb: Any,
                 write_ud: Any) -> Region:
        self._check(addr, size)
        if self._overlaps(addr, size):
            raise UcError(UC_ERR_MAP)
        perms = (1 if read_cb else 0) | (2 if write_cb else 0)
        r = Region(addr, addr + size, perms, None, read_cb, read_ud, write_cb, write_ud, addr)
        self.regions.append(r)
        self._reindex()
        return r

    def _covered(self, addr: int, size: int) -> list[Region]:
        """The regions covering [addr, addr+size) entirely, or UC_ERR_NOMEM."""
        out = []
        a, end = addr, addr + size
        while a < end:
            r = self.find(a)
            if r is None:
                raise UcError(UC_ERR_NOMEM)
            out.append(r)
            a = r.end
        return out

    def _split(self, r: Region, at: int) -> None:
        """Split ``r`` at ``at`` (page aligned, strictly inside)."""
        k = at - r.begin
        if isinstance(r.buf, bytearray):
            tail = Region(at, r.end, r.perms, r.buf[k:])
            del r.buf[k:]
        elif r.buf is not None:  # an anonymous mapping cannot shrink: copy both halves
            tail = Region(at, r.end, r.perms, bytearray(r.buf[k:]))
            r.buf = bytearray(r.buf[:k])
        else:
            tail = Region(at, r.end, r.perms, None, r.read_cb, r.read_ud, r.write_cb,
                          r.write_ud, r.mmio_base)
        r.end = at
        self.regions.append(tail)
        self._reindex()

    def _isolate(self, addr: int, size: int) -> list[Region]:
        self._check(addr, size)
        regs = self._covered(addr, size)
        end = addr + size
        first, last = regs[0], regs[-1]
        if first.begin < addr:
            self._split(first, addr)
        last = self.find(end - 1)
        assert last is not None
        if last.end > end:
            self._split(last, end)
        return self._covered(addr, size)

    def unmap(self, addr: int, size: int) -> None:
        for r in self._isolate(addr, size):
            self.regions.remove(r)
        self._reindex()

    def protect(self, addr: int, size: int, perms: int) -> None:
        if perms & ~UC_PROT_ALL:
            raise UcError(UC_ERR_ARG)
        for r in self._isolate(addr, size):
            r.perms = perms
        self.gen += 1

    def regions_list(self) -> list[tuple[int, int, int]]:
        return [(r.begin, r.end - 1, r.perms) for r in self.regions]
