"""eBPF programs built against a Debian kernel's own types, at test time: the kernel's ``.BTF``
blob (found in the image) is written to a file, Debian's ``bpftool btf dump file ... format c``
turns it into ``vmlinux.h``, and zig's clang compiles a program of this folder with libbpf's
headers from ``/usr/include`` (Debian's ``libbpf-dev``). Both products are cached in the test
cache, keyed by what goes into them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from kprobesim.guest.btf import find_btf

from . import oracle
from .cache import FetchError, cache_dir, locked, publish
from .initramfs import _key

HERE = Path(__file__).resolve().parent
BPF_TARGET = {"riscv64": "riscv", "x86_64": "x86"}


def vmlinux_h(arch: str) -> Path:
    """The ``vmlinux.h`` bpftool writes for the Debian kernel of ``arch``."""
    if shutil.which("bpftool") is None:
        raise FetchError("bpftool is not installed (Debian: apt-get install bpftool)")
    blob = find_btf(oracle.vmlinux(arch))
    folder = cache_dir() / "core" / f"vmlinux-{arch}-{_key(blob)}"

    def dump(out: Path) -> None:
        out.mkdir()
        (out / "vmlinux.btf").write_bytes(blob)
        proc = subprocess.run(["bpftool", "btf", "dump", "file", str(out / "vmlinux.btf"), "format", "c"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or "struct task_struct {" not in proc.stdout:
            raise FetchError(f"bpftool btf dump of the {arch} kernel's BTF failed: {proc.stderr.strip()[-200:]}")
        (out / "vmlinux.h").write_text(proc.stdout)

    with locked("core"):
        return publish(folder, dump) / "vmlinux.h"


def build(name: str, arch: str) -> Path:
    """``name``.c of this folder compiled for eBPF against ``arch``'s kernel ``vmlinux.h``."""
    header = vmlinux_h(arch)
    source = HERE / f"{name}.c"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", "-O2", "-g", "-c",
           f"-I{header.parent}", "-I/usr/include", f"-D__TARGET_ARCH_{BPF_TARGET[arch]}"]
    key = _key(source.read_bytes(), header.parent.name.encode(), " ".join(cmd[1:]).encode())
    target = cache_dir() / "core" / f"{name}-{arch}-{key}.o"

    def compile_(out: Path) -> None:
        proc = subprocess.run([*cmd, str(source), "-o", str(out)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise FetchError(f"zig cc -target bpfel-freestanding {source.name} failed: {last}")

    with locked("core"):
        return publish(target, compile_)
