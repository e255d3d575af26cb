"""Guest instructions per second for each bundled kernel, the cost of probe hits, and the
engine's own floor measured in the same run. Prints figures, asserts nothing.

    python bench/bench_run.py [ARCH ...] [--repeat N] [--step tf|int3]

Per arch:

- ``bare``: the kernel unprobed (M guest instructions/s);
- ``cold probes``: 100 armed probes on instructions the kernel never executes (unhit probes
  must cost nothing);
- ``kprobe hit`` / ``kretprobe hit``: an empty Python handler on ``fib`` (2296 calls), cost per
  hit over the bare run (a kretprobe hit is its entry and its return);
- the floor, on the same machine: ``emu_start restart`` (one ``emu_start`` running one
  instruction) and ``ranged code hook`` (a code hook on ``fib``'s first instruction reading two
  registers, cost per call over the bare run); each hit cost is also given as a multiple of
  the restart;
- ``whole image armed``: a probe on every probeable instruction of every function, with the
  time to arm and disarm them all, the hits and the cost per hit of that run.

Times are CPU time of this process (``time.process_time``), best of ``--repeat`` runs, each
run next to a bare one, and every cost is taken against the best bare run: on a machine shared
with other work that is far steadier than wall time (on an idle machine the two agree). Hit
costs are also given as multiples of the restart and of the ranged hook.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from unicorn import UC_HOOK_CODE  # noqa: E402

from kprobesim.arch import ARCH_NAMES  # noqa: E402
from kprobesim.machine import Machine  # noqa: E402
from kprobesim.probes.insn import Kind  # noqa: E402

CLOCK = time.process_time
TARGET = "fib"


def _run(path: Path, step: str | None, setup: Callable[[Machine], object] | None = None) -> tuple[float, Machine]:
    m = Machine.load(path, step_variant=step)
    if setup:
        setup(m)
    t = CLOCK()
    m.run()
    return CLOCK() - t, m


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
    """One ``emu_start`` that runs one instruction, on the loaded kernel's machine."""
    m = Machine.load(path)
    engine, entry, until = m.engine, m.image.entry, m.arch.until
    n, best = 2000, float("inf")
    for _ in range(repeat):
        t = CLOCK()
        for _ in range(n):
            engine.emu_start(entry, until, 0, 1)
        best = min(best, (CLOCK() - t) / n)
    return best


def _row(arch: str, what: str, value: str, note: str = "") -> None:
    print(f"{arch:12s} {what:24s} {value:>16s}  {note}")


def bench(arch: str, repeat: int, step: str | None) -> None:
    path = ROOT / "firmware" / arch / "kernel.elf"
    if not path.exists():
        print(f"{arch:12s} no firmware")
        return
    label = f"{arch}/{step}" if step else arch
    _run(path, step)  # warm-up (engine caches, imports)
    bares: list[float] = []

    def paired(setup: Callable[[Machine], object] | None) -> tuple[float, Machine]:
        """Best of ``repeat`` runs with ``setup``, each next to a bare run: every cost below is
        taken against the best bare run of all, so a busy moment cannot make it negative."""
        runs = []
        for _ in range(repeat):
            bares.append(_run(path, step)[0])
            runs.append(_run(path, step, setup))
        return min(runs, key=lambda r: r[0])

    _, m = paired(None)
    insns = m.instructions

    sites = _cold_sites(path, 100)
    t_cold, _ = paired(lambda m: [m.kprobe(a) for a in sites])
    restart = _restart_cost(path, repeat)
    calls = [0]

    def hook(m: Machine) -> None:
        sym = m.image.symbol(TARGET)
        sp, pc = m.arch.sp_reg, m.arch.pc_reg
        engine = m.engine

        def cb(uc: object, addr: int, size: int, ud: object) -> None:
            calls[0] += 1
            engine.reg_read(sp)
            engine.reg_read(pc)

        engine.hook_add(UC_HOOK_CODE, cb, None, sym.addr, sym.addr)

    t_hook, _ = paired(hook)
    hook_calls = calls[0] / repeat
    t_kp, m2 = paired(lambda m: m.kprobe(TARGET, pre=lambda p, r: 0))
    hits = m2.probes.sites[m2.image.symbol(TARGET).addr].probes[0].hits
    t_kr, m3 = paired(lambda m: m.kretprobe(TARGET, handler=lambda i, r: None, maxactive=64))
    rhits = m3.probes.kretprobes[0].hits

    whole = Machine.load(path, step_variant=step)
    every = probeable(whole)
    t0 = CLOCK()
    probes = [whole.kprobe(a) for a in every]
    arm = CLOCK() - t0
    t0 = CLOCK()
    for p in probes:
        p.unregister()
    disarm = CLOCK() - t0
    everywhere: list = []

    def arm_all(m: Machine) -> None:
        everywhere[:] = [m.kprobe(a) for a in every]

    t_all, m4 = paired(arm_all)
    total = sum(p.hits for p in everywhere)

    bare = min(bares)
    hook_cost = (t_hook - bare) / hook_calls
    _row(label, "bare", f"{insns / bare / 1e6:.2f} M insn/s", f"({insns} insns, {bare * 1e3:.1f} ms)")
    _row(label, f"{len(sites)} cold probes", f"{insns / t_cold / 1e6:.2f} M insn/s", f"({bare / t_cold:.1%} of bare)")
    _row(label, "emu_start restart", f"{restart * 1e6:.1f} us", "(floor: one emu_start of one instruction)")
    ratio = hook_cost / restart if restart else 0.0
    _row(label, "ranged code hook", f"{hook_cost * 1e6:.1f} us", f"(floor: 2 register reads, {ratio:.1f}x restart)")
    per = (t_kp - bare) / hits
    _row(
        label, "kprobe hit", f"{per * 1e6:.1f} us",
        f"({hits} hits on {TARGET}, {per / restart:.1f}x restart, {per / hook_cost:.1f}x hook)",
    )  # fmt: skip
    per = (t_kr - bare) / rhits
    _row(
        label, "kretprobe hit", f"{per * 1e6:.1f} us",
        f"({rhits} returns of {TARGET}, {per / restart:.1f}x restart, {per / hook_cost:.1f}x hook)",
    )  # fmt: skip
    each = arm / len(every)
    _row(
        label, f"arm {len(every)} probes", f"{arm * 1e3:.0f} ms",
        f"({each * 1e6:.0f} us a probe: 10,000 in {each * 1e4 * 1e3:.0f} ms; disarm {disarm * 1e3:.0f} ms)",
    )  # fmt: skip
    _row(
        label,
        "whole image armed",
        f"{(t_all - bare) / total * 1e6:.1f} us/hit",
        f"({total} hits, {t_all * 1e3:.0f} ms, {m4.instructions == insns and 'same' or 'DIFFERENT'} instructions)",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", nargs="*", default=list(ARCH_NAMES))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--step", choices=("tf", "int3"), help="x86_64 step variant (default: both)")
    args = ap.parse_args()
    for arch in args.arch:
        steps = [args.step] if args.step else ["tf", "int3"] if arch == "x86_64" else [None]
        for step in steps:
            try:
                bench(arch, args.repeat, step if arch == "x86_64" else None)
            except Exception as e:  # an arch whose engine is not in yet
                print(f"{arch:12s} skipped: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
