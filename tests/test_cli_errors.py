"""Bad input gives one clear line and a distinct exit status, never a traceback."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
from linux import cpio

from kprobesim.errors import BudgetExhausted, GuestFault, ImageError, UsageError


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("kprobesim: "), err
    assert "Traceback" not in err
    return lines[0]


def test_unknown_arch(run_cli, tmp_path):
    status, _, err = run_cli("--arch", "sparc64", str(tmp_path / "x.bin"))
    assert status == UsageError.exit_status
    assert "unknown architecture 'sparc64'" in _one_line(err)


def test_missing_file(run_cli, tmp_path):
    status, _, err = run_cli(str(tmp_path / "nothere.elf"))
    assert status == ImageError.exit_status
    assert "no such file" in _one_line(err)


def test_empty_file(run_cli, tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    status, _, err = run_cli("--arch", "riscv64", str(tmp_path / "empty.bin"))
    assert status == ImageError.exit_status and "empty file" in _one_line(err)


def test_truncated_elf(run_cli, tmp_path):
    (tmp_path / "t.elf").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(20))
    status, _, err = run_cli(str(tmp_path / "t.elf"))
    assert status == ImageError.exit_status and "truncated ELF" in _one_line(err)


def _elf_header(machine: int) -> bytes:
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    return ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x1000, 64, 0, 0, 64, 56, 0, 64, 0, 0)


def test_elf_for_another_arch(run_cli, tmp_path):
    (tmp_path / "arm.elf").write_bytes(_elf_header(183))  # aarch64
    status, _, err = run_cli(str(tmp_path / "arm.elf"))
    assert status == ImageError.exit_status and "ELF machine 183" in _one_line(err)


def test_elf_arch_mismatch(run_cli, tmp_path):
    (tmp_path / "x.elf").write_bytes(_elf_header(62))
    status, _, err = run_cli("--arch", "riscv64", str(tmp_path / "x.elf"))
    assert status == ImageError.exit_status and "ELF is for x86_64, not riscv64" in _one_line(err)


def test_elf_without_segments(run_cli, tmp_path):
    (tmp_path / "n.elf").write_bytes(_elf_header(243))
    status, _, err = run_cli(str(tmp_path / "n.elf"))
    assert status == ImageError.exit_status and "no loadable segments" in _one_line(err)


def test_raw_without_arch(run_cli, tmp_path):
    (tmp_path / "k.bin").write_bytes(b"\x13\x00\x00\x00")
    status, _, err = run_cli(str(tmp_path / "k.bin"))
    assert status == ImageError.exit_status and "needs --arch" in _one_line(err)


def test_raw_outside_ram(run_cli, tmp_path):
    (tmp_path / "k.bin").write_bytes(b"\x13\x00\x00\x00")
    status, _, err = run_cli("--arch", "riscv64", "--base", "0x1000", str(tmp_path / "k.bin"))
    assert status == ImageError.exit_status and "outside riscv64 RAM" in _one_line(err)


@pytest.mark.parametrize("option", ["--base", "--max-insns"])
@pytest.mark.parametrize("text", ["zz", "1_000", "0o17", "0b1", "017", " 5", "0x"])
def test_bad_number(run_cli, tmp_path, option, text):
    """Numbers are decimal or 0x hex; Python's other spellings are refused, not read."""
    status, _, err = run_cli("--arch", "riscv64", option, text, str(tmp_path / "k.bin"))
    assert status == UsageError.exit_status and "not a number" in _one_line(err), err


@pytest.mark.parametrize("text", ["1_0", "0o4M", "M", "-"])
def test_bad_size(run_cli, tmp_path, text):
    status, _, err = run_cli("--arch", "riscv64", "--board", "virt", "--memory", text, str(tmp_path / "k.bin"))
    assert status == UsageError.exit_status and "not a size" in _one_line(err), err


# riscv64 `j .` (jal x0, 0): spins forever
SPIN = struct.pack("<I", 0x0000006F)
# riscv64 `ld a0, 0(zero)`: loads from unmapped address 0, no trap vector installed
BAD_LOAD = struct.pack("<I", 0x00003503)


