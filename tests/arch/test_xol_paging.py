"""The page-table writers behind a process's uprobe XOL page (x86_64 4-level paging, riscv64
Sv39/Sv48/Sv57), checked against the walkers the simulator uses for every host access (which
follow the hardware's rules): the page lands where the walk finds it, with user read+execute
(x86) or user execute-only (riscv) rights; tables the guest made are used, not replaced; a
page the guest maps there itself is refused, never overwritten."""

from __future__ import annotations

import struct

import keystone
import pytest
from kprobesim.arch.riscv64 import mmu
from kprobesim.arch.x86_64 import decode as dec
from kprobesim.arch.x86_64 import paging
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as xc

PAGE = 0x1000


class Memory:
    """Physical memory of zeroed pages, and a bump allocator of new table pages."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}
        self.next = 0x100000
        self.writes = 0

    def read(self, addr: int, size: int) -> bytes:
        return bytes(self.bytes.get(addr + i, 0) for i in range(size))

    def write(self, addr: int, data: bytes) -> None:
        self.writes += 1
        for i, b in enumerate(data):
            self.bytes[addr + i] = b

    def new_table(self) -> int:
        self.next += PAGE
        return self.next


class X86Cpu:
    """What the x86 walkers read of an engine: CR0, CR3 and physical memory."""

    def __init__(self, memory: Memory, cr3: int) -> None:
        self.memory, self.cr3 = memory, cr3

    def reg_read(self, reg: int) -> int:
        return {xc.UC_X86_REG_CR0: paging.PG | 1, xc.UC_X86_REG_CR3: self.cr3}[reg]

    def mem_read(self, addr: int, size: int) -> bytes:
        return self.memory.read(addr, size)


def test_x86_xol_page_is_user_read_execute_and_uses_the_guests_tables() -> None:
    mem = Memory()
    cpu = X86Cpu(mem, 0x1000)
    vaddr, phys = 0x7FFF_FFFF_F000, 0x4000_3000
    # the guest's stack in the same 512 GiB: its PML4 entry (a user table) is there already
    mem.write(0x1000 + 255 * 8, struct.pack("<Q", 0x2000 | paging.USER_TABLE))
    assert paging.map_user_page(cpu, vaddr, phys, mem.new_table, mem.write) is None
    assert struct.unpack("<Q", mem.read(0x1000 + 255 * 8, 8))[0] == 0x2000 | paging.USER_TABLE  # kept
    walk = paging.walk(cpu, vaddr + 0x123)
    assert (walk.phys, walk.user, walk.writable, walk.executable) == (phys + 0x123, True, False, True)
    assert paging.translate(cpu, vaddr) == phys
    writes = mem.writes
    assert paging.map_user_page(cpu, vaddr, phys, mem.new_table, mem.write) is None  # mapped already
    assert mem.writes == writes
    other = paging.map_user_page(cpu, vaddr, 0x4000_9000, mem.new_table, mem.write)
    assert other is not None and "maps 0x7ffffffff000 itself" in other and paging.translate(cpu, vaddr) == phys


def test_x86_refuses_a_large_page_of_the_guest() -> None:
    mem = Memory()
    cpu = X86Cpu(mem, 0x1000)
    mem.write(0x1000 + 255 * 8, struct.pack("<Q", 0x2000 | paging.USER_TABLE))
    mem.write(0x2000 + 511 * 8, struct.pack("<Q", 0x4000_0000 | paging.USER_TABLE | paging.LARGE))  # 1 GiB page
    why = paging.map_user_page(cpu, 0x7FFF_FFFF_F000, 0x5000, mem.new_table, mem.write)
    assert why is not None and "large page" in why


@pytest.mark.parametrize(("mode", "levels"), [(8, 3), (9, 4), (10, 5)])
def test_riscv_xol_page_is_user_execute_only_in_every_mode(mode: int, levels: int) -> None:
    mem = Memory()
    satp = mode << 60 | 0x1000 >> 12
    top = mmu.user_top(satp)
    assert top == 1 << (12 + 9 * levels - 1)  # Sv39: 2^38, Sv48: 2^47, Sv57: 2^56
    vaddr, phys = top - PAGE, 0x8800_3000
    assert mmu.map_user_page(satp, vaddr, phys, mem.read, mem.write, mem.new_table) is None
    assert mmu.translate(satp, vaddr + 0x10, mem.read) == phys + 0x10
    table = 0x1000
    for level in range(levels - 1, -1, -1):  # every level down to the leaf: its rights
        pte = int.from_bytes(mem.read(table + 8 * ((vaddr >> (12 + 9 * level)) & 0x1FF), 8), "little")
        table = ((pte >> 10) & mmu.PPN_MASK) << 12
    assert pte & 0xFF == mmu.PTE_V | mmu.PTE_X | mmu.PTE_U | mmu.PTE_A  # no R, no W
    writes = mem.writes
    assert mmu.map_user_page(satp, vaddr, phys, mem.read, mem.write, mem.new_table) is None
    assert mem.writes == writes
    why = mmu.map_user_page(satp, vaddr, 0x9000, mem.read, mem.write, mem.new_table)
    assert why is not None and "itself" in why
    assert mmu.map_user_page(0, vaddr, phys, mem.read, mem.write, mem.new_table) is not None  # no paging


@pytest.mark.parametrize(
    "source",
    ["mov rax, qword ptr [rip + 0x80]", "mov qword ptr [rip + 0x80], r14", "mov esi, dword ptr [rip + 0x80]",
     "mov edi, dword ptr [rip - 0x40]", "add qword ptr [rip + 0x80], 0x11", "movdqu xmm6, xmmword ptr [rip + 0x80]",
     "lea r15, [rip + 0x80]"],
)
def test_x86_rip_relative_copy_through_a_scratch_register_does_what_the_original_does(source: str) -> None:
    """A copy far from its target (decode.scratch_form): Unicorn runs the original where it is
    and the rewritten copy 1 GiB away with the scratch register set as the step sets it; both
    leave the same registers and memory (the scratch register aside, which the step restores)."""
    here, far = 0x10000, 0x4000_0000
    code = bytes(keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64).asm(source, here)[0])
    d = dec.decode(code, here)
    form = dec.scratch_form(d)
    assert form is not None
    copy, scratch = form
    assert len(copy.raw) == len(code) and scratch in ("rsi", "rdi", "rbx")
    regs = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r14", "r15"]

    def run(at: int, raw: bytes, setup: dict[str, int]) -> tuple[dict[str, int], bytes, bytes]:
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        uc.mem_map(0, 0x20000)
        uc.mem_map(far, 0x1000)
        uc.mem_write(here + 0x40, bytes(range(0x80)) * 2)
        uc.mem_write(at, raw)
        for i, name in enumerate(regs):
            uc.reg_write(getattr(xc, f"UC_X86_REG_{name.upper()}"), 0x1111 * (i + 1))
        uc.reg_write(xc.UC_X86_REG_XMM6, 0)
        for name, value in setup.items():
            uc.reg_write(getattr(xc, f"UC_X86_REG_{name.upper()}"), value)
        uc.emu_start(at, at + len(raw))
        out = {name: uc.reg_read(getattr(xc, f"UC_X86_REG_{name.upper()}")) for name in regs if name != scratch}
        return out, bytes(uc.mem_read(here + 0x40, 0x100)), uc.reg_read(xc.UC_X86_REG_XMM6).to_bytes(16, "little")

    assert run(far, copy.raw, {scratch: d.end}) == run(here, code, {})
