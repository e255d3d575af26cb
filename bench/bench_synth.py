"""Synthetic-code fuzzing throughput: sequences/s and probed runs/s per arch, and the speed-up
of resetting a machine from a snapshot over reloading one for every probed run.

    python bench/bench_synth.py [--count N] [--length L]
"""

from __future__ import annotations

import argparse
import random
import time

from kprobesim.fuzz.synth import SynthHarness, run_synthetic

CAMPAIGNS = (("riscv64", None), ("x86_64", "tf"), ("x86_64", "int3"), ("loongarch64", None))


def reset_speedup(arch: str, variant: str | None, runs: int, length: int) -> tuple[float, float]:
    """Seconds per probed run: (snapshot restore, reloading the machine each time)."""
    h = SynthHarness(arch, variant)
    fn = h.synth.generate(random.Random(1), length, h.base)
    addrs = [fn.starts[i % len(fn.starts)] for i in range(runs)]

    def probed(harness: SynthHarness, addr: int, restore: object) -> None:
        if restore is not None:
            harness.machine.restore(restore)
        if harness.machine.probes.classify(addr).kind.value != "rejected":
            harness.machine.kprobe(addr)
        harness.run()

    h.prepare(fn, random.Random(2))
    snap = h.machine.snapshot()
    t0 = time.perf_counter()
    for addr in addrs:
        probed(h, addr, snap)
    fast = (time.perf_counter() - t0) / runs
    t0 = time.perf_counter()
    for addr in addrs:
        fresh = SynthHarness(arch, variant)
        fresh.prepare(fn, random.Random(2))
        probed(fresh, addr, None)
    slow = (time.perf_counter() - t0) / runs
    return fast, slow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=40, help="sequences per arch")
    ap.add_argument("--length", type=int, default=12)
    ap.add_argument("--reload-runs", type=int, default=30)
    args = ap.parse_args()
    print(f"{'arch':<18}{'sequences/s':>12}{'probed runs/s':>15}{'restore ms':>12}{'reload ms':>11}{'speed-up':>10}")
    for arch, variant in CAMPAIGNS:
        report = run_synthetic(arch, 1, args.count, args.length, variant=variant)
        runs = report.probes + report.sequences  # probed runs plus the references
        fast, slow = reset_speedup(arch, variant, args.reload_runs, args.length)
        name = arch + (f"/{variant}" if variant else "")
        print(
            f"{name:<18}{report.sequences / report.elapsed:>12.1f}{runs / report.elapsed:>15.0f}"
            f"{fast * 1e3:>12.2f}{slow * 1e3:>11.2f}{slow / fast:>9.1f}x"
            + (f"  ({len(report.failures)} failures)" if report.failures else "")
        )


if __name__ == "__main__":
    main()
