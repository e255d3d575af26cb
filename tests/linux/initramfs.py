"""The test initramfs: ``init.c`` and ``child.c`` (this folder) built static with zig's
``cc`` for the guest arch, packed with a few data files into a newc cpio. Products are cached
under ``initramfs/`` in the test cache, keyed by a hash of everything that goes into them."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from . import cpio
from .cache import FetchError, cache_dir, locked, publish

HERE = Path(__file__).resolve().parent
ARCHES = ("riscv64", "x86_64")
CFLAGS = ("-static", "-Os", "-fno-sanitize=all", "-g")  # -g keeps the symbol table (uprobes by name) ...
STRIP = ("llvm-strip", "--strip-debug")  # ... and the DWARF goes (Debian's llvm package)

#: The files under /data that init reads (and their exact contents).
DATA_FILES: dict[str, bytes] = {
    "data/hello.txt": b"hello from the kprobesim initramfs\n",
    "data/lines.txt": b"".join(b"line %02d: the quick brown fox jumps over the lazy dog\n" % i for i in range(12)),
    "data/blob.bin": bytes(range(256)) * 4,
}


def _key(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


TEXT_HASH = "kpsim_text_fnv"  # init's variable the build sets to the FNV-1a 64 of its text segment
SELF_READ = 32768  # ... the part of it in the first SELF_READ bytes of the file (init.c's one read)
TEXT_HASH_MARK = 0x6B7073696D2D7478  # its value before (init.c's initializer)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & (1 << 64) - 1
    return h


def with_text_hash(data: bytes) -> bytes:
    """init's file with ``kpsim_text_fnv`` set to the hash of its executable segment's file
    bytes within the first SELF_READ (init checks what read(2) returns of its own file)."""
    from kprobesim.elfread import read_header, read_segments, read_symbols

    hdr = read_header(data[:64])
    segments = read_segments(hdr, data[hdr.phoff :], len(data))
    text = [s for s in segments if s.executable]
    sym = next(s for s in read_symbols(hdr, data) if s.name == TEXT_HASH)
    home = next(s for s in segments if s.vaddr <= sym.value < s.vaddr + s.filesz and not s.executable)
    at = home.offset + sym.value - home.vaddr
    if len(text) != 1 or int.from_bytes(data[at : at + 8], "little") != TEXT_HASH_MARK:
        raise FetchError(f"init: {len(text)} executable segments, or {TEXT_HASH} not found where expected")
    if len(data) < SELF_READ:
        raise FetchError(f"init: {len(data)} bytes, fewer than the {SELF_READ} it reads of itself")
    digest = fnv1a64(data[text[0].offset : min(text[0].offset + text[0].filesz, SELF_READ)])
    return data[:at] + digest.to_bytes(8, "little") + data[at + 8 :]


def program(name: str, arch: str) -> Path:
    """``name``.c of this folder compiled for ``arch`` (``riscv64`` or ``x86_64``), cached."""
    if arch not in ARCHES:
        raise ValueError(f"no initramfs programs for arch {arch!r}")
    source = HERE / f"{name}.c"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", f"{arch}-linux-musl", *CFLAGS]
    recipe = " ".join((*cmd, *STRIP, f"{TEXT_HASH}/{SELF_READ}" if name == "init" else "")).encode()
    target = cache_dir() / "initramfs" / f"{name}-{arch}-{_key(source.read_bytes(), recipe)}"

    def build(out: Path) -> None:
        proc = subprocess.run([*cmd, "-o", str(out), str(source)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise FetchError(f"zig cc -target {arch}-linux-musl {source.name} failed: {last}")
        if shutil.which(STRIP[0]) is None:
            raise FetchError(f"{STRIP[0]} is not installed (Debian: apt-get install llvm)")
        proc = subprocess.run([*STRIP, str(out)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise FetchError(f"{' '.join(STRIP)} {source.name} failed: {proc.stderr.strip()[-200:]}")
        if name == "init":
            out.write_bytes(with_text_hash(out.read_bytes()))

    with locked("initramfs"):
        return publish(target, build)


def entries(arch: str) -> list[cpio.Entry]:
    """The initramfs members: /init, /bin/child, /data/*, /dev/console, an empty /proc."""
    return [
        cpio.directory("dev"),
        cpio.char_device("dev/console", 5, 1),
        cpio.directory("proc"),
        cpio.directory("bin"),
        cpio.regular("init", program("init", arch).read_bytes(), 0o755),
        cpio.regular("bin/child", program("child", arch).read_bytes(), 0o755),
        cpio.directory("data"),
        *(cpio.regular(name, data) for name, data in DATA_FILES.items()),
    ]


def initramfs(arch: str) -> Path:
    """Path of the packed initramfs (uncompressed newc cpio) for ``arch``."""
    archive = cpio.newc(entries(arch))
    target = cache_dir() / "initramfs" / f"initramfs-{arch}-{_key(archive)}.cpio"
    with locked("initramfs"):
        return publish(target, lambda out: out.write_bytes(archive))
