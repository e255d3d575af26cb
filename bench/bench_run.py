"""Guest instructions per second for each bundled kernel: bare, with 100 armed but never-hit
probes, and the cost of one probe hit and one kretprobe hit. Prints figures, asserts nothing.

    python bench/bench_run.py [ARCH ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from unicorn import UC_HOOK_CODE

from kprobesim.arch import ARCH_NAMES
from kprobesim.machine import Machine
from kprobesim.probes.insn import Kind

ROOT = Path(__file__).resolve().parent.parent


def _run(path: Path, setup=None) -> tuple[float, Machine]:
    m = Machine.load(path)
    if setup:
        setup(m)
    t = time.perf_counter()
    m.run()
    return time.perf_counter() - t, m


def _best(path: Path, repeat: int, setup=None) -> tuple[float, Machine]:
    runs = [_run(path, setup) for _ in range(repeat)]
    return min(runs, key=lambda r: r[0])


def _cold_sites(m: Machine, count: int) -> list[int]:
    """Probeable instruction boundaries the kernel never executes (from a reference run)."""
    ref = Machine.load(m.image.path)
    lo, hi = m.image.span
    executed: set[int] = set()
    ref.engine.hook_add(UC_HOOK_CODE, lambda uc, addr, size, ud: executed.add(addr), None, lo, hi)
    ref.run()
    reg = m.probes
    sites = []
    for s in m.image.symbols:
        if not (s.is_func and s.size) or s.addr in reg.blacklist:
            continue
        for addr in reg.decode.boundaries(reg.original(s.addr, s.size), s.addr):
            if addr not in executed and reg.classify(addr).kind is not Kind.REJECT:
                sites.append(addr)
    return sites[:count]


def bench(arch: str, repeat: int) -> None:
    path = ROOT / "firmware" / arch / "kernel.elf"
    if not path.exists():
        print(f"{arch:12s} no firmware")
        return
    bare, m = _best(path, repeat)
    insns = m.instructions
    print(f"{arch:12s} bare            {insns / bare / 1e6:8.2f} M insn/s  ({insns} insns, {bare * 1e3:.1f} ms)")

    sites = _cold_sites(m, 100)

    def cold(m: Machine) -> None:
        for addr in sites:
            m.kprobe(addr)

    t, _ = _best(path, repeat, cold)
    print(f"{arch:12s} {len(sites)} cold probes {insns / t / 1e6:8.2f} M insn/s  ({bare / t:.1%} of bare)")

    def hot(m: Machine) -> None:
        m.kprobe("fib", pre=lambda p, r: 0)

    t, m2 = _best(path, repeat, hot)
    hits = m2.probes.sites[m2.image.symbol("fib").addr].probes[0].hits
    print(f"{arch:12s} kprobe hit      {(t - bare) / hits * 1e6:8.1f} us/hit     ({hits} hits on fib)")

    def ret(m: Machine) -> None:
        m.kretprobe("fib", handler=lambda i, r: None, maxactive=64)

    t, m3 = _best(path, repeat, ret)
    rhits = m3.probes.kretprobes[0].hits
    print(f"{arch:12s} kretprobe hit   {(t - bare) / rhits * 1e6:8.1f} us/hit     ({rhits} returns of fib)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="*", default=list(ARCH_NAMES))
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    for arch in args.arch:
        try:
            bench(arch, args.repeat)
        except Exception as e:  # an arch whose engine is not in yet
            print(f"{arch:12s} skipped: {e}")


if __name__ == "__main__":
    main()
