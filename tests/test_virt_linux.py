"""Debian's Linux 6.12 riscv64 on the ``virt`` board under Debian's OpenSBI (``--bios
fw_jump.bin``, the real M-mode firmware, as QEMU runs it), to the test initramfs' ``init``, with
probes by symbol from the kernel's own kallsyms.

One boot per worker (``riscv_linux``: ~0.52 G guest instructions, ~20 s of CPU) snapshotted
at init's first instruction; the tests here restore it (~4 M instructions, well under a second
of CPU, each run to power off). The same kernel under the builtin SBI boots to the power-off once
in ``test_virt_sbi.py``, outside this group, so the other worker pays for it. The kernel
brings up its console, unpacks the initramfs and runs init, which prints what it read, forks
and execs ``/bin/child``, waits for it and powers off. Every line init and its child print
equals QEMU's transcript of the same kernel, firmware and initramfs (``linux/oracle.py``),
under Linux's default paging mode (Sv57). Page faults are the heart of
it: every user page arrives by one, copy-on-write after fork included, and each must be retried
at the faulting instruction.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from linux import oracle, rvguest
from linux.qemu import init_lines

from kprobesim.machine import Machine
from kprobesim.trace.tracer import Tracer

pytestmark = pytest.mark.xdist_group(rvguest.XDIST_GROUP)

STAMP = re.compile(r"^\[\s*\d+\.\d+\] ")
#: Kernel log lines about hardware QEMU's virt machine has and this board does not: the PCIe host,
#: the goldfish RTC, the H and Sstc extensions, hardware PMU counters, a 96-source PLIC (QEMU
#: 7.2's riscv,ndev; this board keeps 95), and the moment the entropy pool filled.
HARDWARE = re.compile(
    r"^(pci|pci_bus|pci-host-generic|goldfish_rtc) |^riscv-timer: .*sstc|^riscv: base ISA extensions "
    r"|^riscv-plic: .* mapped \d+ interrupts|^riscv-pmu-sbi: \d+ firmware and \d+ hardware counters"
    r"|^random: crng init done|^node 0 deferred pages initialised"
)
#: Lines whose figures scale with RAM (QEMU's oracle boot has 256 MiB, this one 128) or measure
#: time: compared with their numbers masked.
SCALED = re.compile(
    r"^(NUMA: |NODE_DATA|\s+DMA32 |\s+node +0: |Initmem setup |Dentry cache |Inode-cache |Built 1 zonelists"
    r"|Memory: |IP idents |TCP|workingset: |audit: |cpu0: Ratio of byte access)"
)
# Lines printed from outside init's initcall sequence: the async initramfs unpack (any size),
# and the audit subsystem's first record, which its kauditd thread prints when first scheduled.
ASYNC = ("Trying to unpack rootfs image as initramfs...", "Freeing initrd memory: ", "audit: type=N audit(")


def kernel_log(transcript: str) -> list[str]:
    """The kernel's log lines without their timestamps, hardware lines dropped, RAM-scaled
    figures masked (and QEMU's extra ``-- kallsyms`` argument taken off the command line)."""
    out = []
    for line in transcript.replace("\r", "").splitlines():
        if not STAMP.match(line):
            continue
        line = STAMP.sub("", line).replace(" -- kallsyms", "")
        if HARDWARE.search(line):
            continue
        out.append(re.sub(r"(0x)?[0-9a-f]*[0-9][0-9a-f]*", "N", line) if SCALED.match(line) else line)
    return out


@pytest.fixture(scope="module")
def traced(riscv_linux: rvguest.RiscvLinux) -> tuple[Machine, Tracer]:
    """From the snapshot at init's first instruction, with two probes, to power off (~4 M
    instructions, under a second of CPU)."""
    m = riscv_linux.restore()
    tracer = Tracer(m)
    tracer.add("p:op do_sys_openat2 dfd=$arg1:s32 name=+0($arg2):ustring comm=$comm")
    tracer.add("r:vr vfs_read ret=$retval:s64")
    tracer.add("r:clone kernel_clone ret=$retval:s64")
    riscv_linux.run_to_power_off()
    return m, tracer


def test_snapshot_is_where_init_starts(riscv_linux: rvguest.RiscvLinux) -> None:
    """The boot stopped at init's ELF entry, in user mode, before init printed anything."""
    m = riscv_linux.restore()
    assert m.pc == riscv_linux.init_entry == rvguest.init_entry()
    assert "Run /init as init process" in m.console and "kpsim-init" not in m.console
    # under OpenSBI (its banner, and the implementation ID Linux read through the SBI, 1)
    assert "OpenSBI v1.6" in m.console and "SBI implementation ID=0x1 Version=0x10006" in m.console
    with m.traps.machine_mode() as priv:
        assert priv == 0


def test_runs_from_the_snapshot_are_identical(riscv_linux: rvguest.RiscvLinux) -> None:
    """Restoring replays the same run: same console, same instruction count, twice over; and
    probes change neither (kprobes stepped in place, kretprobes returning through a simulator
    address, which the engine reaches by a fetch fault that retires no instruction, a uprobe
    and a uretprobe stepping and returning through the process's XOL page). ~6 s of CPU."""
    runs = []
    for probed in (False, False, True):
        m = riscv_linux.restore()
        if probed:
            m.kretprobe("vfs_open")
            m.kretprobe("vfs_read")
            m.kprobe("vfs_write")
            m.uprobe("/init:say")
            m.uretprobe("/init:digits")
        riscv_linux.run_to_power_off()
        runs.append((m.console, m.instructions, m.exit_status))
    assert runs[0] == runs[1] == runs[2] and runs[0][2] == 0


def test_boots_to_init_and_powers_off(traced: tuple[Machine, Tracer]) -> None:
    m, _ = traced
    console = m.console
    assert m.exit_status == 0 and "reboot: Power down" in console, console[-3000:]
    assert "Run /init as init process" in console
    lines = init_lines(console)
    # QEMU's boot runs init with "kallsyms" too: it also digests /proc/kallsyms before power off
    expected = [line for line in oracle.boot("riscv64").init_lines if not line.startswith("kpsim-init: kallsyms")]
    assert any(line.startswith("kpsim-child: ") for line in expected), expected
    assert lines == expected, console[-3000:]


def test_openat_probe_names_the_files_init_opened(traced: tuple[Machine, Tracer]) -> None:
    m, tracer = traced
    opened = [e.args["name"] for e in tracer.events if e.event == "op"]
    said = re.findall(r"kpsim-init: (?:read|open) (/data/\S+):", m.console)
    assert said == ["/data/hello.txt", "/data/lines.txt", "/data/blob.bin", "/data/missing.txt"]
    # from init's first instruction on, the opens are init's and its child's
    assert opened == [*said, "/data/hello.txt", "/init"], opened  # init reads itself last


def test_vfs_read_returns_the_counts_init_printed(traced: tuple[Machine, Tracer]) -> None:
    m, tracer = traced
    counts = [e.args["ret"] for e in tracer.events if e.event == "vr"]
    printed = [int(n) for line in init_lines(m.console)[1:4] for n in line.split(": ", 2)[2].split(" = ")[0].split()]
    assert printed == [35, 0, 256, 256, 124, 0, 256, 256, 256, 256, 0]
    assert any(counts[i : i + len(printed)] == printed for i in range(len(counts))), counts


def test_events_name_the_task_from_linux_current(traced: tuple[Machine, Tracer]) -> None:
    """pid and comm come from ``current`` (``tp``/``sscratch``, task_struct offsets from the
    kernel's BTF): init is pid 1; its child has the pid fork returned (kernel_clone's return
    value in init, the kernel's own word) and, after execve, the comm ``child``."""
    m, tracer = traced
    forks = [e for e in tracer.events if e.event == "clone" and e.comm == "init"]  # the child, then six spawned
    assert len(forks) == 7 and all(e.pid == 1 for e in forks), [(e.comm, e.pid, e.args) for e in forks]
    child = int(forks[0].args["ret"])
    assert child > 1
    opens = [(e.comm, e.pid, e.args["comm"], e.args["name"]) for e in tracer.events if e.event == "op"]
    assert opens == [
        *(("init", 1, "init", name) for name in ("/data/hello.txt", "/data/lines.txt", "/data/blob.bin",
                                                  "/data/missing.txt")),
        ("child", child, "child", "/data/hello.txt"),
        ("init", 1, "init", "/init"),
    ]
    assert sum(line.lstrip().startswith(f"child-{child} [000]") and " op: " in line for line in m.trace_lines) == 1
    assert sum(line.lstrip().startswith("init-1 [000]") for line in m.trace_lines) >= 5


def test_kernel_log_is_qemus_but_for_hardware_and_timestamps(traced: tuple[Machine, Tracer]) -> None:
    """Every kernel log line (~175) is QEMU's with the same kernel,
    firmware and initramfs, in the same order, but for timestamps, QEMU's extra hardware and
    figures that scale with its larger RAM; only the async initramfs unpack may move."""
    m, _ = traced
    ours, theirs = kernel_log(m.console), kernel_log(oracle.boot("riscv64").transcript)
    assert len(ours) > 150 and "Run /init as init process" in ours
    assert Counter(ours) == Counter(theirs), set(ours) ^ set(theirs)
    in_order = [line for line in ours if not line.startswith(ASYNC)]
    assert in_order == [line for line in theirs if not line.startswith(ASYNC)]
