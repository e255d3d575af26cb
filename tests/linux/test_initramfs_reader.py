"""kprobesim.guest.initramfs reads what the kernel unpacks: newc members (the tests' own cpio
writer), compressed archives appended after padding, later members replacing earlier ones, and
one clear line for a damaged archive."""

from __future__ import annotations

import gzip

import pytest

from kprobesim.errors import ImageError
from kprobesim.guest.initramfs import files
from linux import cpio


def test_members_compression_and_replacement() -> None:
    first = cpio.newc([cpio.directory("bin"), cpio.regular("bin/a", b"one"), cpio.regular("init", b"\x7fELF")])
    second = gzip.compress(cpio.newc([cpio.regular("bin/a", b"two"), cpio.directory("init")]), mtime=0)
    assert files(first) == {"bin/a": b"one", "init": b"\x7fELF"}
    assert files(first + bytes(512) + second) == {"bin/a": b"two"}  # init became a directory


def test_damaged_archives_are_one_line_each() -> None:
    good = cpio.newc([cpio.regular("init", b"x" * 100)])
    with pytest.raises(ImageError, match="runs past the archive's end"):
        files(good[:150])
    with pytest.raises(ImageError, match="not hex"):
        files(good[:6] + b"zzzzzzzz" + good[14:])
    with pytest.raises(ImageError, match="no cpio archive at offset 0x0"):
        files(b"garbage!" * 20)
