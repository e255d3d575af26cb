"""Firmware on the riscv64 ``virt`` board: the builtin SBI (``--bios builtin``) and Debian's
OpenSBI ``fw_jump.bin`` (``--bios FILE``) against QEMU running that same OpenSBI.

The S-mode check kernel (``virt/sbi_check.c``, built here) calls every SBI extension the
builtin one implements and prints only what the SBI v2.0 specification decides; its transcript
must be the same under QEMU + OpenSBI, under kprobesim + OpenSBI, and under kprobesim's own SBI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from linux import debian, obtain

from kprobesim.board.sbi import ERR_INVALID_PARAM, SUCCESS, Sbi
from kprobesim.board.virt import RAM_BASE, Virt, VirtOptions, linux_image_offset

HERE = Path(__file__).parent / "virt"
ZIG = [sys.executable, "-m", "ziglang"]
MARK = "sbi-check begin"


@pytest.fixture(scope="module")
def check_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sbi-check")
    obj, elf = out / "sbi_check.o", out / "sbi_check.elf"
    subprocess.run(
        [*ZIG, "cc", "-target", "riscv64-freestanding", "-mcpu=baseline_rv64", "-mcmodel=medany", "-O2",
         "-ffreestanding", "-fno-builtin", "-nostdlib", "-c", "-o", str(obj), str(HERE / "sbi_check.c")],
        check=True,
    )
    subprocess.run([*ZIG, "ld.lld", "-T", str(HERE / "sbi_check.ld"), "-o", str(elf), str(obj)], check=True)
    return elf


@pytest.fixture(scope="module")
def opensbi() -> Path:
    return obtain(debian.trixie_opensbi)


@pytest.fixture(scope="module")
def qemu_transcript(check_kernel: Path, opensbi: Path) -> str:
    qemu = shutil.which("qemu-system-riscv64")
    assert qemu, "qemu-system-riscv64 (Debian qemu-system-misc) is needed as the oracle"
    done = subprocess.run(
        [qemu, "-machine", "virt", "-m", "128M", "-smp", "1", "-nographic", "-bios", str(opensbi),
         "-kernel", str(check_kernel)],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def _kernel_part(transcript: str) -> str:
    """The check kernel's lines (OpenSBI ends its lines with CR LF; the builtin SBI writes bytes as given)."""
    assert MARK in transcript, transcript[-2000:]
    return transcript[transcript.index(MARK):].replace("\r\n", "\n")


def test_builtin_sbi_answers_as_opensbi_does(run_cli, check_kernel: Path, qemu_transcript: str) -> None:
    status, out, err = run_cli("--board", "virt", "--bios", "builtin", str(check_kernel))
    assert status == 0, err
    ours = out.decode()
    assert ours.startswith(MARK)  # no firmware banner: the kernel's first ecall prints first
    assert ours == _kernel_part(qemu_transcript)
    assert "timer interrupts 1, software interrupts 1\nsbi-check end\nsystem_reset(7): error=-3" in ours


def test_debian_opensbi_boots_the_kernel_on_virt(
    run_cli, check_kernel: Path, opensbi: Path, qemu_transcript: str
) -> None:
    status, out, err = run_cli("--board", "virt", "--bios", str(opensbi), "--max-insns", "100000000", str(check_kernel))
    assert status == 0, err
    ours = out.decode()
    assert _kernel_part(ours) == _kernel_part(qemu_transcript)
    banner = ours[: ours.index(MARK)]
    for line in ("Runtime SBI Version         : 2.0", "Domain0 Next Address        : 0x0000000080200000",
                 "Domain0 Next Mode           : S-mode", "Platform Console Device     : uart8250"):
        assert line in banner, banner


class _Hart:
    def __init__(self) -> None:
        self.lines: dict[int, bool] = {}

    def set_line(self, bit: int, level: bool) -> None:
        self.lines[bit] = level


