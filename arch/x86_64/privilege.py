"""Entering ring 0 from ring 3 the way the CPU does, without running any code of our own.

Unicorn delivers no interrupt and executes no ``syscall`` (it only calls the hooks), and a
host write to CS or SS in 64-bit mode changes the selector alone: the current privilege level
(CPL, the low bits of QEMU's ``hflags``) and the segment caches stay those of ring 3. What a
CPU does on an interrupt or ``syscall`` from user mode is load the kernel's CS and SS caches
and set CPL 0; this module does exactly that in the engine's saved CPU context, so no
trampoline page has to be mapped in the guest's page tables (Linux maps nothing of ours).

The fields are not reachable through Unicorn's API but are part of the saved CPU context;
their offsets are found once per process by calibration: a context before and after an
``iretq`` from ring 0 to ring 3 with known selectors.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from functools import cache

from unicorn import (
    UC_ARCH_X86,
    UC_MODE_64,
    Uc,
)
from unicorn import x86_const as xc

from .exception_state import cpu_context

# QEMU's descriptor-cache flag bits (the high dword of a descriptor) and hflags bits
DESC_A, DESC_R_W, DESC_CS, DESC_S, DESC_P = 1 << 8, 1 << 9, 1 << 11, 1 << 12, 1 << 15
DESC_L, DESC_B, DESC_G = 1 << 21, 1 << 22, 1 << 23
HF_CPL, HF_CS32, HF_SS32, HF_CS64 = 3, 1 << 4, 1 << 5, 1 << 15
#: SYSCALL's flat 64-bit kernel code and data segments (Intel SDM, SYSCALL operation).
SYSCALL_CS = DESC_G | DESC_P | DESC_S | DESC_CS | DESC_R_W | DESC_A | DESC_L
SYSCALL_SS = DESC_G | DESC_B | DESC_P | DESC_S | DESC_R_W | DESC_A

_USER_CS, _USER_SS = 0x33, 0x2B
_CAL_GDT = [0, 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0, 0x00CFF2000000FFFF, 0x00AFFA000000FFFF]


@dataclass(frozen=True)
class Offsets:
    """Byte offsets in a saved x86 CPU context: ``hflags`` and the CS and SS caches (each
    selector u32, base u64, limit u32, flags u32, as QEMU's SegmentCache)."""

    hflags: int
    cs: int
    ss: int


def _iretq_contexts() -> tuple[bytes, bytes]:
    """CPU contexts of a fresh engine before and after an ``iretq`` to ring 3."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 0x10000)
    for table, entry in ((0x1000, 0x2007), (0x2000, 0x3007), (0x3000, 0x87)):  # user 2 MiB identity page
        uc.mem_write(table, struct.pack("<Q", entry))
    uc.mem_write(0x4000, struct.pack(f"<{len(_CAL_GDT)}Q", *_CAL_GDT))
    uc.reg_write(xc.UC_X86_REG_GDTR, (0, 0x4000, 8 * len(_CAL_GDT) - 1, 0))
    uc.reg_write(xc.UC_X86_REG_CR3, 0x1000)
    uc.reg_write(xc.UC_X86_REG_CR4, 0x20)
    uc.msr_write(0xC0000080, 0x500)
    uc.reg_write(xc.UC_X86_REG_CR0, 0x80000011)
    uc.reg_write(xc.UC_X86_REG_CS, 0x10)
    uc.reg_write(xc.UC_X86_REG_SS, 0x18)
    uc.mem_write(0x8000, struct.pack("<5Q", 0x6000, _USER_CS, 2, 0x9000, _USER_SS))
    uc.reg_write(xc.UC_X86_REG_RSP, 0x8000)
    uc.mem_write(0x5000, b"\x48\xcf")  # iretq
    uc.mem_write(0x6000, b"\x90")
    before = bytes(uc.context_save())
    uc.emu_start(0x5000, 0, 0, 1)
    if uc.reg_read(xc.UC_X86_REG_RIP) != 0x6000:
        raise RuntimeError("privilege calibration: iretq to ring 3 did not run (unsupported unicorn build)")
    return before, bytes(uc.context_save())


@cache
def offsets() -> Offsets:
    before, after = _iretq_contexts()

    def u32(blob: bytes, off: int) -> int:
        return struct.unpack_from("<I", blob, off)[0]

    words = range(0, min(len(before), len(after)) - 24, 4)
    hflags = [o for o in words if u32(before, o) & HF_CPL == 0 and u32(after, o) == u32(before, o) | HF_CPL]
    cs = [o for o in words if u32(before, o) == 0x10 and u32(after, o) == _USER_CS and u32(after, o + 20) == 0xAFFA00]
    ss = [o for o in words if u32(before, o) == 0x18 and u32(after, o) == _USER_SS and u32(after, o + 20) == 0xCFF200]
    if len(hflags) != 1 or len(cs) != 1 or len(ss) != 1:
        raise RuntimeError("cannot locate Unicorn's x86 hflags and segment caches (unsupported unicorn build)")
    return Offsets(hflags[0], cs[0], ss[0])


def enter_ring0(uc: Uc, cs: int, cs_flags: int, ss: int, ss_flags: int, memory_snapshots: bool) -> None:
    """Load CS and SS (selectors and cached descriptors, base 0, limit 4 GiB) and make CPL 0, as
    an interrupt gate or ``syscall`` does. ``memory_snapshots``: the engine's context mode
    includes memory; this CPU-only save and restore must not take or roll back a snapshot."""
    off = offsets()
    with cpu_context(uc, memory_snapshots) as (ctx, data):
        hflags = struct.unpack("<I", ctypes.string_at(data + off.hflags, 4))[0] & ~(HF_CPL | HF_SS32)
        if cs_flags & DESC_L:
            hflags |= HF_CS32 | HF_SS32 | HF_CS64
        ctypes.memmove(data + off.hflags, struct.pack("<I", hflags), 4)
        limit = 0xFFFFFFFF if ss_flags else 0
        ctypes.memmove(data + off.cs, struct.pack("<IIQII", cs, 0, 0, 0xFFFFFFFF, cs_flags), 24)
        ctypes.memmove(data + off.ss, struct.pack("<IIQII", ss, 0, 0, limit, ss_flags), 24)
        uc.context_restore(ctx)
