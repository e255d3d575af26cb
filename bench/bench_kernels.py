"""The bundled kernels on each engine: loongarch64 on the P-code engine, and the same riscv64
kernel on Unicorn and on the P-code engine's riscv64 SLEIGH, in one run. Prints figures.

    python bench/bench_kernels.py [--repeat N]

Three figures per engine, each the run of ``Machine.run()`` (machine set-up and loading the
SLEIGH specification are not counted):

- first run: a new process with an empty translation cache on disk (a fresh machine, the
  first run ever): every block is decoded, interpreted in tier 0 and compiled when hot;
- disk cache: a new process after such a run (compiled code and decoded blocks come from
  the cache, see kprobesim/engine/pcode/diskcache.py);
- warm: a later machine in the same process (tests, fuzzing, compare).

Each is measured ``--repeat`` times; best and median are printed. Timings on a shared machine
vary by tens of percent from minute to minute, so the run starts and ends with a reference: a
plain Python loop (2,000,000 additions: 50-100 ms on this project's machines, the lower the
quieter).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "loongarch64 kernel, P-code": ("loongarch64", "pcode"),
    "riscv64 kernel, Unicorn": ("riscv64", "unicorn"),
    "riscv64 kernel, P-code": ("riscv64", "pcode"),
}


def _arch(name: str, engine: str):  # noqa: ANN202
    from kprobesim.arch import get_arch

    arch = get_arch(name)
    if engine == "pcode" and name != "loongarch64":
        from kprobesim.engine.pcode.engine import PcodeEngine

        arch = dataclasses.replace(arch, new_engine=lambda: PcodeEngine(name))
    return arch


def child(name: str, engine: str, runs: int) -> None:
    """Run the kernel ``runs`` times in this process; print instructions and seconds per run."""
    from kprobesim.image import Image
    from kprobesim.machine import Machine

    arch = _arch(name, engine)
    image = Image.load(ROOT / "firmware" / name / "kernel.elf")
    out = []
    for _ in range(runs):
        m = Machine(arch, image)
        t = time.perf_counter()
        status = m.run()
        dt = time.perf_counter() - t
        if status != 0:
            raise SystemExit(f"{name}: kernel exited {status}: {m.console[-300:]}")
        out.append((m.instructions, dt))
    print(json.dumps(out))


def spawn(name: str, engine: str, runs: int, cache: str) -> list[tuple[int, float]]:
    env = dict(os.environ, KPROBESIM_CACHE_DIR=cache)
    env.pop("KPROBESIM_CACHE", None)
    p = subprocess.run([sys.executable, __file__, "--child", name, engine, str(runs)],
                       capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return [tuple(x) for x in json.loads(p.stdout)]


def rate(samples: list[tuple[int, float]]) -> str:
    rates = sorted(n / dt / 1e6 for n, dt in samples)
    return f"{rates[-1]:6.2f} (median {statistics.median(rates):5.2f})"


def reference() -> float:
    """Milliseconds for a plain Python loop (best of 5): how fast this machine is right now."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        s = 0
        for j in range(2_000_000):
            s += j
        best = min(best, time.perf_counter() - t)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    print(f"reference loop: {reference():.0f} ms")
    print(f"M guest instructions/s, best of {args.repeat} (median)")
    print(f"{'':28s} {'insns':>7s}  {'first run':>20s}  {'disk cache':>20s}  {'warm':>20s}")
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (name, engine) in CONFIGS.items():
            first = [spawn(name, engine, 1, f"{tmp}/{label}-{i}")[0] for i in range(args.repeat)]
            cached = [spawn(name, engine, 1, f"{tmp}/{label}-0")[0] for _ in range(args.repeat)]
            warm = spawn(name, engine, args.repeat + 1, f"{tmp}/{label}-w")[1:]
            print(f"{label:28s} {first[0][0]:7d}  {rate(first)}  {rate(cached)}  {rate(warm)}")
            best[label] = max(n / dt for n, dt in warm)
    rv_pc, rv_uc = best["riscv64 kernel, P-code"], best["riscv64 kernel, Unicorn"]
    la = best["loongarch64 kernel, P-code"]
    print(f"warm: P-code/Unicorn on the riscv64 kernel {rv_pc / rv_uc:.3f}x; "
          f"loongarch64/riscv64 P-code {la / rv_pc:.2f}x")
    print(f"reference loop: {reference():.0f} ms")


if __name__ == "__main__":
    main()
