"""Image loading and symbols both ways (``sym+off`` <-> address), ELF and raw + System.map."""

from __future__ import annotations

import pytest
from fwpaths import UNICORN_ARCHES, firmware

from kprobesim.errors import ImageError, ProbeError
from kprobesim.image import Image


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_symbols_both_ways_elf_and_raw(arch):
    elf = Image.load(firmware(arch))
    raw = Image.load(firmware(arch, "kernel.bin"), arch=arch, base=elf.span[0], symbols=firmware(arch, "System.map"))
    for image in (elf, raw):
        fib = image.symbol("fib")
        assert image.resolve("fib") == fib.addr
        assert image.resolve("fib+0x4") == fib.addr + 4
        assert image.describe(fib.addr) == "fib" and image.describe(fib.addr + 4) == "fib+0x4"
        assert image.lookup(fib.addr + 2) == (fib, 2)
        assert image.read(fib.addr, 8) == elf.read(fib.addr, 8)
    # System.map has no sizes: a raw image's function runs to the next symbol (alignment padding)
    gap = raw.symbol("fib").size - elf.symbol("fib").size
    assert 0 <= gap < 16
    assert elf.blacklist() == raw.blacklist() and elf.symbol("_start").addr in elf.blacklist()


def test_resolve_errors():
    image = Image.load(firmware("riscv64"))
    with pytest.raises(ProbeError, match="unknown symbol 'nope'"):
        image.resolve("nope+4")
    with pytest.raises(ProbeError, match="bad offset"):
        image.resolve("fib+zz")
    assert image.resolve("0x80000000") == 0x80000000


def test_bad_system_map(tmp_path):
    (tmp_path / "System.map").write_text("ffffffff80000000 T ok\nthis is not a map line\n")
    with pytest.raises(ImageError, match=r"System.map:2: not a System.map line"):
        Image.load(firmware("riscv64", "kernel.bin"), arch="riscv64", base=0x80000000, symbols=tmp_path / "System.map")
