"""xv6-riscv (built here at test time) on the riscv64 ``virt`` board, against QEMU's virt machine.

The module boots xv6 once, to its first shell prompt, and snapshots there; each test runs the
scripted session from the snapshot. The oracle is ``qemu-system-riscv64 -machine virt -bios
none`` with the same kernel, fs.img and input, typed the same way (each line once the shell has
printed its prompt). Booting is ~700 M guest instructions (xv6's kinit fills 128 MiB byte by
byte), so this module is the suite's slowest; it is the project's top-priority check.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from kernels import xv6
from kernels.qemu_console import run_script

from kprobesim.arch import get_arch
from kprobesim.board.virt import Virt, VirtOptions
from kprobesim.errors import BudgetExhausted, GuestPanic
from kprobesim.image import Image
from kprobesim.machine import Machine, Snapshot
from kprobesim.probes.regs import Regs
from kprobesim.trace.tracer import Tracer

SCRIPT = b"ls\necho hi\ncat README\n"
PROGRAMS = b"forktest\nwc README\ngrep xv6 README\n"
PROMPT = b"$ "
MEMORY = 128 << 20  # xv6's PHYSTOP

pytestmark = pytest.mark.xdist_group("xv6")  # one boot per worker that runs these


@pytest.fixture(scope="module")
def xv6_build() -> Path:
    why = xv6.available()
    assert why is None, why
    return xv6.build()


@pytest.fixture(scope="module")
def booted(xv6_build: Path) -> tuple[Machine, Snapshot]:
    """xv6 at its first shell prompt, with the snapshot taken there."""
    image = Image.load(xv6_build / "kernel/kernel")
    board = Virt(VirtOptions(memory=MEMORY, drives=[str(xv6_build / "fs.img")], input=SCRIPT, input_prompt=PROMPT))
    m = Machine(get_arch("riscv64"), image, board=board)
    while not m.console.endswith(PROMPT.decode()):
        try:
            m.run(max_insns=20_000_000, timeout=300)
        except BudgetExhausted:
            assert m.instructions < 1_500_000_000, m.console
    return m, m.snapshot()


def _session(m: Machine, snap: Snapshot) -> str:
    """The transcript of the scripted session, from the prompt snapshot."""
    m.restore(snap)
    assert m.run(max_insns=300_000_000, timeout=300) == 0, m.console  # the script answered
    return m.console


@pytest.fixture(scope="module")
def unprobed_run(booted: tuple[Machine, Snapshot]) -> tuple[str, int]:
    """The scripted session's transcript and its end (instructions, i.e. virtual time)."""
    console = _session(*booted)
    return console, booted[0].instructions


@pytest.fixture(scope="module")
def unprobed(unprobed_run: tuple[str, int]) -> str:
    return unprobed_run[0]


def qemu_session(xv6_build: Path, script: bytes, folder: Path) -> str:
    """QEMU's transcript of ``script`` typed into xv6 (on a copy of fs.img)."""
    qemu = shutil.which("qemu-system-riscv64")
    assert qemu, "qemu-system-riscv64 (Debian qemu-system-misc) is needed as the oracle"
    disk = folder / "fs.img"
    shutil.copy(xv6_build / "fs.img", disk)
    return run_script(
        [
            qemu, "-machine", "virt", "-bios", "none", "-kernel", str(xv6_build / "kernel/kernel"), "-m", "128M",
            "-smp", "1", "-nographic", "-global", "virtio-mmio.force-legacy=false",
            "-drive", f"file={disk},if=none,format=raw,id=x0",
            "-device", "virtio-blk-device,drive=x0,bus=virtio-mmio-bus.0",
        ],
        script,
        PROMPT,
    ).decode("utf-8", "replace")


def test_session_matches_qemu(unprobed: str, xv6_build: Path, tmp_path: Path) -> None:
    assert "\x03" not in unprobed  # the divisor latch byte is not printed
    assert "$ echo hi\nhi\n$ " in unprobed and "README         2 2 " in unprobed
    assert unprobed == qemu_session(xv6_build, SCRIPT, tmp_path)


