"""One boot of Debian's Linux 6.1 x86_64 on the ``pc`` board per test process, snapshotted as
the kernel starts init, and QEMU's transcript of the same kernel, initramfs and command line.

The boot (~1.42 G guest instructions, ~55-60 s of CPU) runs once per pytest worker: every test
module using it carries ``pytest.mark.xdist_group(XDIST_GROUP)``, so one worker runs them all
from one boot. It is paused when the console shows ``Run /init as init process`` (printk is
synchronous, before init's exec) and snapshotted there; every test restores the snapshot, places
its probes and runs init's whole life (~0.5 M instructions) to the power-off. QEMU's run (~45 s
of wall time, ~11 s of CPU) is made once per worker too, when a test asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from kprobesim.arch import get_arch
from kprobesim.board.pc import DEFAULT_APPEND, PcBoard
from kprobesim.errors import BudgetExhausted
from kprobesim.machine import Machine, Snapshot

from . import debian, obtain, qemu
from .initramfs import initramfs

XDIST_GROUP = "linux-pc"  # pytest.mark.xdist_group of every test module using the boot
BOOT_BUDGET = 2_000_000_000
TAIL = 200_000_000  # init's run from the snapshot to the power-off (a few million)
FIRST_LINE = b"Run /init as init process"


@dataclass
class PcLinux:
    """The booted machine and its snapshot as the kernel starts init."""

    machine: Machine
    snap: Snapshot

    def restore(self) -> Machine:
        """The machine back at the snapshot, with no probes placed and the boot's step variant."""
        self.machine.restore(self.snap)
        self.machine.step_variant = None
        return self.machine

    def run_to_power_off(self) -> int | None:
        return self.machine.run(max_insns=TAIL, timeout=600)


@cache
def booted() -> PcLinux:
    """Boot once in this process (see the module's docstring)."""
    kernel = obtain(debian.bookworm_amd64_kernel).image
    board = PcBoard(initrd=obtain(initramfs, "x86_64"))
    paused: list[bool] = []

    def started(data: bytes) -> None:  # the kernel starts init: pause there for the snapshot
        if not paused and FIRST_LINE in m.console_bytes[-2 * len(FIRST_LINE) :]:
            paused.append(True)
            m.pause()

    m = Machine(get_arch("x86_64"), board.load(kernel), board=board, console=started)
    try:
        m.run(max_insns=BOOT_BUDGET, timeout=1200)
    except BudgetExhausted as e:
        if "paused" not in str(e):
            raise
    if not paused:
        raise AssertionError(f"the kernel never started init: {m.console[-2000:]}")
    return PcLinux(m, m.snapshot())


@cache
def qemu_transcript() -> str:
    """QEMU's console for the same kernel, initramfs, command line and RAM, to the halt."""
    kernel = obtain(debian.bookworm_amd64_kernel).image
    cmd = ["qemu-system-x86_64", "-smp", "1", "-m", "128M", "-kernel", str(kernel), "-initrd",
           str(obtain(initramfs, "x86_64")), "-append", DEFAULT_APPEND, "-nographic", "-no-reboot"]
    return obtain(qemu.run_until, cmd, "reboot: System halted", 300).transcript
