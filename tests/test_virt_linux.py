"""Debian's Linux 6.12 riscv64 on the ``virt`` board under the builtin SBI, to the test
initramfs' ``init``, with probes by symbol from the kernel's own kallsyms.

One boot per module (~1.3 G guest instructions, ~55 s of CPU: the suite's longest single run):
the kernel, OpenSBI-free, brings up its console, unpacks the initramfs and runs init, which
prints what it read, forks and execs ``/bin/child``, waits for it and powers off. Every line
init and its child print equals QEMU's transcript of the same kernel and initramfs
(``linux/oracle.py``), under Linux's default paging mode (Sv57). Page faults are the heart of
it: every user page arrives by one, copy-on-write after fork included, and each must be retried
at the faulting instruction.
"""

from __future__ import annotations

import re

import pytest
from linux import debian, obtain, oracle
from linux.initramfs import initramfs
from linux.qemu import APPEND, init_lines

from kprobesim.arch import get_arch
from kprobesim.board.virt import Virt, VirtOptions
from kprobesim.guest.linux import with_kallsyms
from kprobesim.image import load_image
from kprobesim.machine import Machine
from kprobesim.trace.tracer import Tracer

pytestmark = pytest.mark.xdist_group("linux-virt")


@pytest.fixture(scope="module")
def booted() -> tuple[Machine, Tracer]:
    kernel = obtain(debian.trixie_riscv64_kernel)
    image, boot_map = with_kallsyms(load_image(kernel.image, arch="riscv64", base=0x80200000))
    initrd = str(obtain(initramfs, "riscv64"))
    board = Virt(VirtOptions(memory=128 << 20, bios="builtin", initrd=initrd, append=APPEND))
    m = Machine(get_arch("riscv64"), image, board=board)
    m.boot_maps.append(boot_map)
    tracer = Tracer(m)
    tracer.add("p:op do_sys_openat2 dfd=$arg1:s32 name=+0($arg2):ustring")
    tracer.add("r:vr vfs_read ret=$retval:s64")
    m.run(max_insns=2_500_000_000, timeout=1200)  # probes from reset: entries moved past ftrace's pad
    return m, tracer


def test_boots_to_init_and_powers_off(booted: tuple[Machine, Tracer]) -> None:
    m, _ = booted
    console = m.console
    assert m.exit_status == 0 and "reboot: Power down" in console, console[-3000:]
    assert "Run /init as init process" in console
    lines = init_lines(console)
    # QEMU's boot runs init with "kallsyms" too: it also digests /proc/kallsyms before power off
    expected = [line for line in oracle.boot("riscv64").init_lines if not line.startswith("kpsim-init: kallsyms")]
    assert any(line.startswith("kpsim-child: ") for line in expected), expected
    assert lines == expected, console[-3000:]


def test_openat_probe_names_the_files_init_opened(booted: tuple[Machine, Tracer]) -> None:
    m, tracer = booted
    opened = [e.args["name"] for e in tracer.events if e.event == "op"]
    said = re.findall(r"kpsim-init: (?:read|open) (/data/\S+):", m.console)
    assert said == ["/data/hello.txt", "/data/lines.txt", "/data/blob.bin", "/data/missing.txt"]
    # init's opens in init's order (the kernel opens /dev/console and /init's loader first)
    in_order = [name for name in opened if name in said]
    assert in_order[: len(said)] == said, opened


def test_vfs_read_returns_the_counts_init_printed(booted: tuple[Machine, Tracer]) -> None:
    m, tracer = booted
    counts = [e.args["ret"] for e in tracer.events if e.event == "vr"]
    printed = [int(n) for line in init_lines(m.console)[1:4] for n in line.split(": ", 2)[2].split(" = ")[0].split()]
    assert printed == [35, 0, 256, 256, 124, 0, 256, 256, 256, 256, 0]
    assert any(counts[i : i + len(printed)] == printed for i in range(len(counts))), counts
