"""Guest instructions per second for each bundled kernel, the cost of probe hits, and the
engine's own floor measured in the same run. Prints figures, asserts nothing.

    python bench/bench_run.py [ARCH ...] [--rounds N] [--step tf|int3] [--no-ebpf]

Per arch (x86_64: per step variant):

- ``bare``: the kernel unprobed (M guest instructions/s);
- ``cold probes``: 100 armed probes on instructions the kernel never executes (unhit probes
  must cost nothing);
- the floor, on the same machine: ``emu_start restart`` (one ``emu_start`` running one
  instruction) and ``ranged code hook`` (a code hook on ``fib``'s first instruction reading two
  registers, per call);
- ``kprobe hit``: an empty Python pre-handler on ``fib`` (2296 hits a run);
- ``kretprobe hit``: an empty return handler on ``fib``, its entry and its return;
- ``eBPF hit``: the 45-instruction program of ``bench/bench_bpf_probe.py`` on ``fib``,
  translated (needs ``python -m ziglang``; ``--no-ebpf`` leaves it out);
- ``arm N probes``: a probe on every probeable instruction of every function, the time to
  arm and to disarm them all (best of 3), and ``whole image armed``: the run with all of them.

How the hit costs are measured, on a machine shared with other work: every run is a whole run
of the kernel on a new machine (the image is parsed once), timed in CPU time of this process
(``time.process_time``) after a ``gc.collect()``. The runs are done in rounds (21 by default):
each round runs the bare kernel and every probed variant once, one after another (the order
reversed every other round). On a shared virtual machine a run's CPU time is not one figure:
the same bare x86_64 run takes ~21 ms or ~33 ms on this project's 2-core machine, in
stretches, as other work comes and goes on the same physical core, so a difference of two
runs swings by more than the hits cost. Each round therefore gives the probed run's cost as a
fraction of its own bare run (probed / bare - 1: the same in a slow stretch as in a fast one,
as long as a stretch slows both alike); a hit's cost is the median of those fractions over the
rounds, times the fastest bare run, over the hits: what the hit costs at the speed of the
machine's quiet stretches. Beside it, as measured: the median over the rounds of (probed run
- bare run of the same round) / hits, and the middle half of those per-round figures (the
interquartile range), which say how settled the machine was. Each hit cost is also given as a
multiple of the restart and of the ranged hook measured in the same run. The load average is
printed at the start and the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from unicorn import UC_HOOK_CODE  # noqa: E402

from kprobesim.arch import ARCH_NAMES, get_arch  # noqa: E402
from kprobesim.image import Image, load_image  # noqa: E402
from kprobesim.machine import Machine  # noqa: E402
from kprobesim.probes.insn import Kind  # noqa: E402

CLOCK = time.process_time
TARGET = "fib"
#: What a round runs: a setup per kind (None: the bare kernel), returning how to count its events.
Setup = Callable[[Machine], Callable[[], int]] | None


def probeable(m: Machine) -> list[int]:
    """Every accepted instruction boundary of every kernel function of the image."""
    reg = m.probes
    sites = []
    for s in m.image.symbols:
        if not (s.is_func and s.size) or s.addr in reg.blacklist:
            continue
        if reg.user is not None and reg.user.contains(s.addr):
            continue  # the user program's text takes uprobes, not kprobes
        for addr in reg.decode.boundaries(reg.original(s.addr, s.size), s.addr):
            if reg.classify(addr).kind is not Kind.REJECT:
                sites.append(addr)
    return sites


def _cold_sites(path: Path, count: int) -> list[int]:
    """Probeable instruction boundaries the kernel never executes (from a reference run)."""
    ref = Machine.load(path)
    lo, hi = ref.image.span
    executed: set[int] = set()
    ref.engine.hook_add(UC_HOOK_CODE, lambda uc, addr, size, ud: executed.add(addr), None, lo, hi)
    ref.run()
    return [a for a in probeable(Machine.load(path)) if a not in executed][:count]


def _restart_cost(path: Path, repeat: int) -> float:
    """One ``emu_start`` that runs one instruction, on the loaded kernel's machine (best of
    ``repeat`` batches of 2000)."""
    m = Machine.load(path)
    engine, entry, until = m.engine, m.image.entry, m.arch.until
    n, best = 2000, float("inf")
    for _ in range(repeat):
        gc.collect()
        t = CLOCK()
        for _ in range(n):
            engine.emu_start(entry, until, 0, 1)
        best = min(best, (CLOCK() - t) / n)
    return best


def _timed(image: Image, step: str | None, setup: Setup) -> tuple[float, int, Machine]:
    """One run of the kernel on a fresh machine (of the image parsed once): (CPU seconds,
    events counted, the machine)."""
    m = Machine(get_arch(image.arch or ""), image, step_variant=step)
    events = setup(m) if setup is not None else (lambda: 0)
    gc.collect()
    t = CLOCK()
    m.run()
    return CLOCK() - t, events(), m


def _setups(arch: str, path: Path, bpf: Path | None) -> dict[str, Setup]:
    """The probed variants a round runs beside the bare kernel."""
    sites = _cold_sites(path, 100)

    def cold(m: Machine) -> Callable[[], int]:
        for a in sites:
            m.kprobe(a)
        return lambda: len(sites)

    def hook(m: Machine) -> Callable[[], int]:
        calls = [0]
        engine, sp, pc = m.engine, m.arch.sp_reg, m.arch.pc_reg

        def cb(uc: object, addr: int, size: int, ud: object) -> None:
            calls[0] += 1
            engine.reg_read(sp)
            engine.reg_read(pc)

        addr = m.image.symbol(TARGET).addr
        engine.hook_add(UC_HOOK_CODE, cb, None, addr, addr)
        return lambda: calls[0]

    def kprobe(m: Machine) -> Callable[[], int]:
        kp = m.kprobe(TARGET, pre=lambda p, r: 0)
        return lambda: kp.hits

    def kretprobe(m: Machine) -> Callable[[], int]:
        rp = m.kretprobe(TARGET, handler=lambda i, r: None, maxactive=64)
        return lambda: rp.hits

    setups: dict[str, Setup] = {"cold": cold, "hook": hook, "kprobe": kprobe, "kretprobe": kretprobe}
    if bpf is not None:
        from kprobesim.ebpf.loader import load

        def ebpf(m: Machine) -> Callable[[], int]:
            prog = load(m, bpf, engine="translate").programs["bench"]
            return lambda: prog.hits

        setups["ebpf"] = ebpf
    return setups


class Rounds:
    """Paired runs: per round, the bare kernel and each probed variant, one after another."""

    def __init__(self, image: Image, step: str | None, setups: dict[str, Setup], rounds: int) -> None:
        self.bare: list[float] = []
        self.runs: dict[str, list[tuple[float, int]]] = {k: [] for k in setups}
        self.instructions: dict[str, int] = {}
        kinds: list[str | None] = [None, *setups]
        for r in range(rounds):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                t, events, m = _timed(image, step, setups[kind] if kind is not None else None)
                if kind is None:
                    self.bare.append(t)
                    self.instructions["bare"] = m.instructions
                else:
                    self.runs[kind].append((t, events))
                    self.instructions[kind] = m.instructions

    def per_event(self, kind: str) -> tuple[float, float, float, float, int]:
        """The cost per event at the fastest bare run's speed (see the module's docstring), the
        median over the rounds of the cost over that round's bare run and its interquartile
        range (the middle half of the rounds), and the events of a run."""
        runs = self.runs[kind]
        events = max(runs[-1][1], 1)
        pairs = list(zip(runs, self.bare, strict=True))
        costs = [(t - bare) / events for (t, _), bare in pairs]
        q1, _, q3 = statistics.quantiles(costs, n=4)
        extra = statistics.median(t / bare - 1 for (t, _), bare in pairs)  # of a bare run, per round
        return extra * min(self.bare) / events, statistics.median(costs), q1, q3, events

    def slowdown(self, kind: str) -> float:
        """Median over the rounds of (probed run / bare run of the same round)."""
        return statistics.median(t / bare for (t, _), bare in zip(self.runs[kind], self.bare, strict=True))


def _row(label: str, what: str, value: str, note: str = "") -> None:
    print(f"{label:12s} {what:24s} {value:>16s}  {note}", flush=True)


def _arming(path: Path, step: str | None) -> tuple[list[int], float, float]:
    """Probe sites of the whole image; best of 3 times to arm and to disarm them all."""
    every: list[int] = []
    arm = disarm = float("inf")
    for _ in range(3):
        m = Machine.load(path, step_variant=step)
        every = probeable(m)
        gc.collect()
        t = CLOCK()
        probes = [m.kprobe(a) for a in every]
        arm = min(arm, CLOCK() - t)
        t = CLOCK()
        for p in probes:
            p.unregister()
        disarm = min(disarm, CLOCK() - t)
    return every, arm, disarm


def bench(arch: str, rounds: int, step: str | None, bpf: Path | None) -> None:
    path = ROOT / "firmware" / arch / "kernel.elf"
    if not path.exists():
        print(f"{arch:12s} no firmware")
        return
    label = f"{arch}/{step}" if step else arch
    setups = _setups(arch, path, bpf)
    image = load_image(path)
    for setup in (None, *setups.values()):  # warm-up: engine caches (the P-code engine's on disk)
        _timed(image, step, setup)
    restart = _restart_cost(path, 5)
    got = Rounds(image, step, setups, rounds)
    bare = statistics.median(got.bare)
    insns = got.instructions["bare"]
    spread = f"{min(got.bare) * 1e3:.1f}-{max(got.bare) * 1e3:.1f}"
    _row(label, "bare", f"{insns / bare / 1e6:.2f} M insn/s",
         f"({insns} insns, median {bare * 1e3:.1f} ms of {rounds} rounds, {spread})")  # fmt: skip
    cold = got.slowdown("cold")
    _row(label, "100 cold probes", f"{insns / (bare * cold) / 1e6:.2f} M insn/s", f"({1 / cold:.1%} of bare)")
    _row(label, "emu_start restart", f"{restart * 1e6:.1f} us", "(floor: one emu_start of one instruction)")
    hook, med, lo, hi, calls = got.per_event("hook")
    _row(label, "ranged code hook", f"{hook * 1e6:.1f} us",
         f"(floor: 2 register reads, {calls} calls; paired {med * 1e6:.1f}, middle half "
         f"{lo * 1e6:.1f}-{hi * 1e6:.1f}; {hook / restart:.1f}x restart)")  # fmt: skip
    names = {"kprobe": "kprobe hit", "kretprobe": "kretprobe hit", "ebpf": "eBPF hit (translated)"}
    for kind, name in names.items():
        if kind not in got.runs:
            continue
        per, med, lo, hi, hits = got.per_event(kind)
        same = "" if got.instructions[kind] == insns else ", DIFFERENT guest instructions"
        _row(label, name, f"{per * 1e6:.1f} us",
             f"({hits} hits; paired {med * 1e6:.1f}, middle half {lo * 1e6:.1f}-{hi * 1e6:.1f}; "
             f"{per / restart:.1f}x restart, {per / hook:.1f}x hook{same})")  # fmt: skip
    every, arm, disarm = _arming(path, step)
    each = arm / len(every)
    _row(label, f"arm {len(every)} probes", f"{arm * 1e3:.0f} ms",
         f"({each * 1e6:.0f} us a probe: 10,000 in {each * 1e7:.0f} ms; disarm {disarm * 1e3:.0f} ms, "
         f"10,000 in {disarm / len(every) * 1e7:.0f} ms)")  # fmt: skip
    everywhere: list = []

    def arm_all(m: Machine) -> Callable[[], int]:
        everywhere[:] = [m.kprobe(a) for a in every]
        return lambda: sum(p.hits for p in everywhere)

    t_all, total, m_all = _timed(image, step, arm_all)
    same = "same" if m_all.instructions == insns else "DIFFERENT"
    _row(label, "whole image armed", f"{(t_all - bare) / total * 1e6:.1f} us/hit",
         f"({total} hits, {t_all * 1e3:.0f} ms, {same} instructions)")  # fmt: skip


def _ebpf_object(arch: str, tmp: Path) -> Path | None:
    """bench_bpf_probe.py's program compiled for ``arch``, or None (with a line saying why)."""
    try:
        from bench_bpf_probe import compile_program

        return compile_program(arch, tmp)
    except Exception as e:  # no ziglang, or it failed
        print(f"{arch:12s} eBPF hit skipped: cannot compile bench_bpf_probe.py's program: {type(e).__name__}: {e}")
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", nargs="*", default=list(ARCH_NAMES))
    ap.add_argument("--rounds", type=int, default=21, help="paired rounds (default 21)")
    ap.add_argument("--step", choices=("tf", "int3"), help="x86_64 step variant (default: both)")
    ap.add_argument("--no-ebpf", action="store_true", help="leave out the eBPF program's hit")
    args = ap.parse_args()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            bpf = None if args.no_ebpf else _ebpf_object(arch, Path(tmp))
            steps = [args.step] if args.step else ["tf", "int3"] if arch == "x86_64" else [None]
            for step in steps:
                try:
                    bench(arch, args.rounds, step if arch == "x86_64" else None, bpf)
                except Exception as e:  # an arch whose engine is not in yet
                    print(f"{arch:12s} skipped: {type(e).__name__}: {e}")
    print("load average at end:   {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
