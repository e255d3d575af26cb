"""Debian's Linux booting the test initramfs, under kprobesim and under QEMU, in one run:
riscv64 (trixie's 6.12 on ``virt``) or x86_64 (bookworm's 6.1 bzImage on ``pc``). Prints figures.

    python bench/bench_linux_boot.py [--arch riscv64|x86_64] [--repeat N]

x86_64: kprobesim's ``pc`` board with its boot-protocol loader and ``DEFAULT_APPEND`` (as
``tests/linux/test_pc_linux.py``) against ``qemu-system-x86_64 -kernel ... -initrd ...``
(TCG, SeaBIOS, same RAM and command line); without ACPI, Linux's power-off halts the CPU
("reboot: System halted"): kprobesim's run ends there, QEMU is stopped once it says so.

Both boot the same kernel (trixie's ``linux-image-6.12.*-riscv64``, from the test cache) with
the same initramfs and command line on a 128 MiB ``virt`` machine: kprobesim with its builtin
SBI (as ``tests/test_virt_linux.py``), ``qemu-system-riscv64 -machine virt`` (TCG) with
Debian's OpenSBI ``fw_jump.bin``. Two moments are timed, by wall clock from the start of the
run (kprobesim: after loading the image, whose kallsyms are read first): the console line
``Run /init as init process`` and the end of the run (init prints what it read, forks, execs
a child and powers off). CPU seconds are the process's (kprobesim) and the child's (QEMU).
Each side runs ``--repeat`` times, alternating; the best of each is printed. Guest instructions
are kprobesim's virtual time (QEMU does not count them without ``-icount``, which would change
its speed). The kernel and initramfs come from the test helpers (``tests/linux``); when they
cannot be had (no network, no cache) the bench says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

MEMORY = 128 << 20
INIT_LINE = "Run /init as init process"
BUDGET = 4_000_000_000
TIMEOUT = 1800.0
PC_END = "reboot: System halted"


@dataclass
class Boot:
    to_init: float  # wall seconds to the "Run /init" line
    wall: float  # wall seconds to the end of the run
    cpu: float  # CPU seconds of the run
    instructions: int | None  # guest instructions (kprobesim only)
    ok: bool  # reached power-off


def _timed_boot(make: Callable[[Callable[[bytes], None]], Any], end: str) -> Boot:
    """Run the machine ``make(console)`` builds to its end, timing the first ``INIT_LINE`` on
    its console; ok when it exits 0 with ``end`` on the console."""
    seen: list[float] = []
    tail = bytearray()
    start = time.monotonic()

    def console(data: bytes) -> None:
        if not seen:
            tail.extend(data)
            if INIT_LINE.encode() in tail:
                seen.append(time.monotonic() - start)
            del tail[: max(0, len(tail) - 64)]

    m = make(console)
    start, cpu = time.monotonic(), time.process_time()
    status = m.run(max_insns=BUDGET, timeout=TIMEOUT)
    wall, cpu = time.monotonic() - start, time.process_time() - cpu
    return Boot(seen[0] if seen else float("nan"), wall, cpu, m.instructions, status == 0 and end in m.console)


def kprobesim_boot(kernel: Path, initrd: Path, append: str) -> Boot:
    from kprobesim.arch import get_arch
    from kprobesim.board.virt import Virt, VirtOptions
    from kprobesim.guest.linux import with_kallsyms
    from kprobesim.image import load_image
    from kprobesim.machine import Machine

    image, boot_map = with_kallsyms(load_image(str(kernel), arch="riscv64", base=0x80200000))
    board = Virt(VirtOptions(memory=MEMORY, bios="builtin", initrd=str(initrd), append=append))

    def make(console: Callable[[bytes], None]) -> Machine:
        m = Machine(get_arch("riscv64"), image, board=board, console=console)
        m.boot_maps.append(boot_map)
        return m

    return _timed_boot(make, "reboot: Power down")


def kprobesim_pc_boot(kernel: Path, initrd: Path) -> Boot:
    from kprobesim.arch import get_arch
    from kprobesim.board.pc import PcBoard
    from kprobesim.machine import Machine

    board = PcBoard(initrd=initrd)
    image = board.load(kernel)  # the host unpacks the vmlinux and reads its kallsyms
    return _timed_boot(lambda console: Machine(get_arch("x86_64"), image, board=board, console=console), PC_END)


def qemu_pc_boot(kernel: Path, initrd: Path, append: str) -> Boot:
    cmd = ["qemu-system-x86_64", "-smp", "1", "-m", f"{MEMORY >> 20}M", "-kernel", str(kernel), "-initrd",
           str(initrd), "-append", append, "-nographic", "-no-reboot"]
    return _timed_qemu(cmd, PC_END, stop_at_end=True)


def qemu_boot(kernel: Path, initrd: Path, append: str, bios: Path) -> Boot:
    from linux.qemu import command

    cmd = command("riscv64", kernel, initrd, append, bios, memory=f"{MEMORY >> 20}M")
    return _timed_qemu(cmd, "reboot: Power down", stop_at_end=False)


def _timed_qemu(cmd: list[str], end: str, stop_at_end: bool) -> Boot:
    """Run QEMU, timing the init line and the end (``end`` printed; QEMU stopped there when
    ``stop_at_end``, as a halted PC never exits)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    to_init = float("nan")
    out = []
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            out.append(line)
            if to_init != to_init and INIT_LINE in line:  # still NaN
                to_init = time.monotonic() - start
            if (stop_at_end and end in line) or time.monotonic() - start > TIMEOUT:
                proc.kill()
                break
        proc.wait()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = (stop_at_end or proc.returncode == 0) and any(end in line for line in out)
    return Boot(to_init, wall, cpu, None, ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="boots on each side (the best is printed)")
    parser.add_argument("--arch", choices=("riscv64", "x86_64"), default="riscv64",
                        help="riscv64: trixie's kernel on virt; x86_64: bookworm's bzImage on pc")
    args = parser.parse_args()
    if args.arch == "x86_64":
        return main_pc(args.repeat)

    from linux import debian
    from linux.cache import FetchError
    from linux.initramfs import initramfs
    from linux.qemu import APPEND

    try:
        kernel, bios = debian.trixie_riscv64_kernel(), debian.trixie_opensbi()
        initrd = initramfs("riscv64")
    except FetchError as e:
        print(f"skipped: Debian's riscv64 kernel is not available ({e})")
        return 0
    if subprocess.run(["sh", "-c", "command -v qemu-system-riscv64"], capture_output=True).returncode:
        print("skipped: qemu-system-riscv64 is not installed (Debian: apt-get install qemu-system-misc)")
        return 0

    ours: list[Boot] = []
    theirs: list[Boot] = []
    for _ in range(args.repeat):
        theirs.append(qemu_boot(kernel.image, initrd, APPEND, bios))
        ours.append(kprobesim_boot(kernel.image, initrd, APPEND))
    if not all(b.ok for b in ours + theirs):
        print("a boot did not reach power-off:", ["ok" if b.ok else "FAILED" for b in ours + theirs])
        return 1
    _report(f"Debian {kernel.package}, test initramfs, {MEMORY >> 20} MiB virt", args.repeat, ours, theirs,
            ("kprobesim (builtin SBI)", "QEMU TCG (OpenSBI)"))
    return 0


