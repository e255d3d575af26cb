"""Clearing the CPU's "exception being delivered" state after the simulator delivered one.

QEMU's x86 core remembers the last contributory exception or page fault (``old_exception``)
so that a second one raised while delivering the first becomes a double fault, and a fault
while delivering a double fault shuts the CPU down. Its own delivery clears that memory once
the handler is entered. Unicorn reports exceptions to ``UC_HOOK_INTR`` instead of delivering
them, so the memory is never cleared: after one page fault the guest's next page fault comes
back as #DF, and the one after that is a silent "triple fault" (``emu_start`` simply returns,
no hook runs). Measured on Unicorn 2.1.4 booting Linux, whose early boot maps its direct map on
demand from #PF. Worse, as it returns, ``emu_start`` translates its ``until`` address minus
one, which under paging records a page fault (and sets CR2) there; the machine's engines run
without a stop address for that reason (``run_without_stop_address``, kprobesim.engine.unicorn),
and the field is still cleared before every slice of a paging guest (a guard for any other
host translation), and after every reported fault.

The field is not reachable through Unicorn's API but is part of the saved CPU context; its
offset is found once per process by calibration (a context before and after a page fault).

The page fault's error code is in the same state: QEMU's page walk stores the code it computed
(P, W, U, RSVD, I/D, as Intel SDM vol. 3 §4.7 defines them, under the guest's CR0.WP, CR4 and
EFER) in ``error_code`` before raising #PF, and Unicorn reports the fault without it. Its offset
is calibrated likewise, on faults whose codes all differ (:func:`error_code_offset`).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from unicorn import (
    UC_ARCH_X86,
    UC_CTL_CONTEXT_CPU,
    UC_CTL_CONTEXT_MEMORY,
    UC_CTL_CONTEXT_MODE,
    UC_CTL_IO_WRITE,
    UC_HOOK_INTR,
    UC_MODE_64,
    Uc,
)
from unicorn import x86_const as xc

_PF = 14
_NONE = -1


_HOLE = 0x4000_0000  # not mapped by the calibration's page tables
_CODE = 0x10000
_RO = 0x18000  # in the calibration's one 2 MiB page, read-only there when asked
_LOAD = b"\x48\xa1" + _HOLE.to_bytes(8, "little") + b"\x90"  # mov rax, [_HOLE]
_STORE = b"\x48\xa3" + _HOLE.to_bytes(8, "little") + b"\x90"  # mov [_HOLE], rax
_FETCH = b"\x48\xb8" + _HOLE.to_bytes(8, "little") + b"\xff\xe0"  # mov rax, _HOLE; jmp rax
_STORE_RO = b"\x48\xa3" + _RO.to_bytes(8, "little") + b"\x90"  # mov [_RO], rax
EFER_LME_LMA, EFER_NXE = 0x500, 0x800
CR0_PE_ET_PG, CR0_WP = 0x80000011, 1 << 16
CR4_PAE, CR4_SMEP = 0x20, 1 << 20


def _page_fault_contexts(
    code: bytes = _LOAD, writable: bool = True, cr0: int = CR0_PE_ET_PG, efer: int = EFER_LME_LMA,
    cr4: int = CR4_PAE,
) -> tuple[bytes, bytes]:
    """CPU contexts of a fresh engine before and after ``code`` (at ``_CODE``, ring 0, long mode
    under one 2 MiB page at 0, ``writable`` or not) took one reported page fault."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 0x20000)
    uc.mem_write(0x1000, struct.pack("<Q", 0x2003))  # PML4 -> PDPT -> PD: one 2 MiB page at 0
    uc.mem_write(0x2000, struct.pack("<Q", 0x3003))
    uc.mem_write(0x3000, struct.pack("<Q", 0x83 if writable else 0x81))
    uc.reg_write(xc.UC_X86_REG_CR3, 0x1000)
    uc.reg_write(xc.UC_X86_REG_CR4, cr4)
    uc.msr_write(0xC0000080, efer)
    uc.reg_write(xc.UC_X86_REG_CR0, cr0)
    uc.mem_write(_CODE, code)
    seen: list[int] = []
    uc.hook_add(UC_HOOK_INTR, lambda uc, n, ud: (seen.append(n), uc.emu_stop()))
    before = bytes(uc.context_save())
    uc.emu_start(_CODE, 0, 0, 5)
    if seen != [_PF]:
        raise RuntimeError(f"calibration page fault reported as {seen} (unsupported unicorn build)")
    return before, bytes(uc.context_save())


