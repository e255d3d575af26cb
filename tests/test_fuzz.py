"""The probe-placement fuzzer: fixed-seed campaigns find nothing; a planted bug is found and shrunk."""

from __future__ import annotations

import random
import types

import pytest
from fwpaths import firmware

from kprobesim.fuzz.placement import Placement, PlacementFuzzer, fuzz, reproducer
from kprobesim.probes.insn import Kind

# arch, step variant, placements (the P-code engine runs the LoongArch kernel more slowly)
CAMPAIGNS = [("riscv64", None, 300), ("x86_64", "tf", 300), ("x86_64", "int3", 300), ("loongarch64", None, 200)]


@pytest.mark.parametrize(("arch", "variant", "iterations"), CAMPAIGNS)
def test_fixed_seed_campaign_is_clean(arch, variant, iterations):
    report = fuzz(arch, firmware(arch), seed=2026, iterations=iterations, variant=variant)
    assert report.iterations == iterations
    assert not report.failures, [(f.placement.text(), f.reason) for f in report.failures[:3]]


def _plant_off_by_four(reg):
    """A simulator that gets PC-relative instructions wrong by 4 bytes."""
    real = reg.simulate.simulate

    def buggy(d, regs):
        real(d, regs)
        if d.text.startswith(("auipc", "pcaddu12i", "pcalau12i")):
            rd = d.text.split()[1].rstrip(",")
            regs[rd] = regs[rd] + 4

    reg.simulate = types.SimpleNamespace(simulate=buggy)


def test_planted_simulator_bug_is_found_and_shrunk():
    report = fuzz("riscv64", firmware("riscv64"), seed=7, iterations=60, plant=_plant_off_by_four)
    assert report.failures, "the planted bug went unnoticed"
    fz = PlacementFuzzer(firmware("riscv64"), plant=_plant_off_by_four)
    for failure in report.failures:
        p = failure.placement
        assert len(p) == 1  # shrunk to the one guilty probe: a kprobe, or a kretprobe's entry probe
        addr = p.kprobes[0] if p.kprobes else fz.m.image.symbol(p.kretprobes[0]).addr
        d = fz.m.probes.classify(addr)
        assert d.kind is Kind.SIMULATE and d.text.startswith("auipc"), d.text
        line = reproducer("riscv64", firmware("riscv64"), failure, None)
        assert line.startswith("kprobesim fuzz --arch riscv64") and f"--replay '{p.text()}'" in line
        assert fz.check(Placement.parse(p.text()))  # the reproducer fails on its own


def test_same_seed_same_placements_any_jobs():
    fz = PlacementFuzzer(firmware("riscv64"))

    first = [fz.draw(random.Random(f"5:{i}")) for i in range(20)]
    again = [fz.draw(random.Random(f"5:{i}")) for i in range(20)]
    assert first == again and len({p.text() for p in first}) > 15
    one = fuzz("riscv64", firmware("riscv64"), seed=5, iterations=6, jobs=1)
    two = fuzz("riscv64", firmware("riscv64"), seed=5, iterations=6, jobs=2)
    assert (one.iterations, one.failures) == (two.iterations, two.failures)


def test_reference_run_is_shared_per_image_file(tmp_path, monkeypatch):
    """Fuzzers on one image file share its unprobed reference run (each gets its own counts);
    a changed file gets a new one. ~2 s of CPU."""
    import os
    import shutil

    from kprobesim.fuzz import placement

    image = tmp_path / "kernel.elf"
    shutil.copy(firmware("riscv64"), image)
    runs = []
    real = placement._reference_run
    monkeypatch.setattr(placement, "_reference_run", lambda *args: runs.append(args) or real(*args))
    one, two = PlacementFuzzer(image), PlacementFuzzer(image, variant=None)
    assert len(runs) == 1 and one.counts == two.counts and one.counts is not two.counts
    assert (one.console, one.instructions, one.checksum) == (two.console, two.instructions, two.checksum)
    mtime = image.stat().st_mtime_ns
    os.utime(image, ns=(mtime, mtime + 1_000_000_000))
    PlacementFuzzer(image)
    assert len(runs) == 2


def test_fuzz_cli(run_cli):
    status, out, _ = run_cli("fuzz", "--arch", "riscv64", "--seed", "1", "--iterations", "5")
    assert status == 0 and out.decode().strip().startswith("fuzz riscv64: 5 placements, 0 failures")
    status, out, _ = run_cli("fuzz", "--arch", "riscv64", "--replay", "r:fib")
    assert (status, out) == (0, b"replay: pass\n")
    status, _, err = run_cli("fuzz", "--arch", "riscv64", "--func", "no_such_*")
    assert status == 64 and "no probeable instruction" in err


def _plant_internal_error(reg):
    """A registry whose out-of-line step of a store crashes (an internal error, not a guest's)."""
    real = reg._execute

    def crashing(site, regs, quiet=False):
        if site.decision.text.startswith("sd "):
            raise RuntimeError(f"planted crash stepping {site.decision.text!r}")
        real(site, regs, quiet)

    reg._execute = crashing


