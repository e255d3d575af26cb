"""Sv39/Sv48/Sv57 page-table walks, as the hart does them (for the simulator's own accesses).

Used to read instruction bytes at a virtual PC (trap delivery), to find the physical page
behind a probed virtual address (a break is written there, like Linux's ``text_poke``), and
for fetchargs that dereference guest pointers.
"""

from __future__ import annotations

from collections.abc import Callable

SATP_MODES = {8: 3, 9: 4, 10: 5}  # Sv39: 3 levels, Sv48: 4, Sv57: 5 (Unicorn takes it; Linux probes for it)
PTE_V, PTE_R, PTE_W, PTE_X = 1, 2, 4, 8
PAGE_SHIFT = 12


class PageFault(Exception):
    """No valid mapping for the address."""


def translate(satp: int, vaddr: int, read_phys: Callable[[int, int], bytes]) -> int:
    """The physical address behind ``vaddr`` under ``satp`` (identity when paging is off)."""
    mode = satp >> 60
    levels = SATP_MODES.get(mode)
    if levels is None:
        if mode == 0:
            return vaddr
        raise PageFault(f"satp mode {mode} is not Sv39, Sv48 or Sv57")
    va_bits = PAGE_SHIFT + 9 * levels
    top = vaddr >> (va_bits - 1)
    if top not in (0, (1 << (64 - va_bits + 1)) - 1):
        raise PageFault(f"{vaddr:#x} is not a canonical Sv{va_bits} address")
    table = (satp & ((1 << 44) - 1)) << PAGE_SHIFT
    for level in range(levels - 1, -1, -1):
        index = (vaddr >> (PAGE_SHIFT + 9 * level)) & 0x1FF
        pte = int.from_bytes(read_phys(table + 8 * index, 8), "little")
        if not pte & PTE_V or (pte & (PTE_R | PTE_W)) == PTE_W:
            raise PageFault(f"no mapping for {vaddr:#x}")
        ppn = (pte >> 10) & ((1 << 44) - 1)
        if pte & (PTE_R | PTE_X):  # a leaf: megapages keep the low bits of the virtual address
            span = PAGE_SHIFT + 9 * level
            return (ppn << PAGE_SHIFT) & ~((1 << span) - 1) | (vaddr & ((1 << span) - 1))
        table = ppn << PAGE_SHIFT
    raise PageFault(f"no leaf mapping for {vaddr:#x}")
