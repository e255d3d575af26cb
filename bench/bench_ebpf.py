"""eBPF instructions per second, interpreter vs translator, on the same programs. Prints figures,
asserts nothing.

    python bench/bench_ebpf.py [--seconds S]
"""

from __future__ import annotations

import argparse
import time

from kprobesim.ebpf.conformance import HELPERS, conformance_dir, parse
from kprobesim.ebpf.vm import VM

LOOP = """
    # sum of i*i for i < 20000, with a stack spill every iteration
    mov %r0, 0
    mov %r1, 0
loop:
    mov %r2, %r1
    mul %r2, %r1
    add %r0, %r2
    stxdw [%r10-8], %r0
    ldxdw %r3, [%r10-8]
    xor %r3, %r1
    add %r1, 1
    jlt %r1, 20000, loop
    exit
"""

CHECKSUM = """
    # 16-bit ones' complement sum over the 1500-byte ctx, 4 passes, plus a byte histogram
    mov %r6, %r1
    mov %r0, 0
    mov %r8, 0
pass:
    mov %r2, 0
bytes:
    mov %r3, %r6
    add %r3, %r2
    ldxh %r4, [%r3+0]
    add %r0, %r4
    ldxb %r5, [%r3+0]
    and %r5, 63
    lsh %r5, 3
    mov %r7, %r10
    add %r7, -512
    add %r7, %r5
    lock add [%r7+0], %r4
    add %r2, 2
    jlt %r2, 1498, bytes
    add %r8, 1
    jlt %r8, 4, pass
    mov %r1, %r0
    rsh %r1, 16
    and %r0, 0xffff
    add %r0, %r1
    exit
"""

PRIME_BIG = """
    # is 100003 prime? trial division (the conformance prime.data with a bigger number)
    mov %r1, 100003
    mov %r0, 0x1
    mov %r2, 0x2
    jgt %r1, 0x2, L3
    ja exit
L2:
    add %r2, 0x1
    mov %r0, 0x1
    jge %r2, %r1, exit
L3:
    mov %r3, %r1
    div %r3, %r2
    mul %r3, %r2
    mov %r4, %r1
    sub %r4, %r3
    mov %r0, 0x0
    jne %r4, 0x0, L2
    exit
"""

CALLS = """
    # bpf-to-bpf and helper calls in a loop
    mov %r6, 0
    mov %r7, 0
loop:
    mov %r1, %r6
    call local f
    add %r7, %r0
    mov %r1, %r6
    add %r1, 1
    call 5
    add %r6, 1
    jlt %r6, 3000, loop
    mov %r0, %r7
    exit
f:
    mov %r0, %r1
    lsh %r0, 1
    exit
"""


def _programs() -> list[tuple[str, object, bytes | None]]:
    progs: list[tuple[str, object, bytes | None]] = [
        ("loop (ALU + stack)", LOOP, None),
        ("checksum (ctx loads, atomics)", CHECKSUM, bytes(range(256)) * 6),
        ("prime 100003 (div/mul)", PRIME_BIG, None),
        ("calls (local + helper)", CALLS, None),
    ]
    prime = conformance_dir() / "prime.data"
    if prime.exists():
        progs.append(("conformance prime.data", parse(prime.read_text()).insns, None))
    return progs


def _measure(vm: VM, ctx: bytes | None, engine: str, seconds: float) -> tuple[float, int]:
    """(instructions per second, instructions per run), best of repeated runs."""
    vm.run(ctx, engine=engine)  # warm up
    per_run = vm.last_count or 0
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        t = time.perf_counter()
        runs = 0
        while runs == 0 or time.perf_counter() - t < seconds / 5:
            vm.run(ctx, engine=engine)
            runs += 1
        best = max(best, runs * per_run / (time.perf_counter() - t))
        if time.perf_counter() > deadline:
            return best, per_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per program and engine")
    args = ap.parse_args()
    print(f"{'program':32} {'insns/run':>10} {'interp insn/s':>14} {'translated insn/s':>18} "
          f"{'ratio':>6} {'compile ms':>10}")
    ratios = []
    for name, prog, ctx in _programs():
        t = time.perf_counter()
        vm = VM(prog, HELPERS, budget=10_000_000)  # type: ignore[arg-type]
        compile_ms = (time.perf_counter() - t) * 1000
        interp, n = _measure(vm, ctx, "interp", args.seconds)
        trans, _ = _measure(vm, ctx, "translate", args.seconds)
        ratios.append(trans / interp)
        print(f"{name:32} {n:>10} {interp / 1e6:>11.2f} M {trans / 1e6:>15.2f} M "
              f"{trans / interp:>5.1f}x {compile_ms:>10.2f}")
    geo = 1.0
    for r in ratios:
        geo *= r
    print(f"geometric mean speed-up of the translator: {geo ** (1 / len(ratios)):.1f}x")


if __name__ == "__main__":
    main()
