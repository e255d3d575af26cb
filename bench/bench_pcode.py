"""Benchmark the P-code engine: guest instructions per second on loop- and call-heavy code.

Builds a small bare-metal program (recursive fib + a byte-checksum loop) with ziglang's clang for
loongarch64 (and riscv64), loads it at 0x200000 with a 64 KiB stack, and runs it to completion.
Prints instructions/s for the P-code engine on loongarch64 and, for riscv64, the P-code engine
next to Unicorn (the same program, the same instruction count) as a ratio.

    python bench/bench_pcode.py [--repeat N] [--fib N] [--rounds N]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

C_SRC = r"""
typedef unsigned long u64;
static long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
static unsigned char buf[4096];
static u64 checksum(int rounds) {
    u64 h = 1469598103934665603ull;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < 4096; i++) {
            buf[i] = (unsigned char)(buf[i] + i + r);
            h = (h ^ buf[i]) * 1099511628211ull;
        }
    return h;
}
volatile u64 result[2];
volatile long params[2] = {FIB_N, ROUNDS};
void kmain(void) {
    result[0] = fib(params[0]);
    result[1] = checksum((int)params[1]);
}
"""
START = {
    "loongarch64": """
    .section .text.start
    .globl _start
_start:
    la.abs $sp, stack_top
    bl kmain
    .globl done
done:
    b done
    .bss
    .align 4
    .space 65536
stack_top:
""",
    "riscv64": """
    .section .text.start
    .globl _start
_start:
    lui sp, %hi(stack_top)
    addi sp, sp, %lo(stack_top)
    call kmain
    .globl done
done:
    j done
    .bss
    .align 4
    .space 65536
stack_top:
""",
}
LINK = """
ENTRY(_start)
SECTIONS {
  . = 0x200000;
  .text : { *(.text.start) *(.text*) }
  .rodata : { *(.rodata*) *(.srodata*) }
  .data : { *(.data*) *(.sdata*) }
  .bss : { *(.bss*) *(.sbss*) *(COMMON) }
}
"""
TARGET = {
    "loongarch64": ["-target", "loongarch64-freestanding", "-mcpu=generic_la64"],
    "riscv64": ["-target", "riscv64-freestanding", "-mcpu=generic_rv64+m+a+c",
                "-mcmodel=medlow"],
}


def build(arch: str, fib_n: int, rounds: int, out: Path) -> Path:
    src = C_SRC.replace("FIB_N", str(fib_n)).replace("ROUNDS", str(rounds))
    tag = hashlib.sha256((arch + src + START[arch] + LINK).encode()).hexdigest()[:12]
    elf = out / f"bench_{arch}_{tag}.elf"
    if elf.exists():
        return elf
    (out / "bench.c").write_text(src)
    (out / f"start_{arch}.S").write_text(START[arch])
    (out / "link.ld").write_text(LINK)
    cmd = [sys.executable, "-m", "ziglang", "cc", *TARGET[arch], "-O2", "-nostdlib", "-static",
           "-ffreestanding", "-fno-builtin", "-fno-asynchronous-unwind-tables",
           "-fno-unwind-tables", "-T", str(out / "link.ld"), "-o", str(elf),
           str(out / f"start_{arch}.S"), str(out / "bench.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"build failed for {arch}:\n{r.stderr}")
    return elf


def load(elf: Path) -> tuple[list[tuple[int, bytes]], int, dict[str, int]]:
    import lief

    b = lief.parse(str(elf))
    segs = [(s.virtual_address, bytes(s.content)) for s in b.segments
            if s.type == lief.ELF.Segment.TYPE.LOAD]
    return segs, b.entrypoint, {s.name: s.value for s in b.symbols}


def expected(fib_n: int, rounds: int) -> tuple[int, int]:
    a, b = 0, 1
    for _ in range(fib_n):
        a, b = b, a + b
    buf = [0] * 4096
    h = 1469598103934665603
    m = (1 << 64) - 1
    for r in range(rounds):
        for i in range(4096):
            buf[i] = (buf[i] + i + r) & 0xFF
            h = ((h ^ buf[i]) * 1099511628211) & m
    return a, h


def run(engine: object, elf: Path, pc_reg: int) -> tuple[int, float, tuple[int, int]]:
    segs, entry, sym = load(elf)
    engine.mem_map(0, 0x1000000)  # type: ignore[attr-defined]
    for addr, data in segs:
        engine.mem_write(addr, data)  # type: ignore[attr-defined]
    count = [0]
    t = time.perf_counter()
    engine.emu_start(entry, sym["done"])  # type: ignore[attr-defined]
    dt = time.perf_counter() - t
    res = engine.mem_read(sym["result"], 16)  # type: ignore[attr-defined]
    got = (int.from_bytes(res[:8], "little"), int.from_bytes(res[8:], "little"))
    n = engine.icount() if hasattr(engine, "icount") else count[0]
    return n, dt, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fib", type=int, default=22)
    ap.add_argument("--rounds", type=int, default=24)
    args = ap.parse_args()
    from kprobesim.engine.pcode import PcodeEngine
    from kprobesim.engine.pcode import loongarch_const as K

    want = expected(args.fib, args.rounds)
    with tempfile.TemporaryDirectory() as td:
        out = Path(td)
        elf = build("loongarch64", args.fib, args.rounds, out)
        rates = []
        for _ in range(max(args.repeat, 2)):
            n, dt, got = run(PcodeEngine("loongarch64"), elf, K.LA_REG_PC)
            assert got == want, f"wrong result {got} != {want}"
            rates.append(n / dt)
        print(f"loongarch64 pcode : {n:>10,} instructions  {max(rates[1:]) / 1e6:6.2f} M "
              f"instructions/s  (first run, translating: {rates[0] / 1e6:.2f} M/s)")

        try:
            rv = build("riscv64", args.fib, args.rounds, out)
            PcodeEngine("riscv64")
        except Exception as exc:  # noqa: BLE001 - optional comparison
            print(f"riscv64 comparison skipped: {exc}")
            return
        from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, Uc
        from unicorn.riscv_const import UC_RISCV_REG_PC

        rates = []
        for _ in range(max(args.repeat, 2)):
            n_p, dt, got = run(PcodeEngine("riscv64"), rv, UC_RISCV_REG_PC)
            assert got == want, f"riscv64 pcode: wrong result {got} != {want}"
            rates.append(n_p / dt)
        best_p = max(rates[1:])
        best_u = 0.0
        for _ in range(args.repeat):
            uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
            segs, entry, sym = load(rv)
            uc.mem_map(0, 0x1000000)
            for addr, data in segs:
                uc.mem_write(addr, data)
            t = time.perf_counter()
            uc.emu_start(entry, sym["done"])
            dt = time.perf_counter() - t
            res = uc.mem_read(sym["result"], 16)
            got = (int.from_bytes(res[:8], "little"), int.from_bytes(res[8:], "little"))
            assert got == want, f"riscv64 unicorn: wrong result {got} != {want}"
            best_u = max(best_u, n_p / dt)
        print(f"riscv64     pcode : {n_p:>10,} instructions  {best_p / 1e6:6.2f} M "
              f"instructions/s  (first run, translating: {rates[0] / 1e6:.2f} M/s)")
        print(f"riscv64   unicorn : {n_p:>10,} instructions  {best_u / 1e6:6.2f} M instructions/s"
              f"  (pcode = {best_p / best_u:.4f} x unicorn)")


if __name__ == "__main__":
    main()
