"""Probe-placement fuzzing on Debian's Linux 6.1 x86_64 (the ``pc`` board) from the boot
snapshot at init's first instruction (``pc_linux``): kprobes and kretprobes drawn among the
instructions of Linux's ``vfs_*`` functions that init's run executes, each placement run to the
power-off and checked against the unprobed run (transcript with the kernel's timestamps, exit
status, virtual time to the instruction, every interrupt taken at the same instruction, every
hit count, nothing left armed), as ``kprobesim fuzz --arch x86_64 --board pc`` does.

CPU: the candidate scan and the reference run ~1.5 s, then ~0.5 s per placement (init's whole
life is ~1.4 M instructions): ~10 s for each step variant's 16 placements of the fixed seed.
"""

from __future__ import annotations

import re

import pytest
from linux import pclinux

from kprobesim.fuzz.placement import Placement, PlacementFuzzer

pytestmark = pytest.mark.xdist_group(pclinux.XDIST_GROUP)


def test_fuzz_vfs_functions_from_the_snapshot_int3(pc_linux: pclinux.PcLinux) -> None:
    def start():  # the campaign's machine: the shared boot, back at its snapshot
        return pc_linux.restore("int3"), pc_linux.snap

    m = pc_linux.machine
    fz = PlacementFuzzer(m.image.path, "vfs_*", "int3", start=start)
    assert {"vfs_open", "vfs_read", "vfs_write"} <= set(fz.functions)  # kretprobe targets that ran
    # the reference counted vfs_read's first instruction once per read(): init's (every count
    # it printed) and the child's two (35 bytes, then 0)
    printed = re.findall(r"^kpsim-init: read \S+: ([\d ]+) =", fz.console.replace("\r", ""), re.M)
    assert fz.counts[m.image.symbol("vfs_read").addr] == sum(len(p.split()) for p in printed) + 3  # + /init once
    failures = fz.iterate(seed=1, indices=range(16))
    assert not failures, [(f.placement.text(), f.reason) for f in failures]


def test_fuzz_vfs_functions_from_the_snapshot_tf(pc_linux: pclinux.PcLinux) -> None:
    """The TF variant's campaign (seed 1, 16 placements, ~10 s of CPU): every step of a
    conditional branch, a call or ``ret`` ends with the debug trap, so slices end where the
    unprobed run's do not; the serial interrupts init's output raises while Linux masks them
    must still be taken at the same instruction (the kernel's timestamps and init's timing in
    the transcript, virtual time to the instruction)."""

    def start():
        return pc_linux.restore("tf"), pc_linux.snap

    fz = PlacementFuzzer(pc_linux.machine.image.path, "vfs_*", "tf", start=start)
    failures = fz.iterate(seed=1, indices=range(16))
    assert not failures, [(f.placement.text(), f.reason) for f in failures]


def test_tf_stepped_branches_move_no_interrupt(pc_linux: pclinux.PcLinux) -> None:
    """A TF-stepped conditional branch (never boosted, never simulated in the TF variant) in
    ``vfs_read``, each alone: the serial interrupt init's output waits on, pending while the
    guest masked it and still waiting when the step ends, is delivered when the unprobed run
    delivers it (the step's end ending the slice moved it: the kernel's timestamps differed)."""

    def start():
        return pc_linux.restore("tf"), pc_linux.snap

    m = pc_linux.machine
    fz = PlacementFuzzer(m.image.path, "vfs_read", "tf", start=start)
    reg = m.probes
    branches = [a for a in fz.candidates if reg.classify(a).text.startswith("j") and fz.counts.get(a)]
    assert len(branches) >= 4
    for addr in branches[:4]:
        assert fz.check(Placement((addr,))) is None, m.image.describe(addr)


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_rep_string_probes_hit_once_per_execution(pc_linux: pclinux.PcLinux, variant: str) -> None:
    """A kprobe on a rep-prefixed string instruction (``vfs_write``'s ``rep stosq``) hits once
    per execution, as Linux's; the unprobed run retires each iteration as an instruction, so the
    reference counts executions, not iterations (it counted 112 for 16 executions). ~2 s of CPU
    a variant."""

    def start():
        return pc_linux.restore(variant), pc_linux.snap

    fz = PlacementFuzzer(pc_linux.machine.image.path, "vfs_write", variant, start=start)
    reps = sorted(a for a in fz.repeats if fz.counts.get(a))
    assert reps, "no rep string instruction of vfs_write ran"
    for addr in reps:
        assert fz.check(Placement((addr,))) is None, pc_linux.machine.image.describe(addr)
