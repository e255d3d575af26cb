"""Compile the test eBPF programs with zig's clang (``python -m ziglang cc``).

Objects go to a directory chosen by the caller (a pytest temp dir); nothing is committed.
Needs Debian's ``libbpf-dev`` for ``<bpf/bpf_helpers.h>`` and ``<bpf/bpf_tracing.h>``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROGS_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = PROGS_DIR.parents[2] / "kprobesim" / "ebpf" / "include"
#: kprobesim arch name -> libbpf's __TARGET_ARCH_xxx suffix
ARCHES = {"riscv64": "riscv", "loongarch64": "loongarch", "x86_64": "x86"}
SOURCES = sorted(p.stem for p in PROGS_DIR.glob("*.c"))


def have_toolchain() -> str | None:
    """None if programs can be built, else the reason they cannot."""
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        return "libbpf headers missing (apt-get install libbpf-dev)"
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return "ziglang is not installed (pip install ziglang)"
    return None


def compile_cmd(src: Path, out: Path, arch: str, compiler: list[str] | None = None,
                arch_dir: bool = False) -> list[str]:
    """The command line that builds ``src`` for ``arch`` (a key of :data:`ARCHES`).

    ``arch_dir``: select the arch through ``include/<arch>/vmlinux.h`` instead of
    ``-D__TARGET_ARCH_xxx``.
    """
    cc = compiler or [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding"]
    sel = [f"-I{INCLUDE_DIR / arch}"] if arch_dir else [f"-D__TARGET_ARCH_{ARCHES[arch]}"]
    return [*cc, "-O2", "-g", "-c", *sel, f"-I{INCLUDE_DIR}", "-I/usr/include",
            "-Wall", "-Werror", str(src), "-o", str(out)]


def build(name: str, arch: str, outdir: Path, compiler: list[str] | None = None,
          arch_dir: bool = False) -> Path:
    """Compile ``progs/<name>.c`` for ``arch`` into ``outdir``; return the object's path."""
    outdir.mkdir(parents=True, exist_ok=True)
    out = outdir / f"{name}.{arch}{'.dir' if arch_dir else ''}.o"
    cmd = compile_cmd(PROGS_DIR / f"{name}.c", out, arch, compiler, arch_dir)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"compiling {name}.c for {arch} failed:\n{' '.join(cmd)}\n"
                           f"{res.stderr}")
    return out


def build_all(outdir: Path, arches: list[str] | None = None,
              compiler: list[str] | None = None) -> dict[tuple[str, str], Path]:
    """Build every program for every arch: ``{(name, arch): path}``."""
    return {(n, a): build(n, a, outdir, compiler) for a in arches or list(ARCHES)
            for n in SOURCES}


def debian_clang() -> list[str] | None:
    """Debian's clang as a BPF compiler, if installed."""
    cc = shutil.which("clang")
    return [cc, "-target", "bpf"] if cc else None


if __name__ == "__main__":
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "build-ebpf")
    for (n, a), p in build_all(dest).items():
        print(f"{n:12} {a:12} {p}")
