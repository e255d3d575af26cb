"""Per-process caches of the expensive test inputs: one QEMU oracle boot per arch (with
``-- kallsyms``, so init also digests /proc/kallsyms), and each Debian kernel's uncompressed
bytes, kallsyms table and BTF. Failures to obtain any of them fail the test with one line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from kprobesim.ebpf.btf import Btf
from kprobesim.guest.btf import kernel_btf
from kprobesim.guest.kallsyms import Kallsyms, find_kallsyms
from kprobesim.guest.kimage import kernel_bytes

from . import debian, obtain, qemu

ORACLE_APPEND = qemu.APPEND + " -- kallsyms"
XDIST_GROUP = "qemu-oracle"  # test_qemu_oracle.py and test_guest_kallsyms.py: one worker
_DIGEST = re.compile(r"kpsim-init: kallsyms (\d+) lines (\d+) bytes fnv1a64 ([0-9a-f]{16})")
_SAMPLE = re.compile(r"kpsim-init: kallsyms line (\d+): (.*)")


@dataclass(frozen=True)
class KallsymsDigest:
    """What init printed about /proc/kallsyms: counts, FNV-1a 64 hash, sampled lines by number."""

    lines: int
    size: int
    fnv1a64: int
    samples: dict[int, str]


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def digest(init_lines: list[str]) -> KallsymsDigest:
    found = [m for line in init_lines if (m := _DIGEST.fullmatch(line))]
    if len(found) != 1:
        raise AssertionError(f"init printed {len(found)} kallsyms digest lines")
    samples = {int(m.group(1)): m.group(2) for line in init_lines if (m := _SAMPLE.fullmatch(line))}
    m = found[0]
    return KallsymsDigest(int(m.group(1)), int(m.group(2)), int(m.group(3), 16), samples)


@cache
def boot(arch: str) -> qemu.QemuRun:
    return obtain(qemu.boot, arch, ORACLE_APPEND)


@cache
def kernel_image(arch: str) -> bytes:
    """The Debian kernel's boot image file (riscv64 Image, x86_64 bzImage)."""
    get = debian.trixie_riscv64_kernel if arch == "riscv64" else debian.bookworm_amd64_kernel
    return obtain(get).image.read_bytes()


@cache
def vmlinux(arch: str) -> bytes:
    return kernel_bytes(kernel_image(arch))


@cache
def kallsyms(arch: str) -> Kallsyms:
    return find_kallsyms(vmlinux(arch))


@cache
def btf(arch: str) -> Btf:
    return kernel_btf(vmlinux(arch))
