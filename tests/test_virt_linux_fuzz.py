"""Probe-placement fuzzing on Debian's Linux riscv64 from the boot snapshot at init's first
instruction (``riscv_linux``): kprobes and kretprobes drawn among the instructions of Linux's
``vfs_*`` functions that the run from the snapshot executes, each placement run to power off
and checked against the unprobed run (transcript, exit status, virtual time to the instruction,
every hit count, nothing left armed).

CPU: the candidate scan, the reference run (code hooks over clusters of the functions) and
the fixed seed's 8 placements, each run to power off (~4 M instructions): ~6 s.
"""

from __future__ import annotations

import re

import pytest
from linux import rvguest

from kprobesim.fuzz.placement import PlacementFuzzer

pytestmark = pytest.mark.xdist_group(rvguest.XDIST_GROUP)


def test_fuzz_vfs_functions_from_the_snapshot(riscv_linux: rvguest.RiscvLinux) -> None:
    def start():  # the campaign's machine: the shared boot, back at its snapshot
        return riscv_linux.restore(), riscv_linux.snap

    m = riscv_linux.machine
    fz = PlacementFuzzer(m.image.path, "vfs_*", start=start)
    assert {"vfs_open", "vfs_read", "vfs_write"} <= set(fz.functions)  # kretprobe targets that ran
    # the reference counted vfs_read's first instruction after its ftrace pad once per read():
    # init's (every count it printed) and the child's two (35 bytes, then 0)
    printed = re.findall(r"^kpsim-init: read \S+: ([\d ]+) =", fz.console.replace("\r", ""), re.M)
    assert fz.counts[m.image.symbol("vfs_read").addr + 8] == sum(len(p.split()) for p in printed) + 3  # + /init
    failures = fz.iterate(seed=1, indices=range(8))
    assert not failures, [(f.placement.text(), f.reason) for f in failures]