def test_budget_exhausted(run_cli, tmp_path):
    (tmp_path / "spin.bin").write_bytes(SPIN)
    status, _, err = run_cli("--arch", "riscv64", "--max-insns", "5000", str(tmp_path / "spin.bin"))
    assert status == BudgetExhausted.exit_status
    assert "instruction budget exhausted after 5000 instructions" in _one_line(err)


def test_time_limit(run_cli, tmp_path):
    (tmp_path / "spin.bin").write_bytes(SPIN)
    status, _, err = run_cli(
        "--arch", "riscv64", "--max-insns", str(10**12), "--timeout", "0.3", str(tmp_path / "spin.bin")
    )
    assert status == BudgetExhausted.exit_status and "time limit reached" in _one_line(err)


def test_guest_fault_reports_pc_and_registers(run_cli, tmp_path):
    (tmp_path / "bad.bin").write_bytes(BAD_LOAD)
    status, _, err = run_cli("--arch", "riscv64", str(tmp_path / "bad.bin"))
    assert status == GuestFault.exit_status
    line = _one_line(err)
    assert "guest fault: load access fault at 0x0" in line and "pc=0x80000000" in line
    assert "a0=" in err and "mcause=" in err


def test_no_traceback_from_the_real_command(tmp_path):
    (tmp_path / "t.elf").write_bytes(b"\x7fELF")
    proc = subprocess.run(
        [sys.executable, "-m", "kprobesim.cli", str(tmp_path / "t.elf")], capture_output=True, text=True
    )
    assert proc.returncode == ImageError.exit_status
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("arch", ["riscv64", "x86_64"])
def test_virtual_time_is_exact(arch, tmp_path):
    """A spin loop of N instructions under a budget stops after exactly N."""
    from kprobesim.machine import Machine

    code = SPIN if arch == "riscv64" else b"\xeb\xfe"  # jmp .
    (tmp_path / "spin.bin").write_bytes(code)
    from kprobesim.arch import get_arch
    from kprobesim.image import Image

    a = get_arch(arch)
    m = Machine(a, Image.load(tmp_path / "spin.bin", arch=arch, base=a.default_base))
    with pytest.raises(BudgetExhausted):
        m.run(max_insns=12345)
    assert m.instructions == 12345


def test_fuzz_board_virt_options(run_cli, tmp_path):
    """fuzz --board virt: what it needs and what it refuses, one line each, before any boot."""
    image = tmp_path / "Image"
    image.write_bytes(bytes(64))
    cases = [
        (("--board", "virt", str(image)), UsageError, "needs the kernel IMAGE and --initrd"),
        (("--initrd", str(tmp_path / "i.cpio")), UsageError, "--initrd needs --board virt"),
        (("--board", "virt", "--initrd", str(tmp_path / "none.cpio"), str(image)), ImageError, "none.cpio"),
    ]
    (tmp_path / "bad.cpio").write_bytes(b"070701" + b"0" * 200)
    cases.append((("--board", "virt", "--initrd", str(tmp_path / "bad.cpio"), str(image)), ImageError, "initramfs"))
    for args, error, text in cases:
        status, _, err = run_cli("fuzz", "--arch", "riscv64", *args)
        assert status == error.exit_status and text in _one_line(err), (args, err)


def test_fuzz_board_pc_options(run_cli, tmp_path):
    """fuzz --board pc: what it needs and what it refuses, one line each, before any boot."""
    image = tmp_path / "bzImage"
    image.write_bytes(bytes(64))
    (tmp_path / "bad.cpio").write_bytes(b"070701" + b"0" * 200)
    cases = [
        (("--arch", "riscv64", "--board", "pc", str(image)), UsageError, "--board pc is an x86_64 machine"),
        (("--arch", "x86_64", "--board", "pc", str(image)), UsageError, "needs the kernel IMAGE and --initrd"),
        (("--arch", "x86_64", "--append", "quiet"), UsageError, "--append needs --board virt or pc"),
        (("--arch", "x86_64", "--board", "pc", "-m", "64M", "--initrd", str(tmp_path / "bad.cpio"), str(image)),
         UsageError, "--memory needs --board virt"),
        (("--arch", "x86_64", "--board", "pc", "--initrd", str(tmp_path / "none.cpio"), str(image)),
         ImageError, "none.cpio"),
        (("--arch", "x86_64", "--board", "pc", "--initrd", str(tmp_path / "bad.cpio"), str(image)),
         ImageError, "initramfs"),
    ]
    for args, error, text in cases:
        status, _, err = run_cli("fuzz", *args)
        assert status == error.exit_status and text in _one_line(err), (args, err)


