"""xv6's ``usertests`` under kprobesim and under QEMU, with the same kernel, fs.img and input.

    python bench/bench_xv6_usertests.py            # usertests -q (the quick tests, ~45 of them)
    python bench/bench_xv6_usertests.py --full     # usertests (the slow tests too)
    python bench/bench_xv6_usertests.py copyin pipe1 sbrkbasic   # usertests NAME, one run each

xv6 is built at test time (``tests/kernels/xv6.py``, from ``../shared/kernels/xv6-riscv``),
booted to its shell prompt on the ``virt`` board (``--bios none``, 128 MiB) and the command is
typed at the prompt, as the suite's ``tests/test_virt_xv6.py`` does; QEMU
(``qemu-system-riscv64 -machine virt -bios none``) gets the same input. Printed: every
``test NAME: OK|FAILED`` line of each side, the verdict lines, kprobesim's guest instructions,
CPU and wall seconds, QEMU's wall seconds, and whether the two sides' test lines agree. Exit
status 0 when both sides passed every test and agree, 1 otherwise.

Why this is a bench and not a suite test: every ``usertests`` run starts and ends by counting
free memory (``countfree``: one page at a time, sbrk, touch, report through a pipe, then free),
so even one named case (``copyin``) costs 5.65 G guest instructions (84 s of CPU here); ``-q`` costs far more
(``killstatus`` and ``preempt`` sleep on xv6's 100 ms tick, 30 M instructions each): all 53
quick tests pass in ~590 s of CPU on this project's machine.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

PROMPT = b"$ "
MEMORY = 128 << 20
RESULT = re.compile(r"^test (\w+): (OK|FAILED)", re.M)
VERDICTS = ("ALL TESTS PASSED", "SOME TESTS FAILED", "FAILED -- lost some free pages")


def kprobesim_run(build: Path, script: bytes, timeout: float) -> tuple[str, int, float, float]:
    """The transcript, guest instructions, CPU and wall seconds of the script under kprobesim."""
    from kprobesim.arch import get_arch
    from kprobesim.board.virt import Virt, VirtOptions
    from kprobesim.image import Image
    from kprobesim.machine import Machine

    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.monotonic()
    board = Virt(VirtOptions(memory=MEMORY, drives=[str(build / "fs.img")], input=script, input_prompt=PROMPT))
    m = Machine(get_arch("riscv64"), Image.load(build / "kernel/kernel"), board=board)
    m.run(max_insns=400_000_000_000, timeout=timeout)
    cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0
    return m.console, m.instructions, cpu, time.monotonic() - wall0


def qemu_run(build: Path, script: bytes, timeout: float) -> tuple[str, float]:
    import shutil

    from kernels.qemu_console import run_script

    qemu = shutil.which("qemu-system-riscv64")
    if qemu is None:
        return "(qemu-system-riscv64 is not installed)", 0.0
    with tempfile.TemporaryDirectory() as folder:
        disk = Path(folder) / "fs.img"
        shutil.copy(build / "fs.img", disk)
        start = time.monotonic()
        out = run_script(
            [qemu, "-machine", "virt", "-bios", "none", "-kernel", str(build / "kernel/kernel"), "-m", "128M",
             "-smp", "1", "-nographic", "-global", "virtio-mmio.force-legacy=false",
             "-drive", f"file={disk},if=none,format=raw,id=x0",
             "-device", "virtio-blk-device,drive=x0,bus=virtio-mmio-bus.0"],
            script, PROMPT, timeout=timeout,
        )
        return out.decode("utf-8", "replace"), time.monotonic() - start


def summary(transcript: str) -> tuple[list[tuple[str, str]], list[str]]:
    return RESULT.findall(transcript), [v for v in VERDICTS if v in transcript]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tests", nargs="*", help="usertests case names (default: usertests -q)")
    ap.add_argument("--full", action="store_true", help="plain usertests: the quick and the slow tests")
    ap.add_argument("--timeout", type=float, default=20000.0, help="wall seconds per side (default 20000)")
    args = ap.parse_args()
    from kernels import xv6

    why = xv6.available()
    if why is not None:
        print(f"bench_xv6_usertests: cannot build xv6 here: {why}")
        return 0
    build = xv6.build()
    commands = [f"usertests {name}" for name in args.tests] or ["usertests" if args.full else "usertests -q"]
    script = "".join(f"{c}\n" for c in commands).encode()
    print(f"script: {commands}")
    ours, insns, cpu, wall = kprobesim_run(build, script, args.timeout)
    theirs, qwall = qemu_run(build, script, args.timeout)
    (our_tests, our_verdicts), (their_tests, their_verdicts) = summary(ours), summary(theirs)
    for name, verdict in our_tests:
        print(f"  kprobesim  test {name}: {verdict}")
    print(f"kprobesim: {our_verdicts}, {insns / 1e9:.2f} G instructions, {cpu:.0f} s CPU, {wall:.0f} s wall")
    print(f"QEMU:      {their_verdicts}, {len(their_tests)} tests, {qwall:.0f} s wall")
    agree = our_tests == their_tests and our_verdicts == their_verdicts
    print("test lines agree" if agree else f"test lines differ: QEMU {their_tests}")
    if not agree:
        print("kprobesim's transcript (end):\n" + ours[-3000:])
    passed = all(v == "OK" for _, v in our_tests) and our_tests and "SOME TESTS FAILED" not in ours
    return 0 if agree and passed else 1


if __name__ == "__main__":
    sys.exit(main())