@cache
def old_exception_offset() -> int:
    """Byte offset of ``old_exception`` in a saved x86 CPU context."""
    before, after = _page_fault_contexts()
    hits = [
        off
        for off in range(0, min(len(before), len(after)) - 3, 4)
        if struct.unpack_from("<i", before, off)[0] == _NONE and struct.unpack_from("<i", after, off)[0] == _PF
    ]
    if len(hits) != 1:
        raise RuntimeError("cannot locate Unicorn's x86 old_exception field (unsupported unicorn build)")
    return hits[0]


@cache
def error_code_offset() -> int:
    """Byte offset of the #PF ``error_code`` in a saved x86 CPU context: the one field holding,
    after each of four faults, the code the SDM gives it (a supervisor read of a page not present:
    0; a write: W; a fetch with EFER.NXE: I/D; a write to a read-only page under CR0.WP: P|W).
    Checked on a fifth engine: a fetch under CR4.SMEP without NXE, I/D again by another rule."""
    faults = {
        0x0: _page_fault_contexts(_LOAD)[1],
        0x2: _page_fault_contexts(_STORE)[1],
        0x10: _page_fault_contexts(_FETCH, efer=EFER_LME_LMA | EFER_NXE)[1],
        0x3: _page_fault_contexts(_STORE_RO, writable=False, cr0=CR0_PE_ET_PG | CR0_WP)[1],
    }
    size = min(len(ctx) for ctx in faults.values())
    hits = [
        off
        for off in range(0, size - 3, 4)
        if all(struct.unpack_from("<i", ctx, off)[0] == code for code, ctx in faults.items())
    ]
    check = _page_fault_contexts(_FETCH, cr4=CR4_PAE | CR4_SMEP)[1]
    if len(hits) != 1 or struct.unpack_from("<i", check, hits[0])[0] != 0x10:
        raise RuntimeError("cannot locate Unicorn's x86 page-fault error_code field (unsupported unicorn build)")
    return hits[0]


@contextmanager
def cpu_context(uc: Uc, memory_snapshots: bool) -> Iterator[tuple[Any, int]]:
    """Unicorn's saved CPU state to edit in place: yields ``(context, address of its data)``;
    the caller writes fields there and calls ``uc.context_restore(context)``.

    ``memory_snapshots``: the engine's context mode includes memory (snapshots are in use); this
    CPU-only save and restore must not take or roll back a memory snapshot."""
    if memory_snapshots:
        uc.ctl(UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE, ctypes.c_int(UC_CTL_CONTEXT_CPU))
    try:
        ctx = uc.context_save()
        data = ctypes.cast(ctx.context, ctypes.c_void_p).value
        assert data is not None
        yield ctx, data
    finally:
        if memory_snapshots:
            uc.ctl(
                UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE, ctypes.c_int(UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY)
            )


def take_page_fault(uc: Uc, memory_snapshots: bool) -> int:
    """The error code of the page fault the engine just reported, clearing the exception state
    as :func:`clear` does (one context save for both)."""
    offset, code_at = old_exception_offset(), error_code_offset()
    with cpu_context(uc, memory_snapshots) as (ctx, data):
        code = struct.unpack("<i", ctypes.string_at(data + code_at, 4))[0] & 0xFFFF_FFFF
        if struct.unpack("<i", ctypes.string_at(data + offset, 4))[0] != _NONE:
            ctypes.memmove(data + offset, struct.pack("<i", _NONE), 4)
            uc.context_restore(ctx)
    return code


def clear(uc: Uc, memory_snapshots: bool) -> None:
    """Forget the exception just delivered (what QEMU's delivery does on entering the handler)."""
    offset = old_exception_offset()
    with cpu_context(uc, memory_snapshots) as (ctx, data):
        # The context's data follows its header; the offset was measured on the whole blob.
        if struct.unpack("<i", ctypes.string_at(data + offset, 4))[0] != _NONE:
            ctypes.memmove(data + offset, struct.pack("<i", _NONE), 4)
            uc.context_restore(ctx)
