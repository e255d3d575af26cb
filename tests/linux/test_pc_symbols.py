"""Symbols of Debian's x86_64 bzImage on the ``pc`` board come from the kernel's own kallsyms
tables (Debian's System.map is a one-line stub), read from the decompressed kernel the loader
places in memory: the same table ``/proc/kallsyms`` prints under QEMU (``test_guest_kallsyms``
checks the reader against it), probes by name resolve, and a probe on a function's entry goes
past its ``call __fentry__`` (ftrace makes it a nop at boot), as on riscv64 past the ftrace
pad. ~3 s of CPU (decompressing the kernel and scanning it)."""

from __future__ import annotations

import subprocess
import sys

import capstone

from kprobesim.board.pc import PcBoard
from kprobesim.errors import BudgetExhausted
from linux import debian, obtain, oracle


def test_pc_image_symbols_are_the_kernels_kallsyms() -> None:
    kernel = obtain(debian.bookworm_amd64_kernel).image
    board = PcBoard()
    image = board.load(kernel)
    table = oracle.kallsyms("x86_64")
    assert len(image.symbols) == len(table) > 90_000
    for name in ("do_sys_openat2", "vfs_read", "kernel_clone", "__x64_sys_write", "_stext"):
        assert image.resolve(name) == table[name].address
    assert image.text[0] == (table["_stext"].address, table["_etext"].address)
    assert board.loaded is not None and board.loaded.kernel_map == (table["_text"].address, 0x3A00000, 0x1000000)
    # the entry's call __fentry__ is skipped: the probe goes on the function's first real instruction
    addr = image.resolve("do_sys_openat2")
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    first = next(md.disasm(image.read(addr, 16), addr))
    assert (first.mnemonic, int(first.op_str, 16)) == ("call", table["__fentry__"].address)
    assert image.probe_site(addr) == addr + 5
    assert image.describe(image.probe_site(image.resolve("vfs_read"))) == "vfs_read+0x5"


def test_cli_resolves_kernel_symbols_on_pc() -> None:
    kernel = obtain(debian.bookworm_amd64_kernel).image
    cmd = [sys.executable, "-m", "kprobesim.cli", "run", "--board", "pc", str(kernel), "--max-insns", "2000000",
           "-p", "p:op do_sys_openat2 dfd=$arg1:s32", "-p", "r:vr vfs_read $retval"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == BudgetExhausted.exit_status, proc.stderr
    assert "instruction budget exhausted" in proc.stderr
    bad = [*cmd[:-4], "-p", "p:op no_such_function_here"]
    proc = subprocess.run(bad, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 66 and proc.stderr.strip().endswith("unknown symbol 'no_such_function_here'"), proc.stderr
