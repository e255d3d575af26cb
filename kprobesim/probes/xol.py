"""A process's XOL area in its own user address space, as Linux's ``xol_area``: one page of
the simulator's user page pool (outside the guest's RAM, so the guest kernel never allocates
or frees it) mapped read+execute for user mode at a user address the guest OS never maps, in
the page tables of the process (one address space) that steps a uprobe there. Slots are
carved from that one page; the first is the process's uretprobe trampoline."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kprobesim.errors import SimError

from .slots import PAGE, SlotPages

if TYPE_CHECKING:
    from kprobesim.machine import Machine


class UserXol(SlotPages):
    """One process's XOL page: its slots are user addresses from ``vaddr``."""

    def __init__(self, machine: Machine, vaddr: int, slot_size: int, phys: int) -> None:
        super().__init__(machine, slot_size)
        self.vaddr = vaddr
        self.phys = phys
        self._free = list(range(vaddr + PAGE - self.size, vaddr - 1, -self.size))

    def alloc(self) -> int:
        if not self._free:
            raise SimError(f"the XOL page at {self.vaddr:#x} has no free slot ({PAGE // self.size} tasks stepping)")
        slot = self._free.pop()
        self.in_use.add(slot)
        return slot

    def contains(self, addr: int) -> bool:
        return self.vaddr <= addr < self.vaddr + PAGE

    def write(self, slot: int, code: bytes) -> None:
        if len(code) > self.size:
            raise ValueError(f"slot code of {len(code)} bytes exceeds the {self.size}-byte slot")
        self._code[slot] = code.ljust(self.size, b"\0")
        self.m.patch_physical(self.phys + slot - self.vaddr, slot, self._code[slot])

    def repair(self) -> None:
        for slot, code in self._code.items():
            self.m.patch_physical(self.phys + slot - self.vaddr, slot, code)

    def free(self, slot: int) -> None:
        self.in_use.discard(slot)
        self._code.pop(slot, None)
        self.m.patch_physical(self.phys + slot - self.vaddr, slot, bytes(self.size))
        self._free.append(slot)

    def map(self, root: int, new_table: Callable[[], int], written: list[int]) -> str | None:
        """Map the page into the address space whose top table is at ``root`` (page tables the
        walk lacks come from ``new_table``; the entries written are added to ``written``);
        None when it is mapped, else why it cannot be."""
        return self.m.traps.map_user_page(self.vaddr, self.phys, new_table, root, written)
