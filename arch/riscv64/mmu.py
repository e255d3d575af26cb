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


PTE_U, PTE_A = 0x10, 0x40
PPN_MASK = (1 << 44) - 1


def user_top(satp: int) -> int | None:
    """The end of the user half of the address space under ``satp`` (None: paging is off)."""
    levels = SATP_MODES.get(satp >> 60)
    return None if levels is None else 1 << (PAGE_SHIFT + 9 * levels - 1)


def map_user_page(
    satp: int,
    vaddr: int,
    phys: int,
    read_phys: Callable[[int, int], bytes],
    write_phys: Callable[[int, bytes], None],
    new_table: Callable[[], int],
) -> str | None:
    """Map the 4 KiB page at user address ``vaddr`` to ``phys`` execute-only for user mode
    (V|X|U|A: no R, so the process cannot read it, as Linux's XOL vma) in the tables of
    ``satp``; missing levels get a zeroed table from ``new_table()``. Entries the guest made on
    the way are used as they are. None when mapped (now or already), else why it cannot be."""
    levels = SATP_MODES.get(satp >> 60)
    if levels is None:
        return "paging is off: there is no user address space"
    table = (satp & PPN_MASK) << PAGE_SHIFT
    for level in range(levels - 1, 0, -1):
        where = table + 8 * ((vaddr >> (PAGE_SHIFT + 9 * level)) & 0x1FF)
        pte = int.from_bytes(read_phys(where, 8), "little")
        if not pte & PTE_V:
            pte = (new_table() >> PAGE_SHIFT) << 10 | PTE_V
            write_phys(where, pte.to_bytes(8, "little"))
        elif pte & (PTE_R | PTE_W | PTE_X):
            return f"the guest maps {vaddr:#x} with a large page of its own"
        table = ((pte >> 10) & PPN_MASK) << PAGE_SHIFT
    where = table + 8 * ((vaddr >> PAGE_SHIFT) & 0x1FF)
    pte = int.from_bytes(read_phys(where, 8), "little")
    want = (phys >> PAGE_SHIFT) << 10 | PTE_V | PTE_X | PTE_U | PTE_A
    if pte == want:
        return None
    if pte & PTE_V:
        return f"the guest maps {vaddr:#x} itself (entry {pte:#x})"
    write_phys(where, want.to_bytes(8, "little"))
    return None


def leaf_entry(satp: int, vaddr: int, read_phys: Callable[[int, int], bytes]) -> tuple[int, int] | None:
    """Where the 4 KiB leaf entry mapping ``vaddr`` is under ``satp`` and its value (None when
    no valid entry leads there, or a large page maps it)."""
    levels = SATP_MODES.get(satp >> 60)
    if levels is None:
        return None
    table = (satp & PPN_MASK) << PAGE_SHIFT
    for level in range(levels - 1, -1, -1):
        where = table + 8 * ((vaddr >> (PAGE_SHIFT + 9 * level)) & 0x1FF)
        pte = int.from_bytes(read_phys(where, 8), "little")
        if not pte & PTE_V:
            return None
        if pte & (PTE_R | PTE_X):
            return (where, pte) if level == 0 else None
        table = ((pte >> 10) & PPN_MASK) << PAGE_SHIFT
    return None


def entry_page(pte: int) -> int:
    """The physical page a leaf entry maps."""
    return ((pte >> 10) & PPN_MASK) << PAGE_SHIFT


def with_page(pte: int, phys: int) -> int:
    """The entry mapping ``phys`` instead, its permission and attribute bits kept."""
    return (pte & ~(PPN_MASK << 10)) | ((phys >> PAGE_SHIFT) << 10)


def user_text(pte: int) -> bool:
    """A valid user, executable, not writable leaf (a program's text, as uprobes want it)."""
    return pte & (PTE_V | PTE_U | PTE_X | PTE_W) == PTE_V | PTE_U | PTE_X
