"""The bundled kernels on each engine: loongarch64 on the P-code engine, and the same riscv64
kernel on Unicorn and on the P-code engine's riscv64 SLEIGH, in one run. Prints figures.

    python bench/bench_kernels.py [--repeat N]

"cold" is a machine's first run (every block translated once, the P-code engine also loads
its SLEIGH spec at start-up, not counted); "warm" runs reuse the translations.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from kprobesim.arch import get_arch
from kprobesim.image import Image
from kprobesim.machine import Machine

ROOT = Path(__file__).resolve().parent.parent


def _pcode_riscv():  # noqa: ANN202
    from kprobesim.engine.pcode.engine import PcodeEngine

    return PcodeEngine("riscv64")


def measure(label: str, arch, image: Image, repeat: int) -> float:  # noqa: ANN001
    rates = []
    for _ in range(repeat):
        m = Machine(arch, image)
        t = time.perf_counter()
        status = m.run()
        dt = time.perf_counter() - t
        assert status == 0, m.console
        rates.append(m.instructions / dt)
    warm = max(rates[1:] or rates)
    print(f"{label:28s} {m.instructions:8d} insns  cold {rates[0] / 1e6:6.2f} M/s  warm {warm / 1e6:6.2f} M/s")
    return warm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()
    la = measure(
        "loongarch64 kernel, P-code",
        get_arch("loongarch64"),
        Image.load(ROOT / "firmware/loongarch64/kernel.elf"),
        args.repeat,
    )
    rv_image = Image.load(ROOT / "firmware/riscv64/kernel.elf")
    rv_uc = measure("riscv64 kernel, Unicorn", get_arch("riscv64"), rv_image, args.repeat)
    rv_pc = measure(
        "riscv64 kernel, P-code",
        dataclasses.replace(get_arch("riscv64"), new_engine=_pcode_riscv),
        rv_image,
        args.repeat,
    )
    print(f"P-code/Unicorn on the riscv64 kernel: {rv_pc / rv_uc:.3f}x; loongarch64/riscv64 P-code: {la / rv_pc:.2f}x")


if __name__ == "__main__":
    main()
