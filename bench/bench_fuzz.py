"""Placement-fuzzing throughput per arch, and what snapshot reset saves over reloading.

    python bench/bench_fuzz.py [ARCH ...] [--iterations N]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from kprobesim.fuzz.placement import PlacementFuzzer
from kprobesim.machine import Machine

ROOT = Path(__file__).resolve().parent.parent


def bench(arch: str, iterations: int) -> None:
    image = ROOT / "firmware" / arch / "kernel.elf"
    fz = PlacementFuzzer(image)
    placements = [fz.draw(random.Random(f"bench:{i}")) for i in range(iterations)]
    t = time.perf_counter()
    for p in placements:
        fz.check(p)
    dt = time.perf_counter() - t
    print(f"{arch:12s} {iterations / dt:8.1f} placements/s")

    t = time.perf_counter()
    for _ in range(iterations):
        fz.m.restore(fz.snap)
    reset = (time.perf_counter() - t) / iterations
    t = time.perf_counter()
    for _ in range(iterations):
        Machine.load(image)
    reload = (time.perf_counter() - t) / iterations
    print(f"{arch:12s} reset {reset * 1e3:7.2f} ms   reload {reload * 1e3:7.2f} ms   speed-up {reload / reset:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="*", default=["riscv64", "x86_64", "loongarch64"])
    ap.add_argument("--iterations", type=int, default=40)
    args = ap.parse_args()
    for arch in args.arch:
        try:
            bench(arch, args.iterations)
        except Exception as e:  # an arch whose engine is not in yet
            print(f"{arch:12s} skipped: {e}")


if __name__ == "__main__":
    main()