def main_pc(repeat: int) -> int:
    from linux import debian
    from linux.cache import FetchError
    from linux.initramfs import initramfs

    from kprobesim.board.pc import DEFAULT_APPEND

    try:
        kernel = debian.bookworm_amd64_kernel()
        initrd = initramfs("x86_64")
    except FetchError as e:
        print(f"skipped: Debian's amd64 kernel is not available ({e})")
        return 0
    if subprocess.run(["sh", "-c", "command -v qemu-system-x86_64"], capture_output=True).returncode:
        print("skipped: qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)")
        return 0
    ours: list[Boot] = []
    theirs: list[Boot] = []
    for _ in range(repeat):
        theirs.append(qemu_pc_boot(kernel.image, initrd, DEFAULT_APPEND))
        ours.append(kprobesim_pc_boot(kernel.image, initrd))
    if not all(b.ok for b in ours + theirs):
        print("a boot did not reach the halt:", ["ok" if b.ok else "FAILED" for b in ours + theirs])
        return 1
    _report(f"Debian {kernel.package}, test initramfs, {MEMORY >> 20} MiB pc", repeat, ours, theirs,
            ("kprobesim (pc loader)", "QEMU TCG (SeaBIOS)"))
    return 0


def _report(what: str, repeat: int, ours: list[Boot], theirs: list[Boot], names: tuple[str, str]) -> None:
    best_ours = min(ours, key=lambda b: b.wall)
    best_theirs = min(theirs, key=lambda b: b.wall)
    insns = best_ours.instructions or 0
    print(f"{what}, load average {os.getloadavg()[0]:.1f} (2-core machine shared with other jobs); "
          f"best of {repeat}")
    print(f"{'':<24}{'to /init':>10}{'to the end':>12}{'CPU':>8}{'guest insns':>13}"
          f"{'per wall s':>12}{'per CPU s':>11}")
    print(f"{names[0]:<24}{best_ours.to_init:>9.1f}s{best_ours.wall:>11.1f}s{best_ours.cpu:>7.1f}s"
          f"{insns / 1e9:>12.3f}G{insns / best_ours.wall / 1e6:>11.1f}M{insns / best_ours.cpu / 1e6:>10.1f}M")
    print(f"{names[1]:<24}{best_theirs.to_init:>9.1f}s{best_theirs.wall:>11.1f}s{best_theirs.cpu:>7.1f}s"
          f"{'-':>13}{'-':>12}{'-':>11}")
    print(f"{'kprobesim / QEMU':<24}{best_ours.to_init / best_theirs.to_init:>9.1f}x"
          f"{best_ours.wall / best_theirs.wall:>11.1f}x{best_ours.cpu / best_theirs.cpu:>7.1f}x")


if __name__ == "__main__":
    sys.exit(main())
