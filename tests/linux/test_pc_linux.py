"""Debian bookworm's 6.1 bzImage on the x86_64 ``pc`` board with the test initramfs, against
QEMU booting the same kernel, initramfs and command line with the same RAM: the kernel's own
report of the machine (the e820 map the loader wrote, its memory zones and totals, the command
line) must be QEMU's, it must calibrate its TSC against the board's PIT and find the 16550A,
and every line init and its child print (reads, fork, exec, wait) must be QEMU's.

One boot per module, shared by its tests (~1.42 G guest instructions to init's power-off,
~55 s of CPU measured here on a quiet machine, ~70 s on a busy one); the QEMU oracle run is
~45 s of wall time, ~11 s of CPU. Without ACPI (``acpi=off``) Linux's power-off halts the CPU
with interrupts masked ("reboot: System halted"), which ends the run with status 0; QEMU
(same command line) halts the same way and is stopped once it says so.
"""

from __future__ import annotations

import re
from functools import cache

import pytest

from kprobesim.arch import get_arch
from kprobesim.board.pc import DEFAULT_APPEND, PcBoard
from kprobesim.machine import Machine
from linux import debian, obtain, qemu
from linux.initramfs import initramfs
from linux.qemu import init_lines

pytestmark = pytest.mark.xdist_group("linux-pc")

BUDGET = 2_000_000_000
SAME_AS_QEMU = re.compile(
    r"^(Linux version |Command line: |Kernel command line: |BIOS-e820: \[mem 0x00000000|Memory: |"
    r"  (DMA|DMA32|Normal) |  node   0: |Initmem setup |On node 0, zone |Built 1 zonelists|Dentry cache |"
    r"Inode-cache |percpu: |last_pfn = )"
)
_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")  # SeaBIOS clears the screen on the kernel's first line
_INNER_TIMESTAMP = re.compile(r"(?<=.)(\[\s*\d+\.\d{6}\] )")


def _lines(transcript: str) -> list[str]:
    # QEMU's firmware output and the kernel's first line can share a line ("... ok[    0.000000]
    # Linux version ...", the carriage return between them dropped): a timestamp starts a line
    text = _ESCAPE.sub("", transcript).replace("\r\n", "\n").replace("\r", "\n")
    text = _INNER_TIMESTAMP.sub(r"\n\1", text)
    return qemu.kernel_lines(text) + [line for line in text.splitlines() if line.startswith("  ")]


@cache
def _qemu_transcript() -> str:
    kernel = obtain(debian.bookworm_amd64_kernel).image
    cmd = ["qemu-system-x86_64", "-smp", "1", "-m", "128M", "-kernel", str(kernel), "-initrd",
           str(obtain(initramfs, "x86_64")), "-append", DEFAULT_APPEND, "-nographic", "-no-reboot"]
    return obtain(qemu.run_until, cmd, "reboot: System halted", 300).transcript


@pytest.fixture(scope="module")
def booted() -> Machine:
    kernel = obtain(debian.bookworm_amd64_kernel).image
    board = PcBoard(initrd=obtain(initramfs, "x86_64"))
    m = Machine(get_arch("x86_64"), board.load(kernel), board=board)
    m.run(max_insns=BUDGET, timeout=1200)
    return m


def test_reports_qemus_machine(booted: Machine) -> None:
    lines = _lines(booted.console)
    assert "printk: console [ttyS0] enabled" in lines, booted.console[-2000:]
    assert any(re.fullmatch(r"tsc: Detected 99\d\.\d+ MHz processor", line) for line in lines)
    assert "tsc: Fast TSC calibration using PIT" in lines
    assert "No local APIC present" in lines  # the board has none; the kernel runs on the 8259A
    mine = [line for line in lines if SAME_AS_QEMU.match(line)]
    theirs = [line for line in _lines(_qemu_transcript()) if SAME_AS_QEMU.match(line)]
    assert len(mine) >= 20
    assert mine == theirs


def test_init_runs_as_under_qemu_and_halts(booted: Machine) -> None:
    console = booted.console
    assert booted.exit_status == 0 and "reboot: System halted" in console, console[-3000:]
    expected = init_lines(_qemu_transcript())
    assert any(line.startswith("kpsim-child: ") for line in expected), expected
    assert init_lines(console) == expected, console[-3000:]
