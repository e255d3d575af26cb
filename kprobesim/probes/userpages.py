"""The simulator's user pages: pages that processes' page tables point at for uprobes.

A process's XOL page, the page tables the simulator adds on the way to it, and the private
copies of probed text pages (Linux's copy-on-write of a probed page) all come from one region
of simulator memory outside the guest's RAM, mapped read+execute (the guest's own page tables
make them execute-only or read-only for the process; the kernel maps only its RAM, so it
never reaches them otherwise). Pages are handed out one at a time and taken back when the
address space that used them is torn down (the process exits or execs), so a run with many
short-lived processes reuses them. ``limit`` caps the pages in use at once (the region's size
by default); an allocation past it returns None and the caller refuses what needed the page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kprobesim.machine import Machine

PAGE = 0x1000
USER_POOL_PAGES = 256  # 1 MiB: ~40 (riscv Sv57) to ~60 (x86) probed processes alive at once
USER_POOL_GAP = 0x100000  # where the region starts past the simulator's other pages


class UserPages:
    """A free list of pages in ``[base, base + pages * PAGE)``, lowest first."""

    def __init__(self, machine: Machine, base: int, pages: int = USER_POOL_PAGES) -> None:
        self.m = machine
        self.base = base
        self.pages = pages
        self.limit = pages
        self._free = list(range(base + (pages - 1) * PAGE, base - 1, -PAGE))
        self.in_use: set[int] = set()
        self.peak = 0  # the most pages in use at once
        self.handed_out = 0  # allocations so far (more than the pool's size: pages were reused)

    def contains(self, phys: int) -> bool:
        return self.base <= phys < self.base + self.pages * PAGE

    def alloc(self) -> int | None:
        """A zeroed page's physical address, or None when ``limit`` pages are in use."""
        if len(self.in_use) >= self.limit or not self._free:
            return None
        page = self._free.pop()
        self.in_use.add(page)
        self.peak = max(self.peak, len(self.in_use))
        self.handed_out += 1
        self.m.write_phys(page, bytes(PAGE))
        return page

    def free(self, page: int) -> None:
        if page in self.in_use:
            self.in_use.discard(page)
            self._free.append(page)

    def state(self) -> tuple[list[int], set[int], int, int, int]:
        return list(self._free), set(self.in_use), self.limit, self.peak, self.handed_out

    def restore(self, state: tuple[list[int], set[int], int, int, int]) -> None:
        free, in_use, self.limit, self.peak, self.handed_out = state
        self._free, self.in_use = list(free), set(in_use)
