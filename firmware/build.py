#!/usr/bin/env python3
"""Build the bundled firmware kernels with ziglang's clang/lld.

    python firmware/build.py [--arch A ...] [--out DIR]

For each architecture this compiles firmware/kernel/*.c and firmware/<arch>/*.c, *.S, links them
with firmware/<arch>/kernel.ld and writes <out>/<arch>/kernel.elf, kernel.bin (the loaded bytes
from the lowest load address, gaps zero-filled, .bss left out) and System.map (nm-style
"%016x <type> <name>" lines sorted by address).  Without --out the files are written in place
(firmware/<arch>/).  The output is byte-for-byte reproducible: sources are compiled from the
firmware directory with relative paths, without debug information, in sorted order.

kernel.btf is the kernel's BTF (the types CO-RE relocations are resolved against): the C sources
are compiled a second time with DWARF, linked the same way, and Debian's ``pahole -J`` (package
``dwarves``) converts that DWARF to BTF; the raw ``.BTF`` section is written out.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent
ARCHES = ("riscv64", "loongarch64", "x86_64")
OUTPUTS = ("kernel.elf", "kernel.bin", "System.map", "kernel.btf")

ZIG = [sys.executable, "-m", "ziglang"]

COMMON_CFLAGS = [
    "-O2",
    "-g0",
    "-std=gnu11",
    "-ffreestanding",
    "-fno-builtin",
    "-nostdinc",
    "-fno-pic",
    "-fno-pie",
    "-fno-common",
    "-fno-omit-frame-pointer",
    "-mno-omit-leaf-frame-pointer",
    "-fno-stack-protector",
    "-fno-strict-aliasing",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-sanitize=all",
    "-fno-ident",
    "-ffile-prefix-map=" + str(FIRMWARE) + "=.",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Ikernel",
]


@dataclass(frozen=True)
class ArchConfig:
    """Compiler and linker flags of one port."""

    target: str
    cflags: tuple[str, ...]
    asflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = field(default=())


CONFIGS: dict[str, ArchConfig] = {
    # rv64imac, soft-float ABI (lp64): no f/d registers anywhere in the kernel.
    "riscv64": ArchConfig(
        target="riscv64-freestanding",
        cflags=(
            "-mcpu=generic_rv64+m+a+c+zicsr+zifencei",
            "-mabi=lp64",
            "-mcmodel=medany",
            "-mrelax",  # calls become jal, as in a Linux build (probes.S opts out locally)
        ),
    ),
    # generic_la64: no LSX/LASX; lp64s: soft-float ABI.  The assembly is not relaxed so the
    # probe targets keep their first instruction.
    "loongarch64": ArchConfig(
        target="loongarch64-freestanding",
        cflags=("-mcpu=generic_la64", "-mabi=lp64s", "-mcmodel=normal"),
        asflags=("-mno-relax",),
    ),
    # No red zone (interrupts push on the kernel stack), no SSE/MMX/x87 code.  zig's -mcpu
    # feature list wins over -mgeneral-regs-only, so the features are removed there too.
    "x86_64": ArchConfig(
        target="x86_64-freestanding",
        cflags=(
            "-mcpu=x86_64-sse-sse2-mmx-x87",
            "-mno-red-zone",
            "-mgeneral-regs-only",
            "-mno-sse",
            "-mno-sse2",
            "-mno-mmx",
            "-mno-80387",
            "-mcmodel=small",
        ),
    ),
}

LDFLAGS = [
    "-nostdlib",
    "-static",
    "--build-id=none",
    "-z",
    "noexecstack",
    "-z",
    "norelro",
    "-z",
    "max-page-size=4096",
    "--no-undefined",
    "--discard-locals",  # no .L temporaries in the symbol table
]


def sources(arch: str) -> list[str]:
    """Input files relative to FIRMWARE, in a fixed (sorted) order."""
    files = sorted(p.relative_to(FIRMWARE).as_posix() for p in (FIRMWARE / "kernel").glob("*.c"))
    arch_dir = FIRMWARE / arch
    files += sorted(
        p.relative_to(FIRMWARE).as_posix()
        for p in arch_dir.iterdir()
        if p.is_file() and p.suffix in (".c", ".S")
    )
    return files


def _run(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), cwd=FIRMWARE, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")


def compile_and_link(arch: str, elf_path: Path, objdir: Path, debug: bool = False) -> None:
    """Compile and link one port (``debug``: with DWARF, for the BTF only)."""
    cfg = CONFIGS[arch]
    common = [("-g" if f == "-g0" and debug else f) for f in COMMON_CFLAGS]
    cflags = [*common, "-I" + arch, "-target", cfg.target, *cfg.cflags]
    jobs: list[list[str]] = []
    objects: list[str] = []
    for src in sources(arch):
        obj = str(objdir / (src.replace("/", "__") + (".g.o" if debug else ".o")))
        extra = list(cfg.asflags) if src.endswith(".S") else []
        jobs.append([*ZIG, "cc", *cflags, *extra, "-c", src, "-o", obj])
        objects.append(obj)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for fut in [pool.submit(_run, job) for job in jobs]:
            fut.result()
    script = f"{arch}/kernel.ld"
    _run([*ZIG, "ld.lld", *LDFLAGS, *CONFIGS[arch].ldflags, "-T", script, "-o", str(elf_path), *objects])


# ---- ELF reading (64-bit little-endian only, which all three ports are) ----

SHT_SYMTAB = 2
SHT_NOBITS = 8
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
PT_LOAD = 1
STT_NOTYPE, STT_OBJECT, STT_FUNC = 0, 1, 2
STB_LOCAL = 0
SHN_UNDEF, SHN_ABS = 0, 0xFFF1


@dataclass
class Section:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


def _sections(data: bytes) -> list[Section]:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = []
    for i in range(shnum):
        (name, typ, flags, addr, off, size, link, _info, _align, entsize) = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * shentsize
        )
        raw.append((name, typ, flags, addr, off, size, link, entsize))
    stroff = raw[shstrndx][4]

    def cstr(off: int) -> str:
        end = data.index(b"\0", off)
        return data[off:end].decode()

    return [Section(cstr(stroff + r[0]), *r[1:]) for r in raw]


def raw_image(data: bytes) -> bytes:
    """The bytes of the PT_LOAD segments (file part only) from the lowest load address."""
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segs = []
    for i in range(phnum):
        typ, _flags, off, vaddr, _paddr, filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize
        )
        if typ == PT_LOAD and filesz:
            segs.append((vaddr, data[off : off + filesz]))
    segs.sort()
    base = segs[0][0]
    out = bytearray()
    for vaddr, chunk in segs:
        start = vaddr - base
        if start > len(out):
            out += bytes(start - len(out))
        out[start : start + len(chunk)] = chunk
    return bytes(out)


def system_map(data: bytes) -> str:
    """nm-style symbol list: functions, objects and global labels, sorted by address."""
    secs = _sections(data)
    symtab = next(s for s in secs if s.type == SHT_SYMTAB)
    strtab = secs[symtab.link]
    entries: set[tuple[int, str, str]] = set()
    for i in range(1, symtab.size // symtab.entsize):
        name_off, info, _other, shndx, value, _size = struct.unpack_from(
            "<IBBHQQ", data, symtab.offset + i * symtab.entsize
        )
        typ, bind = info & 0xF, info >> 4
        if shndx == SHN_UNDEF or typ not in (STT_NOTYPE, STT_OBJECT, STT_FUNC):
            continue
        end = data.index(b"\0", strtab.offset + name_off)
        name = data[strtab.offset + name_off : end].decode()
        if not name or (typ == STT_NOTYPE and bind == STB_LOCAL):
            continue  # mapping symbols ($x, $d), local labels
        if shndx == SHN_ABS:
            letter = "A"
        else:
            sec = secs[shndx]
            if typ == STT_FUNC or sec.flags & SHF_EXECINSTR:
                letter = "T"
            elif sec.type == SHT_NOBITS:
                letter = "B"
            elif sec.flags & SHF_WRITE:
                letter = "D"
            else:
                letter = "R"
        if bind == STB_LOCAL:
            letter = letter.lower()
        entries.add((value, name, letter))
    lines = [f"{addr:016x} {letter} {name}\n" for addr, name, letter in sorted(entries)]
    return "".join(lines)


def section_bytes(data: bytes, name: str) -> bytes:
    """The contents of section ``name`` of an ELF image."""
    for sec in _sections(data):
        if sec.name == name:
            return data[sec.offset : sec.offset + sec.size]
    raise RuntimeError(f"no {name} section")


def kernel_btf(arch: str, tmp: Path) -> bytes:
    """The kernel's BTF: a DWARF build of the same sources, converted by ``pahole -J``."""
    debug_elf = tmp / "kernel.debug.elf"
    compile_and_link(arch, debug_elf, tmp, debug=True)
    proc = subprocess.run(["pahole", "-J", str(debug_elf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pahole -J failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return section_bytes(debug_elf.read_bytes(), ".BTF")


def build(arch: str, out: Path | None = None) -> Path:
    """Build one architecture; returns the directory holding its three output files."""
    if arch not in CONFIGS:
        raise ValueError(f"unknown arch {arch!r} (known: {', '.join(ARCHES)})")
    dest = (out / arch) if out is not None else FIRMWARE / arch
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fw-{arch}-") as tmp:
        elf_tmp = Path(tmp) / "kernel.elf"
        compile_and_link(arch, elf_tmp, Path(tmp))
        data = elf_tmp.read_bytes()
        btf = kernel_btf(arch, Path(tmp))
    (dest / "kernel.elf").write_bytes(data)
    (dest / "kernel.btf").write_bytes(btf)
    (dest / "kernel.bin").write_bytes(raw_image(data))
    (dest / "System.map").write_text(system_map(data))
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--arch", action="append", choices=ARCHES, help="architecture to build (repeatable; default: all)"
    )
    ap.add_argument("--out", type=Path, help="write DIR/<arch>/... instead of in place")
    args = ap.parse_args(argv)
    arches = args.arch or list(ARCHES)
    with ThreadPoolExecutor(max_workers=len(arches)) as pool:
        futs = {a: pool.submit(build, a, args.out) for a in arches}
        status = 0
        for arch, fut in futs.items():
            try:
                dest = fut.result()
            except (RuntimeError, OSError) as exc:
                print(f"{arch}: {exc}", file=sys.stderr)
                status = 1
            else:
                print(f"{arch}: {dest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
