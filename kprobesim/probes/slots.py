"""Kprobe instruction pages: executable guest pages outside the image, never guest-writable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import UC_PROT_EXEC, UC_PROT_READ

if TYPE_CHECKING:
    from kprobesim.machine import Machine

PAGE = 0x1000


class SlotPages:
    """Fixed-size slots carved from read+exec pages allocated on demand; freed slots are reused."""

    def __init__(self, machine: Machine, slot_size: int) -> None:
        self.m = machine
        self.size = max(8, (slot_size + 7) & ~7)
        self._free: list[int] = []
        self.in_use: set[int] = set()
        self._code: dict[int, bytes] = {}
        self.trampoline: int | None = None  # a uprobe XOL area's uretprobe trampoline (its first slot)

    def alloc(self) -> int:
        if not self._free:
            page = self.m.sim_alloc(PAGE, UC_PROT_READ | UC_PROT_EXEC)
            self._free = list(range(page + PAGE - self.size, page - 1, -self.size))
        slot = self._free.pop()
        self.in_use.add(slot)
        return slot

    def write(self, slot: int, code: bytes) -> None:
        """Fill a slot (host writes ignore the guest's page protection)."""
        if len(code) > self.size:
            raise ValueError(f"slot code of {len(code)} bytes exceeds the {self.size}-byte slot")
        self._code[slot] = code.ljust(self.size, b"\0")
        self.m.patch_code(slot, self._code[slot])

    def repair(self) -> None:
        """Rewrite every slot (after a guest store into the pages was refused)."""
        for slot, code in self._code.items():
            self.m.patch_code(slot, code)

    def free(self, slot: int) -> None:
        self.in_use.discard(slot)
        self._code.pop(slot, None)
        self.m.patch_code(slot, bytes(self.size))
        self._free.append(slot)
