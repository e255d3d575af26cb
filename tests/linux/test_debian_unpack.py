"""Unpacking a Debian package's members (``debian._unpack``) from a package dpkg-deb builds here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from linux.cache import FetchError
from linux.debian import _unpack

FILES = {
    "boot/config-6.1": b"CONFIG_X=y\n",
    "boot/vmlinuz-6.1": b"kernel" * 1000,
    "boot/sub/inner": b"deeper",
    "lib/modules/6.1/a.ko": os.urandom(1 << 20),  # after ./boot/: never decompressed
    "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin": b"fw",
    "usr/lib/riscv64-linux-gnu/opensbi-extra/x": b"not opensbi/",
    "usr/share/doc/pkg/copyright": b"text",
}


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pkg") / "root"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(
        "Package: kpsim-test\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    out = root.parent / "kpsim-test_1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("members", [("./boot/*",), ("./usr/lib/riscv64-linux-gnu/opensbi/*",),
                                     ("./boot/*", "./usr/share/doc/*")])
def test_unpacks_exactly_the_members(deb: Path, tmp_path: Path, members: tuple[str, ...]) -> None:
    _unpack(deb, tmp_path / "out", members)
    prefixes = tuple(m[2:-1] for m in members)
    assert _tree(tmp_path / "out") == {k: v for k, v in FILES.items() if k.startswith(prefixes)}


def test_no_member_is_one_line(deb: Path, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"kpsim-test_1_all.deb has none of ./etc/\*"):
        _unpack(deb, tmp_path / "out", ("./etc/*",))


def test_a_broken_package_is_one_line(deb: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(deb.read_bytes()[:600])
    with pytest.raises(FetchError, match=r"unpacking bad.deb failed: "):
        _unpack(bad, tmp_path / "out", ("./boot/*",))