def test_xv6_test_programs_match_qemu(booted: tuple[Machine, Snapshot], xv6_build: Path, tmp_path: Path) -> None:
    """xv6's own cheap test programs from the prompt snapshot, typed as another script:
    ``forktest`` (fork until the process table is full, then reap them all), ``wc`` and
    ``grep`` over README. ~60 M instructions, ~1 s of CPU. (``usertests`` costs 5.65 G
    instructions, 84 s of CPU, even for one named case such as ``copyin``: it counts all free
    memory page by page before and after; it runs from ``bench/bench_xv6_usertests.py``.)"""
    m, snap = booted
    m.restore(snap)
    m.board.input.retype(PROGRAMS)
    assert m.run(max_insns=1_000_000_000, timeout=600) == 0, m.console[-2000:]
    ours = m.console
    assert "fork test OK" in ours and "49 325 2305 README" in ours, ours[-2000:]
    assert ours == qemu_session(xv6_build, PROGRAMS, tmp_path)


def _free_pages(m: Machine) -> int:
    """Length of xv6's free-page list (``kmem.freelist``, after its 24-byte spinlock)."""
    node = struct.unpack("<Q", m.read(m.image.resolve("kmem") + 24, 8))[0]
    count = 0
    while node:
        count += 1
        node = struct.unpack("<Q", m.read(node, 8))[0]
    return count


def test_probes_count_and_fetch_right_and_change_nothing(booted: tuple[Machine, Snapshot], unprobed: str) -> None:
    m, snap = booted
    m.restore(snap)
    free_before = _free_pages(m)
    tracer = Tracer(m)
    sys_write = tracer.add("p:sw sys_write")
    tracer.add("p:fw filewrite type=+0($arg1):u32 major=+36($arg1):s16 n=$arg3:s32")
    kalloc = tracer.add("r:ka kalloc page=$retval")
    kfree = tracer.add("p:kf kfree page=$arg1")
    fork_entry = tracer.add("p:fe fork")
    tracer.add("r:fr fork pid=$retval:s32")
    # every UART interrupt (received byte or transmitter empty) calls uartintr; the UART's line
    # status register (@ its address, read by the probe without side effects) tells which
    uart = tracer.add("p:ui uartintr lsr=@0x10000005:u8")
    tracer.add("p:ci consoleintr c=$arg1:u8")
    assert m.run(max_insns=300_000_000, timeout=300) == 0
    assert m.console == unprobed  # transparency: the probed session prints exactly the same

    names = ("sw", "fw", "ka", "kf", "fe", "fr", "ui", "ci")
    events = {name: [e.args for e in tracer.events if e.event == name] for name in names}
    # sh forks one child a command; xv6 hands out pids in order (init 1, sh 2).
    assert fork_entry.hits == 3 and [a["pid"] for a in events["fr"]] == [3, 4, 5]
    # Every write of the session goes to the console device (FD_DEVICE 3, major CONSOLE 1), and
    # the bytes written are the transcript's new bytes less the echo of the typed script.
    writes = events["fw"]
    assert len(writes) == sys_write.hits > 0
    assert all(a["type"] == 3 and a["major"] == 1 for a in writes), writes[:4]
    session = len(unprobed.encode()) - len(snap.console)
    assert sum(a["n"] for a in writes) == session - len(SCRIPT)
    # kalloc returns distinct-at-the-time pages inside RAM; allocations less frees is what
    # left xv6's free list (walked in guest memory).
    pages = [a["page"] for a in events["ka"]]
    assert kalloc.hits == len(pages) > 0 and all(p % 4096 == 0 and 0x80000000 <= p < 0x80000000 + MEMORY for p in pages)
    assert kalloc.hits - kfree.hits == free_before - _free_pages(m)

    # Input: each byte is typed once the previous one was read, so each raises one receive
    # interrupt, whose uartintr finds data ready (LSR bit 0) and hands it to consoleintr; the
    # other uartintr calls are transmit-empty interrupts (LSR without data).
    received = [a["lsr"] for a in events["ui"] if a["lsr"] & 1]
    assert len(received) == len(SCRIPT) and uart.hits > len(received), (uart.hits, len(received))
    assert all(a["lsr"] & 0x60 == 0x60 for a in events["ui"])  # THR empty, transmitter idle
    assert bytes(a["c"] for a in events["ci"]) == SCRIPT


