"""Debian bookworm's 6.1 bzImage on the x86_64 ``pc`` board with the test initramfs, against
QEMU booting the same kernel, initramfs and command line with the same RAM: the kernel's own
report of the machine (the e820 map the loader wrote, its memory zones and totals, the command
line) must be QEMU's, it must calibrate its TSC against the board's PIT and find the 16550A,
and every line init and its child print (reads, fork, exec, wait) must be QEMU's. Then kprobes
on the running kernel, from the snapshot at init's first instruction, with both step variants.

The boot is the worker's shared one (``pc_linux``, ``linux/pclinux.py``: ~1.42 G guest
instructions, ~60 s of CPU, paid by whichever pc Linux module runs first); init's whole life
after the snapshot is ~1.4 M instructions, so the unprobed run and the two probed ones (tf,
int3) from the snapshot cost well under a second each. The QEMU oracle run is ~45 s of wall
time, ~11 s of CPU.

Without ACPI (``acpi=off``) Linux's power-off halts the CPU with interrupts masked ("reboot:
System halted"), which ends the run with status 0; QEMU, same command line, halts the same way
and is stopped once it says so.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

import capstone
import pytest

from kprobesim.probes.regs import Regs
from kprobesim.trace.tracer import Tracer
from linux import pclinux, qemu
from linux.qemu import init_lines

pytestmark = pytest.mark.xdist_group(pclinux.XDIST_GROUP)

#: Under QEMU's PC the kernel reserves 8 KiB more early on than on the board, whose machine has
#: no SMBIOS or MP tables and one e820 entry fewer (SMBIOS strings in brk, the MP table's IOAPIC
#: resource). The totals agreed only while the command line was under 64 characters (two 64-byte
#: slots for each of Linux's two copies of it); ``DEFAULT_APPEND`` is longer now, so the board's
#: "Memory:" line has exactly this many KiB more available and fewer reserved.
QEMU_EARLY_RESERVED_K = 8
_MEMORY = re.compile(r"Memory: (\d+)K/(\d+K available \(.*, )(\d+)(K reserved, .*)$")


def _as_under_qemu(line: str) -> str:
    """Our "Memory:" line with QEMU's early reservations (:data:`QEMU_EARLY_RESERVED_K`)."""
    m = _MEMORY.fullmatch(line)
    if m is None:
        return line
    k = QEMU_EARLY_RESERVED_K
    return f"Memory: {int(m[1]) - k}K/{m[2]}{int(m[3]) + k}{m[4]}"


SAME_AS_QEMU = re.compile(
    r"^(Linux version |Command line: |Kernel command line: |BIOS-e820: \[mem 0x00000000|Memory: |"
    r"  (DMA|DMA32|Normal) |  node   0: |Initmem setup |On node 0, zone |Built 1 zonelists|Dentry cache |"
    r"Inode-cache |percpu: |last_pfn = )"
)
_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")  # SeaBIOS clears the screen on the kernel's first line
_INNER_TIMESTAMP = re.compile(r"(?<=.)(\[\s*\d+\.\d{6}\] )")


def _lines(transcript: str) -> list[str]:
    # QEMU's firmware output and the kernel's first line can share a line ("... ok[    0.000000]
    # Linux version ...", the carriage return between them dropped): a timestamp starts a line
    text = _ESCAPE.sub("", transcript).replace("\r\n", "\n").replace("\r", "\n")
    text = _INNER_TIMESTAMP.sub(r"\n\1", text)
    return qemu.kernel_lines(text) + [line for line in text.splitlines() if line.startswith("  ")]


_qemu_transcript = pclinux.qemu_transcript  # one QEMU run per worker, shared with the uprobe tests


@dataclass
class Run:
    """One run of init from the snapshot: the whole console, the exit status, the trace events
    and hit counts of the probes placed for it."""

    console: str
    status: int | None
    events: list = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)


@dataclass
class Booted:
    unprobed: Run
    probed: dict[str, Run]  # by step variant


def _probed_run(pc_linux: pclinux.PcLinux, variant: str) -> Run:
    """From the snapshot: tracer probes on init's opens and reads, and probes with empty handlers
    on fork and write, stepping with ``variant``."""
    m = pc_linux.restore(variant)
    tracer = Tracer(m)
    tracer.add("p:op do_sys_openat2 dfd=$arg1:s32 name=+0($arg2):ustring")
    tracer.add("r:vr vfs_read ret=$retval:s64")
    clone = m.kprobe("kernel_clone", pre=lambda p, r: None, post=lambda p, r: None)
    write = m.kretprobe("__x64_sys_write", handler=lambda i, r: None, entry=lambda i, r: None)
    status = pc_linux.run_to_power_off()
    return Run(m.console, status, tracer.events, {"kernel_clone": clone.hits, "__x64_sys_write": write.kprobe.hits})


@pytest.fixture(scope="module")
def booted(pc_linux: pclinux.PcLinux) -> Booted:
    m = pc_linux.restore()
    status = pc_linux.run_to_power_off()
    unprobed = Run(m.console, status)
    return Booted(unprobed, {variant: _probed_run(pc_linux, variant) for variant in ("tf", "int3")})


def test_reports_qemus_machine(booted: Booted) -> None:
    lines = _lines(booted.unprobed.console)
    assert "printk: console [ttyS0] enabled" in lines, booted.unprobed.console[-2000:]
    assert any(re.fullmatch(r"tsc: Detected 99\d\.\d+ MHz processor", line) for line in lines)
    assert "tsc: Fast TSC calibration using PIT" in lines
    assert "No local APIC present" in lines  # the board has none; the kernel runs on the 8259A
    mine = [_as_under_qemu(line) for line in lines if SAME_AS_QEMU.match(line)]
    theirs = [line for line in _lines(_qemu_transcript()) if SAME_AS_QEMU.match(line)]
    assert len(mine) >= 20
    assert mine == theirs