def test_internal_error_in_a_placement_is_a_finding(run_cli):
    """An exception inside a placement is shrunk and reported like any failure; the campaign
    goes on and the placements after it still pass or fail on their own."""
    report = fuzz("riscv64", firmware("riscv64"), seed=7, iterations=12, plant=_plant_internal_error)
    assert report.iterations == 12 and report.failures
    fz = PlacementFuzzer(firmware("riscv64"), plant=_plant_internal_error)
    for failure in report.failures:
        assert failure.reason.startswith("internal error: RuntimeError: planted crash stepping 'sd ")
        (addr,) = failure.placement.kprobes or (fz.m.image.symbol(failure.placement.kretprobes[0]).addr,)
        assert fz.m.probes.classify(addr).text.startswith("sd ")
    failed = {f.iteration for f in report.failures}
    # placements after a crash pass: the fuzzer carried on with a machine set up afresh
    assert any(i > min(failed) for i in set(range(12)) - failed)
    status, out, _ = run_cli("fuzz", "--arch", "riscv64", "--replay", report.failures[0].placement.text())
    assert status == 0 and out == b"replay: pass\n"  # without the planted crash it passes


# The user program's functions only (u_* and user_main): placements of uprobes and uretprobes.
USER_CAMPAIGNS = [("riscv64", None, 40), ("x86_64", "tf", 40), ("x86_64", "int3", 40), ("loongarch64", None, 30)]


@pytest.mark.parametrize(("arch", "variant", "iterations"), USER_CAMPAIGNS)
def test_user_program_campaign_is_clean(arch, variant, iterations):
    report = fuzz(arch, firmware(arch), seed=2026, iterations=iterations, func="u*", variant=variant)
    fz = PlacementFuzzer(firmware(arch), func="u*", variant=variant)
    drawn = [fz.draw(random.Random(f"2026:{i}")) for i in range(iterations)]
    assert all(p.uprobes and not p.kprobes for p in drawn) and any(p.uretprobes for p in drawn)
    assert not report.failures, [(f.placement.text(), f.reason) for f in report.failures[:3]]


def _plant_user_off_by_four(reg):
    """Uprobes whose simulation of PC-relative instructions is 4 bytes off (kprobes unharmed)."""
    up = reg.m.uprobes
    real = up.simulate.simulate

    def buggy(d, regs):
        real(d, regs)
        if d.text.startswith("auipc"):
            rd = d.text.split()[1].rstrip(",")
            regs[rd] = regs[rd] + 4

    up.simulate = types.SimpleNamespace(simulate=buggy)


def test_planted_uprobe_bug_is_found_and_shrunk():
    report = fuzz("riscv64", firmware("riscv64"), seed=7, iterations=12, func="u*", plant=_plant_user_off_by_four)
    assert report.failures, "the planted bug went unnoticed"
    fz = PlacementFuzzer(firmware("riscv64"), func="u*", plant=_plant_user_off_by_four)
    for failure in report.failures:
        p = failure.placement
        assert len(p) == 1 and len(p.uprobes) == 1, p.text()
        assert fz.m.probes.classify(p.uprobes[0]).text.startswith("auipc")
        assert fz.check(Placement.parse(p.text()))  # the reproducer fails on its own
    assert PlacementFuzzer(firmware("riscv64"), func="u*").check(Placement.parse(p.text())) is None  # unplanted


@pytest.mark.parametrize(("arch", "variant"), [("riscv64", None), ("x86_64", "int3"), ("loongarch64", None)])
def test_internal_error_is_shrunk_to_a_replay_line_on_the_command_line(run_cli, monkeypatch, arch, variant):
    """``kprobesim fuzz`` with a simulator that crashes stepping any instruction of do_work
    (issue 17 item 3): each failing placement is shrunk to one probe and printed with its
    ``--replay`` line, and the campaign runs all its placements. On the Unicorn arches the
    replay line also fails the same way while the crash is planted and passes once it is gone
    (each replay sets a fuzzer up afresh: ~9 s of CPU on LoongArch's P-code engine, so not there)."""
    from kprobesim.probes.registry import Registry

    real = Registry._execute

    def crashing(self, site, regs, quiet=False):  # noqa: ANN001, ANN202
        if self.m.image.lookup(site.addr)[0].name == "do_work":
            raise RuntimeError(f"planted crash at {site.addr:#x}")
        return real(self, site, regs, quiet)

    monkeypatch.setattr(Registry, "_execute", crashing)
    step = ["--step", variant] if variant else []
    status, out, err = run_cli("fuzz", "--arch", arch, *step, "--func", "do_work", "--seed", "1", "--iterations", "2")
    lines = out.decode().splitlines()
    assert status == 1 and err == "", err
    assert lines[-1].startswith(f"fuzz {arch}: 2 placements, 2 failures")
    fails, repros = lines[0:-1:2], lines[1:-1:2]
    assert [f.split(":", 1)[0] for f in fails] == ["FAIL iteration 0", "FAIL iteration 1"]
    assert all("internal error: RuntimeError: planted crash at 0x" in f for f in fails), fails
    for line in repros:
        head = f"  reproduce: kprobesim fuzz --arch {arch} {firmware(arch)}{' --step ' + variant if variant else ''}"
        assert line.startswith(f"{head} --replay '"), line
        replay = line.split("--replay ")[1].strip("'")
        assert len(Placement.parse(replay)) == 1  # shrunk to the one probe that crashes
    if arch == "loongarch64":
        return
    status, out, _ = run_cli("fuzz", "--arch", arch, *step, "--replay", replay)
    assert status == 1 and out.decode().startswith("replay: FAIL: internal error: RuntimeError: planted crash")
    monkeypatch.undo()
    assert run_cli("fuzz", "--arch", arch, *step, "--replay", replay)[:2] == (0, b"replay: pass\n")
