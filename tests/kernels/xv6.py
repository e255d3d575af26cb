"""Build MIT's xv6-riscv at test time into a cache folder (the kernel and fs.img).

The source is the unmodified upstream tree in ``../shared/kernels/xv6-riscv`` (or
``$KPROBESIM_XV6_SRC``); nothing of it is committed here. The build follows the recipe in the
kernels README: Debian's clang for C, zig's clang for ``user/initcode.S`` (clang 14 cannot
assemble it), zig's ld.lld as the linker, llvm-objcopy/objdump, and the file system image
written by ``xv6fs`` (the shared tree has no ``mkfs/``).
The result is keyed by a hash of the source tree, so later runs reuse it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from .xv6fs import make_fs

SRC = Path(os.environ.get("KPROBESIM_XV6_SRC", Path(__file__).resolve().parents[3] / "shared/kernels/xv6-riscv"))
CACHE = Path(os.environ.get("KPROBESIM_TEST_CACHE", Path.home() / ".cache/kprobesim-test"))

_CC = """#!/bin/sh
# C through Debian's clang; initcode.S (clang 14 cannot assemble it) through zig's clang.
for a in "$@"; do
  case "$a" in
    *initcode.S) zig=1 ;;
  esac
done
if [ -n "$zig" ]; then
  for a in "$@"; do shift; case "$a" in -march=*) ;; *) set -- "$@" "$a" ;; esac; done
  exec {py} -m ziglang cc -target riscv64-freestanding -mcpu=baseline_rv64-c -fno-sanitize=all "$@"
fi
exec clang --target=riscv64-unknown-elf -march=rv64gc -mabi=lp64d "$@" -Wno-gnu-designator -Wno-unused-but-set-variable
"""
_LD = """#!/bin/sh
exec {py} -m ziglang ld.lld --image-base=0 --no-rosegment "$@"
"""


def source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted(SRC.rglob("*")):
        if path.is_file() and path.suffix in (".c", ".h", ".S", ".ld", ".pl", "") and ".git" not in path.parts:
            h.update(str(path.relative_to(SRC)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def available() -> str | None:
    """Why xv6 cannot be built here (None when it can)."""
    if not (SRC / "Makefile").is_file():
        return f"xv6 source not found at {SRC}"
    for tool in ("clang", "make", "perl", "llvm-objcopy", "llvm-objdump"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def build() -> Path:
    """The folder holding ``kernel/kernel`` and ``fs.img`` (built once per source version)."""
    out = CACHE / f"xv6-riscv-{source_hash()}"
    if (out / "fs.img").is_file() and (out / "kernel/kernel").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(SRC, tmp, ignore=shutil.ignore_patterns(".git"))
    tools = tmp / ".tools"
    tools.mkdir()
    for name, text in (("cc", _CC), ("ld", _LD)):
        path = tools / name
        path.write_text(text.format(py=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    programs = re.findall(r"\$U/(_\w+)", (tmp / "Makefile").read_text().split("UPROGS=", 1)[1].split("\n\n")[0])
    cmd = [
        "make", f"-j{os.cpu_count() or 1}", "TOOLPREFIX=", f"CC={tools / 'cc'}", f"LD={tools / 'ld'}",
        "OBJCOPY=llvm-objcopy", "OBJDUMP=llvm-objdump", "kernel/kernel", *(f"user/{p}" for p in programs),
    ]
    done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"xv6 build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    files = [("README", (tmp / "README").read_bytes())]
    files += [(p.lstrip("_"), (tmp / "user" / p).read_bytes()) for p in programs]
    (tmp / "fs.img").write_bytes(make_fs(files))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
