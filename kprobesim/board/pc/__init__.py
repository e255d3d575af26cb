"""The ``pc`` board (``--board pc``): an x86_64 PC that boots Linux's bzImage as QEMU's
``-kernel`` does, with the legacy devices Linux needs and nothing it would have to find in
firmware tables: 8259A PIC pair, 8254 PIT (+ port 0x61), 16550A COM1 on IRQ 4, CMOS RTC,
the i8042 reset line, port 0x80 and the isa-debug-exit-style port 0xf4.

There is no local APIC or I/O APIC, and no ACPI or MP tables: the kernel runs in PIC mode.
Debian's kernel needs ``acpi=off nolapic noapic`` for that (without them it looks for an APIC
the CPUID does not advertise and for ACPI tables that are not there); :data:`DEFAULT_APPEND`
holds the command line the board is measured with.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

from unicorn import x86_const as xc

from kprobesim.arch.x86_64 import paging

from ...arch import get_arch
from ...board import NEVER
from ...board.exit import PortExit
from ...image import Image
from .bzimage import GDT, LAYOUT, SIM_WINDOW_ENTRY, Boot, load_bzimage
from .cmos import CmosRtc
from .cpu import Cpu
from .i8042 import I8042ResetLine, Port80
from .pic import Pic8259Pair
from .pit import Pit8254
from .serial import Serial8250

if TYPE_CHECKING:
    from ...machine import Machine

RAM_SIZE = 128 << 20
USER_XOL = 0x7FFF_FFFF_F000
#: ``cryptomgr.notests`` skips the crypto manager's boot self-tests (RSA in software: 60% of
#: Debian's 6.1 boot, 1.415 G -> 0.541 G guest instructions); nothing else changes.
DEFAULT_APPEND = "console=ttyS0 acpi=off nolapic noapic nokaslr panic=-1 cryptomgr.notests"
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
CR0_PE, CR0_ET, CR0_PG = 1, 0x10, 1 << 31
CR4_PAE = 0x20
MSR_EFER = 0xC0000080
IF = 1 << 9
SIM_WINDOW = 0xFFFF_FFFF_BFE0_0000


class InterruptLine:
    """The PIC's output to the CPU, as the machine's one timer: its deadline is the next PIT
    edge; what is pending is the vector the PIC would hand out on INTA."""

    def __init__(self, pic: Pic8259Pair, pit: Pit8254) -> None:
        self.pic, self.pit = pic, pit

    def attach(self, machine: Machine) -> None:
        machine.add_timer(self)

    def deadline(self) -> int:
        """When a new request can appear: the next PIT edge (one already pending and held by
        the CPU's IF is looked at again by the run loop's held-interrupt polling)."""
        return self.pit.deadline()

    def pending(self, now: int) -> int | None:
        self.pit.update(now)
        return self.pic.pending_vector()

    def delivered(self, now: int) -> None:
        self.pic.acknowledge()


class PcBoard:
    """Devices, RAM size, the boot-protocol loader and the CPU state at the kernel's entry."""

    name = "pc"
    relocates_kernel = True  # the kernel runs at virtual addresses of its own page tables
    boot_page_tables = LAYOUT.pml4  # the loader's identity map, until the kernel loads its own CR3
    #: Where the kernel sees the simulator's pages (kprobe slots, the kretprobe trampoline): the
    #: last 2 MiB of the 1 GiB window Linux reserves for its image at __START_KERNEL_map
    #: (KERNEL_IMAGE_SIZE), which nothing else maps; within rel32 reach of all kernel text, as
    #: Linux's own kprobe instruction pages are (module_alloc, near the kernel).
    sim_window = SIM_WINDOW
    #: Where a process's uprobe XOL page is mapped: the last page of the lower canonical half,
    #: which Linux never maps (its TASK_SIZE_MAX ends one page short of it), at the top of the
    #: user address space as Linux's own XOL area.
    user_xol = USER_XOL


    def __init__(
        self,
        append: str | None = None,
        initrd: str | Path | None = None,
        decompress: str = "host",
        input: bytes = b"",
        ram_size: int = RAM_SIZE,
    ) -> None:
        self.append = DEFAULT_APPEND if append is None else append
        self.initrd = initrd
        self.decompress = decompress
        self.input = input
        self.ram_size = ram_size
        self.loaded: Boot | None = None  # what load() placed

    def load(self, path: str | Path) -> Image:
        window = (SIM_WINDOW, get_arch("x86_64").sim_base)
        self.loaded = load_bzimage(path, self.ram_size, self.append, self.initrd, self.decompress, window)
        return self.loaded.image

    @property
    def ram(self) -> tuple[int, int]:
        """RAM base and size (from address 0, as a PC's)."""
        return 0, self.ram_size

    def devices(self) -> list:
        pic = Pic8259Pair()
        pit = Pit8254(pic)
        self.serial = Serial8250(pic, data=self.input)
        return [
            Cpu(apic=False),
            pic,
            pit,
            self.serial,
            CmosRtc(self.ram_size),
            I8042ResetLine(),
            Port80(),
            PortExit(0xF4),
            InterruptLine(pic, pit),
        ]

    @property
    def initrd_data(self) -> bytes | None:
        """The initramfs the loader placed (None before load() or without one)."""
        return self.loaded.initrd if self.loaded is not None else None

    def map_sim_window(self, machine: Machine) -> bool:
        """Map the simulator's pages at :attr:`sim_window` in the kernel's page tables (one 2 MiB
        read+execute page-directory entry, shared by every process, as the kernel half is),
        unless they are there already. The entry is written where the running page tables
        have it; Linux clears unused entries of its image window early in boot, so this is
        checked again at each probe hit. A mapping of the kernel's own there is a fault."""
        uc = machine.engine
        if not uc.reg_read(xc.UC_X86_REG_CR0) & CR0_PG:
            return True
        where = paging.pmd_entry_addr(uc, SIM_WINDOW)
        if where is None:
            reason = f"the kernel's page tables do not reach {SIM_WINDOW:#x}: kprobe slots cannot be mapped"
            machine.fault(reason, machine.pc)
            return False
        want = machine.arch.sim_base | SIM_WINDOW_ENTRY
        have = struct.unpack("<Q", machine.read_phys(where, 8))[0]
        if have == want:
            return True
        if have & paging.PRESENT:
            machine.fault(f"the kernel mapped {SIM_WINDOW:#x} (entry {have:#x}), where kprobe slots go", machine.pc)
            return False
        machine.write_phys(where, struct.pack("<Q", want))
        return True

    def stopped_for_good(self, machine: Machine) -> bool:
        """A ``hlt`` with interrupts masked: only an NMI or a reset could resume the CPU, and the
        board has neither. Linux's power-off ends so on a PC without ACPI (``reboot: System
        halted``); the run ends with status 0."""
        return not machine.engine.reg_read(xc.UC_X86_REG_RFLAGS) & IF

    def boot(self, machine: Machine) -> None:
        """Long mode with paging on (identity map), the loader's GDT, ``rsi`` = boot_params."""
        assert self.loaded is not None
        uc = machine.engine
        uc.reg_write(xc.UC_X86_REG_GDTR, (0, LAYOUT.gdt, 8 * len(GDT) - 1, 0))
        uc.msr_write(MSR_EFER, EFER_LME | EFER_LMA)
        uc.reg_write(xc.UC_X86_REG_CR4, CR4_PAE)
        uc.reg_write(xc.UC_X86_REG_CR3, LAYOUT.pml4)
        uc.reg_write(xc.UC_X86_REG_CR0, CR0_PE | CR0_ET | CR0_PG)
        uc.reg_write(xc.UC_X86_REG_CS, 0x10)
        for seg in (xc.UC_X86_REG_DS, xc.UC_X86_REG_ES, xc.UC_X86_REG_SS):
            uc.reg_write(seg, 0x18)
        uc.reg_write(xc.UC_X86_REG_RSI, self.loaded.boot_params)
        uc.reg_write(xc.UC_X86_REG_RSP, LAYOUT.stack_top)
        uc.reg_write(xc.UC_X86_REG_RFLAGS, 2)
        uc.reg_write(xc.UC_X86_REG_RIP, self.loaded.entry)
        if self.loaded.kernel_map is not None:  # where the kernel will map itself (probes by symbol)
            machine.boot_maps.append(self.loaded.kernel_map)


__all__ = ["DEFAULT_APPEND", "NEVER", "PcBoard"]
