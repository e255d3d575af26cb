"""One boot of Debian's Linux 6.12 riscv64 per test process, snapshotted where ``/init`` starts.

The boot (Debian trixie's OpenSBI ``fw_jump.bin`` as the M-mode firmware, as under QEMU; the
test initramfs; Sv57) costs ~0.37 G guest instructions, ~15 s of CPU (1.04 G and ~31 s without
the command line's ``cryptomgr.notests initcall_blacklist=jent_mod_init``, see ``qemu.APPEND``,
and the board's ``/chosen/rng-seed``):
it runs once per pytest
worker (the ``linux`` xdist group keeps every riscv Linux test in one worker) up to the
first user-mode instruction of ``/init`` (its ELF entry, reached through one code hook on that
address), and is snapshotted there. Every test restores the snapshot, places its probes and
runs only as far as it needs (the rest of init's run to power off is ~4 M instructions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from kprobesim.elfread import read_header
from kprobesim.linuxguest import LinuxGuest, boot_to_init
from kprobesim.machine import Machine, Snapshot

from . import debian, obtain
from .initramfs import initramfs, program
from .qemu import APPEND

XDIST_GROUP = "linux"  # pytest.mark.xdist_group of every module using a Linux boot (both guests: one worker)
BOOT_BUDGET = 2_500_000_000
RUN_BUDGET = 400_000_000  # from the snapshot to power off, with room for probes
MEMORY = 128 << 20


@dataclass
class RiscvLinux:
    """The booted machine and its snapshot at init's first instruction."""

    machine: Machine
    snap: Snapshot
    init_entry: int
    boot_instructions: int

    def restore(self) -> Machine:
        """The machine back at init's first instruction, with no probes placed."""
        self.machine.restore(self.snap)
        return self.machine

    def run_to_power_off(self) -> Machine:
        m = self.machine
        m.run(max_insns=RUN_BUDGET, timeout=600)
        return m


def init_entry() -> int:
    """The ELF entry point of the initramfs ``/init`` for riscv64."""
    return read_header(program("init", "riscv64").read_bytes()[:64]).entry


@cache
def booted() -> RiscvLinux:
    """Boot once in this process (see the module's docstring), through the library's per-process
    boots (``kprobesim.linuxguest``): ``kprobesim compare --board virt`` in this process with the
    same kernel, initrd, firmware, RAM and command line starts from this snapshot too."""
    b = boot_to_init(guest(), max_insns=BOOT_BUDGET, timeout=1200)
    assert b.init_entry == init_entry()
    return RiscvLinux(b.machine, b.snapshot, b.init_entry, b.boot_instructions)


def guest() -> LinuxGuest:
    """The boot: Debian's kernel and OpenSBI (the builtin SBI's Linux boot: test_virt_sbi.py),
    the test initramfs, 128 MiB, QEMU's command line of the oracle runs."""
    return LinuxGuest("virt", str(obtain(debian.trixie_riscv64_kernel).image), str(obtain(initramfs, "riscv64")),
                      append=APPEND, bios=str(obtain(debian.trixie_opensbi)), memory=MEMORY)
