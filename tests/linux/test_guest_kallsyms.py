"""kprobesim.guest.kallsyms on Debian's kernels, against /proc/kallsyms of the same kernel
booted under QEMU with ``nokaslr`` (init prints its line count, size and FNV-1a hash, and every
1000th line)."""

from __future__ import annotations

import pytest

from kprobesim.guest.kallsyms import KallsymsError, find_kallsyms
from linux import oracle

#: Both modules read the QEMU oracle's boots (``oracle.boot``): one worker runs them all, so no
#: worker idles on the file lock while the other's QEMU makes the run they share.
pytestmark = pytest.mark.xdist_group(oracle.XDIST_GROUP)

ARCHES = ["riscv64", "x86_64"]


@pytest.mark.parametrize("arch", ARCHES)
def test_kallsyms_equal_proc_kallsyms(arch: str) -> None:
    table = oracle.kallsyms(arch)
    proc = oracle.digest(oracle.boot(arch).init_lines)
    text = table.proc_text()
    lines = text.splitlines()
    for number, line in proc.samples.items():
        assert lines[number] == line
    assert (len(lines), len(text)) == (proc.lines, proc.size)
    assert oracle.fnv1a64(text.encode()) == proc.fnv1a64  # every address, type and name
    assert len(proc.samples) == (proc.lines + 999) // 1000 > 50


@pytest.mark.parametrize("arch, layout, base, text", [("riscv64", "6.2+", 0xFFFFFFFF80000000, 0xFFFFFFFF80002000),
                                                      ("x86_64", "6.1", 0xFFFFFFFF81000000, 0xFFFFFFFF81000000)])
def test_kallsyms_layouts_and_lookups(arch: str, layout: str, base: int, text: int) -> None:
    table = oracle.kallsyms(arch)
    assert (table.layout, table.relative_base, table.absolute_percpu) == (layout, base, arch == "x86_64")
    for name in ("do_sys_openat2", "kernel_clone", "vfs_read", "schedule", "start_kernel"):
        sym = table[name]
        assert sym.type in "Tt" and sym.address >= base
        assert table.lookup(sym.address + 2) == (sym, 2)
    assert table["_text"].address == text  # riscv64: after the 8 KiB Image/EFI header
    assert {"T", "t", "D", "d", "R", "r", "B", "b"} <= {s.type for s in table.symbols}


def test_kallsyms_in_guest_memory_layout() -> None:
    """The tables are found wherever they sit: the riscv64 Image placed at its physical load
    address inside a zeroed 'RAM' gives the same table as the file."""
    image = oracle.vmlinux("riscv64")
    ram = bytearray(0x200000) + image + bytes(0x100000)
    assert find_kallsyms(ram).symbols == oracle.kallsyms("riscv64").symbols


def test_kallsyms_refuses_what_is_not_a_kernel() -> None:
    with pytest.raises(KallsymsError, match="no kallsyms tables"):
        find_kallsyms(b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00" + bytes(4096))
    image = bytearray(oracle.vmlinux("riscv64"))
    at = oracle.kallsyms("riscv64").tables["markers"]
    image[at + 4:at + 8] = b"\xff\xff\xff\x7f"  # a marker that no longer matches the names
    with pytest.raises(KallsymsError):
        find_kallsyms(image)
