"""One boot of Debian bookworm's Linux 6.1 x86_64 on the ``pc`` board per test process,
snapshotted at ``/init``'s first instruction.

The boot (the board's loader, the test initramfs, ``DEFAULT_APPEND``) costs ~0.54 G guest
instructions, ~25-30 s of CPU (1.42 G and ~60 s before ``cryptomgr.notests`` joined the board's
command line): it runs once per pytest worker (the ``linux`` xdist group
keeps every pc Linux test in one worker) up to init's ELF entry in user mode (one code hook on
that address), and is snapshotted there. Init's whole life from the snapshot to the power-off
("reboot: System halted") is ~1.4 M instructions: every test restores the snapshot, places its
probes and runs to the end in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from kprobesim.board.pc import DEFAULT_APPEND
from kprobesim.linuxguest import LinuxGuest, boot_to_init
from kprobesim.machine import Machine, Snapshot
from kprobesim.probes.regs import Regs

from . import debian, obtain, qemu
from .initramfs import initramfs, program

XDIST_GROUP = "linux"  # the same group as rvguest's: one worker boots both guests, once each
BOOT_BUDGET = 2_000_000_000
RUN_BUDGET = 200_000_000  # from the snapshot to the power-off, with room for probes


@dataclass
class PcLinux:
    """The booted machine and its snapshot at init's first instruction."""

    machine: Machine
    snap: Snapshot
    init_entry: int
    boot_instructions: int

    def restore(self, step_variant: str | None = None) -> Machine:
        """The machine back at init's first instruction, with no probes placed, stepping kprobes
        with ``step_variant`` (None: the arch's default)."""
        self.machine.restore(self.snap)
        self.machine.step_variant = step_variant
        return self.machine

    def run_to_power_off(self) -> int | None:
        """Run init to its end; the exit status (0 once Linux halts)."""
        return self.machine.run(max_insns=RUN_BUDGET, timeout=600)


def init_entry() -> int:
    """The ELF entry point of the initramfs ``/init`` for x86_64."""
    return int.from_bytes(program("init", "x86_64").read_bytes()[24:32], "little")


@cache
def booted() -> PcLinux:
    """Boot once in this process (see the module's docstring), through the library's per-process
    boots (``kprobesim.linuxguest``): ``kprobesim compare --board pc`` in this process with the
    same kernel and initrd starts from this snapshot too."""
    b = boot_to_init(guest(), max_insns=BOOT_BUDGET, timeout=1200)
    assert b.init_entry == init_entry()
    assert Regs(b.machine)["cs"] & 3 == 3, "stopped at init's entry address in kernel mode"
    return PcLinux(b.machine, b.snapshot, b.init_entry, b.boot_instructions)


def guest() -> LinuxGuest:
    """The boot: Debian's kernel, the test initramfs, the board's default command line."""
    return LinuxGuest("pc", str(obtain(debian.bookworm_amd64_kernel).image), str(obtain(initramfs, "x86_64")))


@cache
def qemu_transcript() -> str:
    """QEMU's console for the same kernel, initramfs, command line and RAM, to the halt (~45 s
    of wall time, ~11 s of CPU; once per machine: kept in the test cache by ``qemu.cached``)."""
    kernel = obtain(debian.bookworm_amd64_kernel).image
    cmd = ["qemu-system-x86_64", "-smp", "1", "-m", "128M", "-kernel", str(kernel), "-initrd",
           str(obtain(initramfs, "x86_64")), "-append", DEFAULT_APPEND, "-nographic", "-no-reboot"]
    marker = "reboot: System halted"
    return obtain(qemu.cached, cmd, lambda: qemu.run_until(cmd, marker, 300), marker).transcript