def test_interrupt_path_probes_keep_the_run_exact(
    booted: tuple[Machine, Snapshot], unprobed_run: tuple[str, int]
) -> None:
    """Kprobes on ``plic_claim`` (every external interrupt) and ``uartintr`` (every UART
    interrupt, each typed byte's included) end the session at exactly the unprobed run's
    instruction count (virtual time) with the same console. Typing used to be timed from the
    run loop's slice boundaries, which probe hits move: the run ended 359,893 instructions
    early. The claim's device load, also probed, is stepped in place. ~3 s of CPU from the
    shared snapshot."""
    m, snap = booted
    console, end = unprobed_run
    m.restore(snap)
    claims: list[int] = []
    uart: list[int] = []
    m.kprobe("plic_claim", pre=lambda p, regs: claims.append(m.now()))
    m.kprobe("uartintr", pre=lambda p, regs: uart.append(m.now()))
    # and the claim itself, ``lw a0, 0(a0)`` from the PLIC (c.lw 0x4108): stepped in place
    base = m.image.resolve("plic_claim")
    code = m.read(base, 0x26)
    load = next(off for off in range(0, len(code), 2) if code[off : off + 2] == b"\x08\x41")
    loads: list[int] = []
    m.kprobe(base + load, pre=lambda p, regs: loads.append(m.now()))
    assert m.run(max_insns=300_000_000, timeout=300) == 0
    assert (m.instructions, m.console) == (end, console)
    assert len(loads) == len(claims)
    # both fire for each typed byte (and for transmit interrupts), uartintr after plic_claim
    assert len(uart) >= len(SCRIPT) and len(claims) >= len(uart)
    assert all(c < u for c, u in zip(claims, uart, strict=False))


def test_kernel_panic_ends_the_run_with_its_reason(booted: tuple[Machine, Snapshot]) -> None:
    """Fault injection: a kprobe on ``kfree`` hands xv6 a misaligned page, so the kernel's own
    check calls ``panic("kfree")``, which prints ``panic: kfree``, sets ``panicked`` and spins.
    The run ends there as a guest panic (status 125), long before the budget, instead of
    spinning to it; the unprobed session (the module's other tests) never panics. ~1 s of CPU
    from the shared snapshot."""
    m, snap = booted
    m.restore(snap)

    def misalign(p: object, regs: Regs) -> None:
        regs["a0"] += 8

    m.kprobe("kfree", pre=misalign)
    with pytest.raises(GuestPanic) as caught:
        m.run(max_insns=300_000_000, timeout=300)
    assert str(caught.value).startswith("panic: kfree (after "), caught.value
    assert caught.value.last_lines[-1] == "panic: kfree"
    assert caught.value.exit_status == 125
    assert m.instructions - snap.time < 100_000_000


def test_a_program_printing_panic_is_no_panic(booted: tuple[Machine, Snapshot]) -> None:
    """``echo panic: x`` prints an xv6 panic's line from user space; ``panicked`` stays clear,
    so the session goes on to its end. ~1 s of CPU from the shared snapshot."""
    m, snap = booted
    m.restore(snap)
    m.board.input.retype(b"echo panic: not really\n")
    assert m.run(max_insns=300_000_000, timeout=300) == 0
    assert m.console.endswith("$ echo panic: not really\npanic: not really\n$ "), m.console[-200:]