def test_init_runs_as_under_qemu_and_halts(booted: Booted) -> None:
    console = booted.unprobed.console
    assert booted.unprobed.status == 0 and "reboot: System halted" in console, console[-3000:]
    expected = init_lines(_qemu_transcript())
    assert any(line.startswith("kpsim-child: ") for line in expected), expected
    assert init_lines(console) == expected, console[-3000:]


INIT_FILES = ["/data/hello.txt", "/data/lines.txt", "/data/blob.bin", "/data/missing.txt"]


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_openat_probe_reports_exactly_the_files_init_opened(booted: Booted, variant: str) -> None:
    run = booted.probed[variant]
    said = re.findall(r"kpsim-(?:init|child): (?:read|open) (/data/\S+):", run.console)
    assert said == [*INIT_FILES, "/data/hello.txt"]  # init's four, then the child's
    assert "kpsim-init: read /init: its text is the file's" in run.console  # then init's own file
    opened = [(e.args["name"], e.args["dfd"], e.comm) for e in run.events if e.event == "op"]
    # AT_FDCWD (raw s32); the task from Linux's current (%gs:current_task), its comm by the BTF
    at_fdcwd = -100 & 0xFFFFFFFF
    assert opened == [(name, at_fdcwd, "init") for name in INIT_FILES] + [("/data/hello.txt", at_fdcwd, "child")] + [
        ("/init", at_fdcwd, "init")
    ]


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_vfs_read_kretprobe_returns_inits_byte_counts(booted: Booted, variant: str) -> None:
    run = booted.probed[variant]
    printed = [int(n) for line in init_lines(run.console)[1:4] for n in line.split(": ", 2)[2].split(" = ")[0].split()]
    assert printed == [35, 0, 256, 256, 124, 0, 256, 256, 256, 256, 0]
    counts = [e.args["ret"] for e in run.events if e.event == "vr"]
    assert counts[: len(printed)] == printed, counts
    assert counts[len(printed) :] == [35, 0, 32768]  # the child reads hello.txt to its end, init 32 KiB of /init


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_probed_run_is_transparent(booted: Booted, variant: str) -> None:
    """Probes with empty handlers (and tracer probes that only read) change nothing: the same
    console, kernel lines and timestamps included, and the same power-off."""
    run = booted.probed[variant]
    assert run.hits["kernel_clone"] == 7  # init's fork, then the six children it spawns
    assert run.hits["__x64_sys_write"] >= len(init_lines(run.console)) - 1
    assert run.status == booted.unprobed.status == 0
    assert run.console == booted.unprobed.console


PT_REGS_IP = 16 * 8  # struct pt_regs: r15 .. orig_ax, then ip
PF_PRESENT, PF_WRITE, PF_USER, PF_INSTR = 1, 2, 4, 0x10


def test_user_page_fault_error_codes_say_which_accesses_write(pc_linux: pclinux.PcLinux) -> None:
    """Every page fault init and its children take (a kprobe on ``exc_page_fault``, whose second
    argument is the error code the CPU pushed) at an instruction whose only memory operand
    capstone says is stored (not loaded) has W set, and one it says is loaded has W clear.
    A store to a page not present once came with W clear: Linux mapped the zero page for a read
    and took a second, copy-on-write fault on the retried store, which QEMU does not. One run of
    init from the snapshot, ~1.4 M instructions plus a capstone decode per fault (< 1 s). Init's
    run from the snapshot takes 50 page faults (51 ``handle_mm_fault`` calls); it took 78 (79)
    with the store-as-load codes (54 with the right ones, before ``cryptomgr.notests``: which
    stores meet a page not present depends on where the boot's randomness put init's stack)."""
    m = pc_linux.restore()
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    seen: list[tuple[int, int, str, int]] = []  # (ip, error code, instruction, operand access)

    def on_fault(p: object, r: Regs) -> None:
        error = r["rsi"]
        if not error & PF_USER or error & PF_INSTR:
            return
        ip = struct.unpack("<Q", r.read_mem(r["rdi"] + PT_REGS_IP, 8))[0]
        insn = next(md.disasm(r.read_mem(ip, 16), ip), None)
        mems = [op for op in insn.operands if op.type == capstone.x86.X86_OP_MEM] if insn else []
        if insn is None:
            seen.append((ip, error, "(not decoded)", 0))
        elif len(mems) == 1 and insn.mnemonic not in ("lea", "nop") and not insn.mnemonic.startswith("prefetch"):
            seen.append((ip, error, f"{insn.mnemonic} {insn.op_str}", mems[0].access))

    m.kprobe("exc_page_fault", pre=on_fault)
    assert pc_linux.run_to_power_off() == 0
    stores = [s for s in seen if s[3] == capstone.CS_AC_WRITE]
    loads = [s for s in seen if s[3] == capstone.CS_AC_READ]
    assert all(text != "(not decoded)" for _, _, text, _ in seen), seen
    not_present_stores = [s for s in stores if not s[1] & PF_PRESENT]  # the ones once reported as loads
    assert len(stores) >= 5 and not_present_stores and loads, seen
    wrong = [(hex(ip), hex(e), text) for ip, e, text, _ in stores if not e & PF_WRITE]
    wrong += [(hex(ip), hex(e), text) for ip, e, text, _ in loads if e & PF_WRITE]
    assert wrong == []
