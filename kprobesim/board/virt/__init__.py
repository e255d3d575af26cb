"""The riscv64 ``virt`` machine, laid out as QEMU's ``hw/riscv/virt.c`` so kernels built for
QEMU run unchanged: RAM at 0x80000000, CLINT, PLIC, NS16550A (PLIC source 10), eight
virtio-mmio slots at 0x10001000.. (sources 1..8, block devices from ``drives``), the SiFive
test device for poweroff/reboot, and a generated device tree (a1; hart id in a0).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unicorn.riscv_const import (
    UC_RISCV_REG_A0,
    UC_RISCV_REG_A1,
    UC_RISCV_REG_A2,
    UC_RISCV_REG_MCOUNTEREN,
    UC_RISCV_REG_MEDELEG,
    UC_RISCV_REG_MIDELEG,
    UC_RISCV_REG_PRIV,
)

from ...errors import ImageError, UsageError
from ...files import read_regular
from .. import fdt
from ..clint import Clint
from ..console_input import ConsoleInput
from ..exit import TestExit
from ..ns16550a import Ns16550a
from ..plic import Plic
from ..sbi import Sbi
from ..virtio_blk import Disk, VirtioMmio

if TYPE_CHECKING:
    from ...machine import Machine

RAM_BASE = 0x80000000
DEFAULT_MEMORY = 256 << 20
TEST, CLINT, PLIC, UART, VIRTIO = 0x100000, 0x2000000, 0xC000000, 0x10000000, 0x10001000
UART_IRQ, VIRTIO_IRQ, VIRTIO_SLOTS = 10, 1, 8
TIMEBASE = 10_000_000  # mtime ticks per second, as QEMU's virt machine
# Retired instructions per mtime tick: the hart runs 300 M instructions a virtual second, about
# QEMU's TCG speed on Debian's Linux here, so a kernel's timer ticks and time-based loops cost
# about as many instructions as under QEMU, and its log's timestamps look alike (power-off at
# 3.0 s; QEMU on an idle machine: 2.6 s). Debian's 6.12 boot to power-off: 1.318 G instructions
# at 1 per tick (Linux's 250 Hz tick a tenth of it), 1.164 G at 10, 1.063 G at 30, 1.072 G at
# 100 (time-based loops grow). Exact: an interrupt comes at the instruction reaching its deadline.
INSNS_PER_TICK = 30
ISA = "rv64imafdc"  # what Unicorn's riscv64 CPU implements (no Zicsr/Zifencei names in priv 1.10 strings)
KERNEL_OFFSET = 0x200000  # where a kernel goes behind an M-mode firmware
# What the builtin SBI delegates to S-mode, as OpenSBI does: every exception but ecall from
# S/M-mode (misaligned, access and page faults, illegal instruction, breakpoint, user ecall),
# and the supervisor software/timer/external interrupts.
MEDELEG = 0x1FF | (1 << 12) | (1 << 13) | (1 << 15)
MIDELEG = (1 << 1) | (1 << 5) | (1 << 9)
# 32 bytes for /chosen/rng-seed, as QEMU's virt machine gives (QEMU: from the host's RNG; here one
# fixed value, so a run is the same every time). Linux mixes it into its pool and credits it
# (random.trust_bootloader, on by default), so its CRNG is ready from early boot on instead of
# hashing the whole input pool (BLAKE2s) for every random number until interrupts have credited
# 256 bits.
RNG_SEED = hashlib.sha256(b"kprobesim virt /chosen/rng-seed").digest()
MAX_FILE = 1 << 30  # firmware, initrd and device tree files are read whole, up to this


@dataclass
class VirtOptions:
    """What the command line chose for the machine."""

    memory: int = DEFAULT_MEMORY
    drives: list[str] = field(default_factory=list)
    drive_writable: bool = False
    legacy_virtio: bool = False
    input: bytes | None = None
    input_prompt: bytes = b""  # type each input line only once the output ends with this
    append: str = ""
    initrd: str | None = None
    dtb: str | None = None
    bios: str = "none"  # none | builtin (our SBI) | FILE (an M-mode firmware); not none: the image at +2 MiB


class Virt:
    """The board description a :class:`~kprobesim.machine.Machine` is built with."""

    name = "virt"
    interrupt_lines = True  # devices drive the hart's mip bits; Unicorn takes the interrupts
    #: A process's uprobe XOL page goes at the top of the user half of its address space (the
    #: last page below 2^38, 2^47 or 2^56 for Sv39, Sv48, Sv57), where the guest leaves it free;
    #: in a process that maps that page itself, probed instructions step in place instead.
    user_xol = True
    insns_per_tick = INSNS_PER_TICK  # the time CSR and mtime: virtual time // this

    def __init__(self, options: VirtOptions | None = None) -> None:
        self.options = options = options or VirtOptions()
        if options.memory < 16 << 20 or options.memory > 8 << 30 or options.memory % (1 << 20):
            raise UsageError(f"--memory must be whole MiB between 16M and 8G, not {options.memory:#x}")
        if len(options.drives) > VIRTIO_SLOTS:
            raise UsageError(f"at most {VIRTIO_SLOTS} drives")
        self.ram = (RAM_BASE, options.memory)
        self.sim_base = RAM_BASE + options.memory  # the simulator's pages: right after RAM, whatever its size
        self.clint = Clint(CLINT, lines=True, insns_per_tick=INSNS_PER_TICK)
        self.plic = Plic(PLIC)
        self.uart = Ns16550a(UART, UART_IRQ)
        disks = [Disk(path, options.drive_writable) for path in options.drives]
        self.virtio = [
            VirtioMmio(VIRTIO + 0x1000 * i, VIRTIO_IRQ + i, disks[i] if i < len(disks) else None, options.legacy_virtio)
            for i in range(VIRTIO_SLOTS)
        ]
        self.test = TestExit(TEST)
        self.input = (
            ConsoleInput(options.input, self.uart, prompt=options.input_prompt) if options.input is not None else None
        )
        self.firmware = _read(options.bios, "firmware") if options.bios not in ("none", "builtin") else None
        self.sbi = Sbi(self.uart, INSNS_PER_TICK) if options.bios == "builtin" else None
        self.initrd = _read(options.initrd, "initrd") if options.initrd else None
        self.dtb_blob = _read(options.dtb, "device tree") if options.dtb else None
        if self.dtb_blob is not None:
            try:
                fdt.parse(self.dtb_blob)
            except fdt.FdtError as e:
                raise ImageError(f"{options.dtb}: not a device tree: {e}") from None

    def devices(self) -> list:
        devices = [self.clint, self.plic, self.uart, *self.virtio, self.test]
        return devices + ([self.input] if self.input else []) + ([self.sbi] if self.sbi else [])

    @property
    def image_base(self) -> int:
        """Where a raw kernel image loads on this board."""
        return RAM_BASE + (KERNEL_OFFSET if self.options.bios != "none" else 0)

    def image_base_for(self, head: bytes) -> int:
        """Where a raw image with these first bytes loads (a Linux Image: by its header)."""
        offset = linux_image_offset(head)
        return RAM_BASE + offset if offset is not None and self.options.bios != "none" else self.image_base

    # -- boot ------------------------------------------------------------------------------
    def boot(self, machine: Machine) -> None:
        """Wire interrupts, place firmware, initrd and device tree, set the boot registers."""
        for dev in (self.uart, *self.virtio):
            dev.raise_irq, dev.lower_irq = self.plic.raise_irq, self.plic.lower_irq
        base, size = self.ram
        end = base + size
        initrd_range = None
        if self.initrd is not None:
            start = (end - (len(self.initrd) + (4 << 20))) & ~0xFFF  # as QEMU: near the top, below the DTB
            machine.write(start, self.initrd)
            initrd_range = (start, start + len(self.initrd))
        blob = self.dtb_blob if self.dtb_blob is not None else self.device_tree(initrd_range)
        dtb_addr = (end - len(blob) - 0x1000) & ~(0x200000 - 1)
        if initrd_range and dtb_addr < initrd_range[1]:
            dtb_addr = (initrd_range[0] - len(blob)) & ~0xFFF
        machine.write(dtb_addr, blob)
        self.dtb_addr = dtb_addr
        engine = machine.engine
        engine.reg_write(UC_RISCV_REG_A0, 0)
        engine.reg_write(UC_RISCV_REG_A1, dtb_addr)
        if self.firmware is not None:
            kernel = machine.image.entry
            machine.write(base, self.firmware)
            info = dtb_addr - 0x1000  # fw_dynamic_info: magic, version, next_addr, next_mode (S), options, boot_hart
            machine.write(info, b"".join(v.to_bytes(8, "little") for v in (0x4942534F, 2, kernel, 1, 0, 0)))
            engine.reg_write(UC_RISCV_REG_A2, info)
            machine.pc = base
        elif self.sbi is not None:  # the state OpenSBI leaves for the kernel, in S-mode
            with machine.traps.machine_mode():
                engine.reg_write(UC_RISCV_REG_MEDELEG, MEDELEG)
                engine.reg_write(UC_RISCV_REG_MIDELEG, MIDELEG)
                engine.reg_write(UC_RISCV_REG_MCOUNTEREN, 7)
            engine.reg_write(UC_RISCV_REG_PRIV, 1)

    def device_tree(self, initrd: tuple[int, int] | None = None) -> bytes:
        """The DTB describing exactly this machine."""
        base, size = self.ram
        root = fdt.Node("", {
            "#address-cells": 2, "#size-cells": 2, "compatible": "riscv-virtio", "model": "riscv-virtio,qemu",
        })
        chosen = root.add("chosen", {"stdout-path": f"/soc/serial@{UART:x}"})
        if self.options.append:
            chosen.props["bootargs"] = self.options.append
        chosen.props["rng-seed"] = RNG_SEED
        if initrd:
            chosen.props["linux,initrd-start"] = fdt.cells64(initrd[0])
            chosen.props["linux,initrd-end"] = fdt.cells64(initrd[1])
        root.add(f"memory@{base:x}", {"device_type": "memory", "reg": fdt.cells64(base, size)})
        cpus = root.add("cpus", {"#address-cells": 1, "#size-cells": 0, "timebase-frequency": TIMEBASE})
        cpu = cpus.add("cpu@0", {
            "device_type": "cpu", "reg": 0, "status": "okay", "compatible": "riscv",
            "riscv,isa": ISA, "mmu-type": "riscv,sv48",
        })
        cpu.add("interrupt-controller", {
            "#interrupt-cells": 1, "#address-cells": 0, "interrupt-controller": b"", "compatible": "riscv,cpu-intc",
            "phandle": 1,
        })
        root.add("poweroff", {"compatible": "syscon-poweroff", "regmap": 4, "offset": 0, "value": 0x5555})
        root.add("reboot", {"compatible": "syscon-reboot", "regmap": 4, "offset": 0, "value": 0x7777})
        soc = root.add("soc", {"#address-cells": 2, "#size-cells": 2, "compatible": "simple-bus", "ranges": b""})
        soc.add(f"test@{TEST:x}", {
            "compatible": ["sifive,test1", "sifive,test0", "syscon"], "reg": fdt.cells64(TEST, 0x1000), "phandle": 4,
        })
        soc.add(f"clint@{CLINT:x}", {
            "compatible": ["sifive,clint0", "riscv,clint0"], "reg": fdt.cells64(CLINT, 0x10000),
            "interrupts-extended": [1, 3, 1, 7],
        })
        soc.add(f"plic@{PLIC:x}", {
            "compatible": ["sifive,plic-1.0.0", "riscv,plic0"], "reg": fdt.cells64(PLIC, Plic.SIZE),
            "#interrupt-cells": 1, "#address-cells": 0, "interrupt-controller": b"",
            "interrupts-extended": [1, 11, 1, 9], "riscv,ndev": 95, "phandle": 3,
        })
        soc.add(f"serial@{UART:x}", {
            "compatible": "ns16550a", "reg": fdt.cells64(UART, 0x100), "clock-frequency": 3686400,
            "interrupt-parent": 3, "interrupts": UART_IRQ,
        })
        for dev in self.virtio:
            soc.add(f"virtio_mmio@{dev.base:x}", {
                "compatible": "virtio,mmio", "reg": fdt.cells64(dev.base, VirtioMmio.SIZE),
                "interrupt-parent": 3, "interrupts": dev.irq,
            })
        return fdt.build(root)


def linux_image_offset(head: bytes) -> int | None:
    """The load offset a riscv Linux ``Image`` header gives (None when ``head`` is not one)."""
    if len(head) < 0x40 or head[0x38:0x3C] != b"RSC\x05":
        return None
    return int.from_bytes(head[8:16], "little")


def _read(path: str, what: str) -> bytes:
    data = read_regular(Path(path), MAX_FILE, what, ImageError)
    if not data:
        raise ImageError(f"{path}: the {what} is empty")
    return data