def test_compare_board_options(run_cli, tmp_path):
    """compare --board: per-arch options, what each needs and what it refuses, one line each,
    before any boot (the second guest's bad image is found before the first one boots)."""
    image = tmp_path / "bzImage"
    image.write_bytes(bytes(64))
    (tmp_path / "rd.cpio").write_bytes(b"070701" + b"0" * 200)
    rd = str(tmp_path / "rd.cpio")
    good = tmp_path / "good.cpio"  # an /init with an ELF header: the bad kernel is what stops it
    good.write_bytes(cpio.newc([cpio.regular("init", b"\x7fELF" + bytes(60), 0o755)]))
    cases = [
        (("--board", "mips"), UsageError, "invalid choice: 'mips'"),
        (("--board", "pc", "--board", "pc"), UsageError, "--board pc given twice"),
        (("--board", "pc"), UsageError, "--board pc needs --image x86_64=PATH (the kernel) and --initrd x86_64=FILE"),
        (("--board", "pc", "--image", f"x86_64={image}"), UsageError, "needs --image x86_64=PATH"),
        (("--initrd", f"x86_64={rd}"), UsageError, "--initrd x86_64=... needs --board pc"),
        (("--board", "pc", "--append", "riscv64=quiet"), UsageError, "--append riscv64=... needs --board virt"),
        (("--board", "pc", "--append", "console=ttyS0"), UsageError,
         "--append takes ARCH=CMDLINE with ARCH one of riscv64, x86_64, not 'console=ttyS0'"),
        (("--initrd", "loongarch64=rd"), UsageError, "--initrd takes ARCH=FILE with ARCH one of riscv64, x86_64"),
        (("--board", "pc", "--bios", f"x86_64={image}"), UsageError,
         "--bios takes ARCH=FIRMWARE with ARCH one of riscv64"),
        (("--board", "virt", "-m", "riscv64=lots"), UsageError, "-m riscv64=lots: not a size"),
        (("--board", "pc", "--initrd", f"x86_64={rd}", "--initrd", f"x86_64={rd}"), UsageError,
         "--initrd given twice for x86_64"),
        (("--arch", "riscv64", "--board", "pc", "--image", f"x86_64={image}", "--initrd", f"x86_64={rd}"),
         UsageError, "--board pc runs x86_64, which --arch leaves out"),
        (("--board", "pc", "--image", f"x86_64={image}", "--initrd", f"x86_64={rd}"), ImageError, "initramfs"),
        (("--board", "virt", "--image", f"riscv64={image}", "--initrd", f"riscv64={tmp_path / 'none.cpio'}"),
         ImageError, "none.cpio"),
        (("--board", "pc", "--image", f"x86_64={image}", "--initrd", f"x86_64={good}"), ImageError, "bzImage"),
    ]
    for args, error, text in cases:
        status, out, err = run_cli("compare", "-p", "p:op do_sys_openat2", *args)
        assert status == error.exit_status and text in _one_line(err), (args, err)
        assert not out


def test_linux_kernel_on_the_default_board(run_cli, tmp_path):
    """A Linux kernel run without its board (issue 11: ``kprobesim --arch x86_64 vmlinuz`` ran the
    bzImage as a flat binary and faulted at its first instruction): one line naming the board."""
    bz = bytearray(0x400)
    bz[0x1FE:0x200], bz[0x202:0x206] = b"\x55\xaa", b"HdrS"
    (tmp_path / "vmlinuz").write_bytes(bytes(bz))
    image = bytearray(0x400)
    image[8:16], image[0x38:0x3C] = (0x200000).to_bytes(8, "little"), b"RSC\x05"
    (tmp_path / "Image").write_bytes(bytes(image))
    for arch, name, board in (("x86_64", "vmlinuz", "--board pc"), ("riscv64", "Image", "--board virt")):
        status, out, err = run_cli("--arch", arch, str(tmp_path / name))
        assert status == UsageError.exit_status and f"boot it with {board}" in _one_line(err), err
        assert not out