def test_ipi_and_rfence_refuse_harts_that_do_not_exist() -> None:
    """The SBI v2.0 rule (OpenSBI 1.6 quietly ignores such harts): INVALID_PARAM."""
    sbi = Sbi(uart=None)  # type: ignore[arg-type]
    hart = _Hart()
    sbi.machine = type("M", (), {"traps": type("T", (), {"hart": hart})()})()  # type: ignore[assignment]
    assert sbi._ipi(0, [1, 3]) == (ERR_INVALID_PARAM, 0) and not hart.lines
    assert sbi._ipi(0, [0b11, 0]) == (ERR_INVALID_PARAM, 0)
    assert sbi._rfence(0, [1, 5]) == (ERR_INVALID_PARAM, 0)
    assert sbi._ipi(0, [0, (1 << 64) - 1]) == (SUCCESS, 0) and hart.lines == {2: True}  # base -1: every hart


def test_linux_image_header_picks_builtin_and_load_offset(tmp_path: Path) -> None:
    head = bytearray(64)
    head[8:16] = (0x200000).to_bytes(8, "little")
    head[0x38:0x3C] = b"RSC\x05"
    assert linux_image_offset(bytes(head)) == 0x200000 and linux_image_offset(bytes(64)) is None
    board = Virt(VirtOptions(bios="builtin"))
    assert board.image_base_for(bytes(head)) == RAM_BASE + 0x200000


def test_bios_needs_the_virt_board(run_cli) -> None:
    status, _, err = run_cli("--bios", "builtin", "firmware/riscv64/kernel.elf")
    assert status == 64 and "--bios needs --board virt" in err


def test_debian_linux_starts_under_the_builtin_sbi(run_cli) -> None:
    """Debian's Linux 6.12 under the simulator's SBI (the default for a Linux Image) through its
    early boot: the SBI version and every extension Linux looks for, found through the SBI
    base calls; the early console through DBCN; the device tree's memory. 30 M instructions,
    ~3 s of CPU; the whole boot is the next test."""
    kernel = obtain(debian.trixie_riscv64_kernel)
    status, out, err = run_cli(
        "--board", "virt", "--bios", "builtin", "-m", "128M", "--append", "earlycon=sbi console=ttyS0 nokaslr",
        "--max-insns", "30000000", str(kernel.image),
    )
    assert status == 124 and "instruction budget exhausted" in err, err
    lines = [line.split("] ", 1)[-1] for line in out.decode().splitlines()]
    assert lines[0].startswith("Linux version 6.12.") and "earlycon: sbi0 at I/O port 0x0 (options '')" in lines
    assert "SBI specification v2.0 detected" in lines and "SBI implementation ID=0x6b70 Version=0x1" in lines
    for ext in ("TIME", "IPI", "RFENCE", "SRST", "DBCN", "HSM"):
        assert f"SBI {ext} extension detected" in lines, (ext, lines[:40])
    assert "Kernel command line: earlycon=sbi console=ttyS0 nokaslr" in lines
    assert any(line.endswith("Total pages: 32768") for line in lines), lines  # 128 MiB of 4 KiB pages


def test_debian_linux_runs_init_under_the_builtin_sbi(run_cli) -> None:
    """The same kernel and initramfs as the shared OpenSBI boot (``linux/rvguest.py``), under the
    simulator's SBI from reset to the power-off, from the command line: init's and its child's
    lines equal QEMU's (which runs Debian's OpenSBI), and SRST's shutdown ends the run with 0.
    One whole boot (~0.37 G guest instructions, ~14 s of CPU): issue 10 asks for both firmwares."""
    from linux import oracle
    from linux.initramfs import initramfs
    from linux.qemu import APPEND, init_lines

    kernel = obtain(debian.trixie_riscv64_kernel)
    status, out, err = run_cli(
        "--board", "virt", "--bios", "builtin", "-m", "128M", "--initrd", str(obtain(initramfs, "riscv64")),
        "--append", APPEND, "--max-insns", "2500000000", "--timeout", "1200", str(kernel.image),
    )
    console = out.decode()
    assert status == 0 and "reboot: Power down" in console, (status, err, console[-2000:])
    assert "SBI implementation ID=0x6b70 Version=0x1" in console  # the builtin SBI, not OpenSBI
    expected = [line for line in oracle.boot("riscv64").init_lines if not line.startswith("kpsim-init: kallsyms")]
    assert any(line.startswith("kpsim-child: ") for line in expected), expected
    assert init_lines(console) == expected, console[-2000:]
