"""Debian bookworm's 6.1 bzImage on the x86_64 ``pc`` board, against QEMU booting the same
kernel with the same command line and RAM: the kernel's own report of the machine (the e820 map
the loader wrote, its memory zones and totals, the command line) must be QEMU's, and it must
calibrate its TSC against the board's PIT and find the 16550A.

Measured here (2 shared cores): the console comes up between 100 M and 200 M instructions of
virtual time after entry (the kernel's clock says 0.079 s; idle jumps count as time); the
boot then runs its initcalls (X.509 signature checks alone take several hundred million
instructions). The test stops once the console is up."""

from __future__ import annotations

import re
from functools import cache

from kprobesim.arch import get_arch
from kprobesim.board.pc import DEFAULT_APPEND, PcBoard
from kprobesim.errors import BudgetExhausted
from kprobesim.machine import Machine
from linux import debian, obtain, qemu

CONSOLE_BUDGET = 200_000_000
CHUNK = 10_000_000
SAME_AS_QEMU = re.compile(
    r"^(Linux version |Command line: |Kernel command line: |BIOS-e820: \[mem 0x00000000|Memory: |"
    r"  (DMA|DMA32|Normal) |  node   0: |Initmem setup |On node 0, zone |Built 1 zonelists|Dentry cache |"
    r"Inode-cache |percpu: |last_pfn = )"
)


_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")  # SeaBIOS clears the screen on the kernel's first line


def _lines(transcript: str) -> list[str]:
    text = _ESCAPE.sub("", transcript.replace("\r", ""))
    return qemu.kernel_lines(text) + [line for line in text.splitlines() if line.startswith("  ")]


@cache
def _qemu_transcript() -> str:
    kernel = obtain(debian.bookworm_amd64_kernel).image
    cmd = ["qemu-system-x86_64", "-smp", "1", "-m", "128M", "-kernel", str(kernel), "-append", DEFAULT_APPEND,
           "-nographic", "-no-reboot"]
    return obtain(qemu.run, cmd, 300).transcript


def test_debian_kernel_reaches_its_console_and_reports_qemus_machine() -> None:
    kernel = obtain(debian.bookworm_amd64_kernel).image
    board = PcBoard(decompress="host")
    m = Machine(get_arch("x86_64"), board.load(kernel), board=board)
    while "console [ttyS0] enabled" not in m.console and m.instructions < CONSOLE_BUDGET:
        try:
            m.run(max_insns=CHUNK, timeout=600)
        except BudgetExhausted:
            pass
    ours = m.console
    lines = _lines(ours)
    assert "printk: console [ttyS0] enabled" in lines, ours[-2000:]
    assert any(re.fullmatch(r"tsc: Detected 99\d\.\d+ MHz processor", line) for line in lines), ours[:3000]
    assert "tsc: Fast TSC calibration using PIT" in lines
    assert "No local APIC present" in lines  # the board has none; the kernel runs on the 8259A
    mine = [line for line in lines if SAME_AS_QEMU.match(line)]
    theirs = [line for line in _lines(_qemu_transcript()) if SAME_AS_QEMU.match(line)]
    assert len(mine) >= 20
    assert mine == theirs
