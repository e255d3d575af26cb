"""x86-64 four-level page-table walks (what the MMU does), for host accesses by virtual address.

Unicorn's host memory API is physical; the IDT, the kernel stack and the kernel's text are
virtual once the guest turns paging on, so trap delivery and probe patching translate here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from unicorn import x86_const as xc

PG = 1 << 31
PRESENT, WRITABLE, USER, LARGE = 1, 2, 4, 0x80
NX = 1 << 63
ADDR_MASK = 0x000F_FFFF_FFFF_F000


@dataclass(frozen=True)
class Walk:
    """Where a virtual address leads: its physical address (None if not mapped) and the
    permissions accumulated over the levels (write/user need every level, NX any level)."""

    phys: int | None
    writable: bool = False
    user: bool = False
    executable: bool = False


def paging_on(engine: object) -> bool:
    return bool(engine.reg_read(xc.UC_X86_REG_CR0) & PG)  # type: ignore[attr-defined]


def walk(engine: object, vaddr: int) -> Walk:
    """Translate ``vaddr`` through the page tables at CR3 (identity when paging is off)."""
    if not paging_on(engine):
        return Walk(vaddr, True, True, True)
    table = engine.reg_read(xc.UC_X86_REG_CR3) & ADDR_MASK  # type: ignore[attr-defined]
    writable = user = executable = True
    for level, shift in enumerate((39, 30, 21, 12)):
        index = (vaddr >> shift) & 0x1FF
        entry = struct.unpack("<Q", bytes(engine.mem_read(table + index * 8, 8)))[0]  # type: ignore[attr-defined]
        if not entry & PRESENT:
            return Walk(None)
        writable &= bool(entry & WRITABLE)
        user &= bool(entry & USER)
        executable &= not entry & NX
        if level in (1, 2) and entry & LARGE:
            size = 1 << shift
            base = entry & ADDR_MASK & ~(size - 1)
            return Walk(base | (vaddr & (size - 1)), writable, user, executable)
        table = entry & ADDR_MASK
    return Walk(table | (vaddr & 0xFFF), writable, user, executable)


_U64 = struct.Struct("<Q").unpack
_LEVELS = ((False, 39), (True, 30), (True, 21), (False, 12))  # (a large page may end it, shift)


def translate(engine: object, vaddr: int) -> int | None:
    """The physical address of ``vaddr`` (None if not mapped): :func:`walk` without the
    permissions, for host reads and writes (a kretprobe's return address on x86_64)."""
    read_reg = engine.reg_read  # type: ignore[attr-defined]
    if not read_reg(xc.UC_X86_REG_CR0) & PG:
        return vaddr
    read = engine.mem_read  # type: ignore[attr-defined]
    table = read_reg(xc.UC_X86_REG_CR3) & ADDR_MASK
    for large_ok, shift in _LEVELS:
        (entry,) = _U64(read(table + ((vaddr >> shift) & 0x1FF) * 8, 8))
        if not entry & PRESENT:
            return None
        if large_ok and entry & LARGE:
            size = 1 << shift
            return (entry & ADDR_MASK & ~(size - 1)) | (vaddr & (size - 1))
        table = entry & ADDR_MASK
    return table | (vaddr & 0xFFF)


def pmd_entry_addr(engine: object, vaddr: int) -> int | None:
    """Physical address of the page-directory entry that maps ``vaddr`` (its 2 MiB region), or
    None when the upper levels do not lead to a page directory."""
    table = engine.reg_read(xc.UC_X86_REG_CR3) & ADDR_MASK  # type: ignore[attr-defined]
    for shift in (39, 30):
        entry = struct.unpack("<Q", bytes(engine.mem_read(table + ((vaddr >> shift) & 0x1FF) * 8, 8)))[0]  # type: ignore[attr-defined]
        if not entry & PRESENT or (shift == 30 and entry & LARGE):
            return None
        table = entry & ADDR_MASK
    return table + ((vaddr >> 21) & 0x1FF) * 8


ACCESSED = 0x20
USER_TABLE = PRESENT | WRITABLE | USER | ACCESSED  # a table the simulator adds (Linux's _PAGE_TABLE)
USER_EXEC_PAGE = PRESENT | USER | ACCESSED  # read+execute, not writable (Linux's XOL vma)


def map_user_page(
    engine: object,
    vaddr: int,
    phys: int,
    new_table: Callable[[], int],
    write_phys: Callable[[int, bytes], None],
    root: int | None = None,
) -> str | None:
    """Map the 4 KiB page at user address ``vaddr`` to ``phys`` (user, read+execute) in the page
    tables at CR3; a missing level gets a zeroed table from ``new_table()`` (its physical
    address). Entries the guest made on the way are used as they are and only the missing ones
    are written (the kernel walks its user tables only over its own mappings, so it never meets
    these). None when the page is mapped (now or already); else why it cannot be: the guest
    maps that address itself, with a page of its own or a large page. ``root``: the tables of
    another address space (its top table's physical address) instead of CR3's."""
    table = engine.reg_read(xc.UC_X86_REG_CR3) & ADDR_MASK if root is None else root  # type: ignore[attr-defined]
    for shift in (39, 30, 21):
        where = table + ((vaddr >> shift) & 0x1FF) * 8
        (entry,) = _U64(bytes(engine.mem_read(where, 8)))  # type: ignore[attr-defined]
        if entry & PRESENT and entry & LARGE and shift != 39:
            return f"the guest maps {vaddr:#x} with a large page of its own"
        if not entry & PRESENT:
            entry = new_table() | USER_TABLE
            write_phys(where, struct.pack("<Q", entry))
        elif not entry & USER:
            return f"the guest maps the tables of {vaddr:#x} for the kernel only"
        table = entry & ADDR_MASK
    where = table + ((vaddr >> 12) & 0x1FF) * 8
    (entry,) = _U64(bytes(engine.mem_read(where, 8)))  # type: ignore[attr-defined]
    want = (phys & ADDR_MASK) | USER_EXEC_PAGE
    if entry == want:
        return None
    if entry & PRESENT:
        return f"the guest maps {vaddr:#x} itself (entry {entry:#x})"
    write_phys(where, struct.pack("<Q", want))
    return None


def leaf_entry(engine: object, root: int, vaddr: int) -> tuple[int, int] | None:
    """Where the 4 KiB page-table entry mapping ``vaddr`` in the tables at ``root`` is, and its
    value (None when a level is not present, or a large page maps it)."""
    table = root
    for shift in (39, 30, 21, 12):
        where = table + ((vaddr >> shift) & 0x1FF) * 8
        (entry,) = _U64(bytes(engine.mem_read(where, 8)))  # type: ignore[attr-defined]
        if not entry & PRESENT:
            return None
        if shift == 12:
            return where, entry
        if shift != 39 and entry & LARGE:
            return None
        table = entry & ADDR_MASK
    return None


def entry_page(entry: int) -> int:
    """The physical page a leaf entry maps."""
    return entry & ADDR_MASK


def with_page(entry: int, phys: int) -> int:
    """The entry mapping ``phys`` instead, its permission and attribute bits kept."""
    return (entry & ~ADDR_MASK) | (phys & ADDR_MASK)


def user_text(entry: int) -> bool:
    """A present user, executable, not writable leaf (a program's text, as uprobes want it)."""
    return entry & (PRESENT | USER | WRITABLE) == PRESENT | USER and not entry & NX
