"""CR2 across the simulator's run slices on x86_64: a page-fault handler that reads CR2 some
instructions after entry must read its own fault's address, wherever a slice ends meanwhile.

Unicorn, as every ``emu_start`` returns, translates its stop address minus one as an
instruction fetch (to drop that address's translation); under the guest's page tables that
address is unmapped and the translation records a page fault, setting CR2 to it. A slice that
ended between the delivery of a #PF and the handler's ``mov reg, cr2`` handed the handler
0xffffffffffffffef: Linux's init got SIGSEGV for a copy-on-write fault that way, after a timer
interrupt taken inside a uprobe's XOL slot had moved the slice boundaries (the shared-boot
check of that is ``test_pc_linux_uprobes.py::test_process_interrupted_inside_its_xol_slot``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pcguest as g
import pytest
from unicorn import x86_const as xc

from kprobesim.arch import get_arch
from kprobesim.board.pc import PcBoard
from kprobesim.errors import SimError
from kprobesim.machine import SLICE, Machine

UNMAPPED = 0x5555_0000_1000  # beyond the loader's 4 GiB identity map
FAULTS = 3000
DELAY = 300  # nops between the handler's entry and its CR2 read
RESULTS = g.COUNTER + 0x200  # faults seen, CR2 mismatches, the last wrong CR2


def test_cr2_survives_slice_ends_inside_the_page_fault_handler(tmp_path: Path) -> None:
    """~1 M instructions, ~0.5 s: 3,000 loads from an unmapped page, each #PF handler waiting
    300 instructions before it reads CR2, so nearly every slice end (200 k instructions at
    most) falls in that window; every read must give the load's address."""
    src = g.set_gate(14, "page_fault") + f"""
    mov rbx, {RESULTS}
    mov qword ptr [rbx], 0
    mov qword ptr [rbx + 8], 0
    mov qword ptr [rbx + 16], 0
    mov r13, {UNMAPPED}
    mov r12, {FAULTS}
again:
    mov rax, qword ptr [r13]
    add r13, 8
    dec r12
    jnz again
    cmp qword ptr [rbx + 8], 0
    jne bad
    """ + g.exit_with(0) + """
bad:
    """ + g.exit_with(1) + f"""
page_fault:
    {"nop; " * DELAY}
    mov rax, cr2
    add qword ptr [rbx], 1
    cmp rax, r13
    je right
    add qword ptr [rbx + 8], 1
    mov qword ptr [rbx + 16], rax
right:
    add qword ptr [rsp + 8], 4  # past the 4-byte load
    add rsp, 8
    iretq
"""
    board = PcBoard(decompress="guest")
    m = Machine(get_arch("x86_64"), board.load(g.write(tmp_path, "k", src)), board=board)
    slices: list[int] = []
    engine_start = m.engine.emu_start

    def counted(*args: object) -> None:
        slices.append(1)
        engine_start(*args)

    m.engine.emu_start = counted
    status = m.run(max_insns=5_000_000, timeout=60)
    faults, wrong, last = struct.unpack("<3Q", m.read(RESULTS, 24))
    assert faults == FAULTS
    assert len(slices) >= FAULTS * DELAY // SLICE  # slices did end inside handlers
    assert (wrong, hex(last)) == (0, "0x0"), f"{wrong} handlers read a wrong CR2, the last {last:#x}"
    assert status == 0


def test_run_to_an_unmapped_address_leaves_cr2_alone(tmp_path: Path) -> None:
    """``run_to`` drops the engine's translation at its goal, which Unicorn finds by translating
    the address: one the guest's page tables do not map recorded a page fault there (CR2). The
    guest reads CR2 as the host left it. A few instructions."""
    src = f"""
    mov rax, cr2
    mov qword ptr [{RESULTS}], rax
    """ + g.exit_with(0)
    board = PcBoard(decompress="guest")
    m = Machine(get_arch("x86_64"), board.load(g.write(tmp_path, "k", src)), board=board)
    m.engine.reg_write(xc.UC_X86_REG_CR2, 0x1234_5000)
    with pytest.raises(SimError, match="before reaching"):
        m.run_to(UNMAPPED, max_insns=10_000)
    assert hex(struct.unpack("<Q", m.read(RESULTS, 8))[0]) == "0x12345000"
