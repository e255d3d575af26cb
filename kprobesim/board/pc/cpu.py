"""The pc board's processor as software sees it: CPUID and the time-stamp counter.

CPUID describes QEMU's default ``qemu64`` model (an AMD family 15 x86-64 with SSE3, CX16, NX,
no XSAVE/AVX), which Unicorn's TCG core implements, so Linux takes the same code paths as under
``qemu-system-x86_64`` with its default CPU. Unicorn's own CPUID advertises AVX/AVX2, which its
translator does not execute. ``rdtsc``/``rdtscp`` read virtual time (1 GHz). Model-specific
registers are Unicorn's (QEMU's x86 model): EFER, STAR/LSTAR/CSTAR/SFMASK, FS/GS/KERNEL_GS base,
PAT, SYSENTER, MTRRs and the machine-check banks are kept; unknown ones read 0 and ignore writes,
as QEMU's TCG does.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from unicorn import UC_HOOK_INSN
from unicorn import x86_const as xc

from .clock import tsc

if TYPE_CHECKING:
    from ...machine import Machine

_AMD = (0x68747541, 0x444D4163, 0x69746E65)  # "AuthenticAMD" in ebx, ecx, edx order
_BRAND = b"QEMU Virtual CPU version 2.5+".ljust(48, b"\0")
_APIC = 1 << 9
_HYPERVISOR = 1 << 31
_SVM = 1 << 2


def _brand(i: int) -> tuple[int, int, int, int]:
    chunk = _BRAND[16 * i : 16 * i + 16]
    return tuple(int.from_bytes(chunk[j : j + 4], "little") for j in range(0, 16, 4))  # type: ignore[return-value]


def cpuid_table(apic: bool) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """(leaf, subleaf) -> eax, ebx, ecx, edx. Subleaf 0 stands for leaves without subleaves."""
    edx1 = 0x078BFBFD if apic else 0x078BFBFD & ~_APIC
    ext_edx = 0x2193FBFD if apic else 0x2193FBFD & ~_APIC
    return {
        (0, 0): (0xD, _AMD[0], _AMD[1], _AMD[2]),
        (1, 0): (0x00060FB1, 0x00000800, 0x80002001, edx1),
        (0xB, 0): (0, 1, 0x100, 0),
        (0x80000000, 0): (0x80000008, _AMD[0], _AMD[1], _AMD[2]),
        (0x80000001, 0): (0x00060FB1, 0, 0x00000005 & ~_SVM, ext_edx),
        (0x80000002, 0): _brand(0),
        (0x80000003, 0): _brand(1),
        (0x80000004, 0): _brand(2),
        (0x80000005, 0): (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),
        (0x80000006, 0): (0, 0x42004200, 0x02008140, 0x00808140),
        (0x80000008, 0): (0x00003028, 0, 0, 0),
    }


_SUBLEAF_LEAVES = {4, 7, 0xB, 0xD}


def hook_insn_skip(uc: Any, insn: int, callback: Callable[[], bool]) -> None:
    """An instruction hook whose callback returns True to skip the instruction (CPUID, RDTSC,
    RDTSCP). Unicorn's C API has it for all three; its Python binding only wires CPUID."""
    from unicorn.unicorn_py3.arch.intel import HOOK_INSN_CPUID_CFUNC
    from unicorn.unicorn_py3.unicorn import uccallback

    fptr = uccallback(uc, HOOK_INSN_CPUID_CFUNC)(lambda _uc, _key: callback())
    uc._Uc__do_hook_add(UC_HOOK_INSN, fptr, 1, 0, ctypes.c_int(insn))


class Cpu:
    """CPUID and RDTSC/RDTSCP hooks (one host call per executed instruction of those kinds)."""

    def __init__(self, apic: bool = False) -> None:
        self.table = cpuid_table(apic)

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        uc = machine.engine
        hook_insn_skip(uc, xc.UC_X86_INS_CPUID, self._cpuid)
        hook_insn_skip(uc, xc.UC_X86_INS_RDTSC, self._rdtsc)
        hook_insn_skip(uc, xc.UC_X86_INS_RDTSCP, self._rdtscp)

    def _cpuid(self) -> bool:
        eng = self.machine.engine
        leaf = eng.reg_read(xc.UC_X86_REG_EAX) & 0xFFFFFFFF
        sub = eng.reg_read(xc.UC_X86_REG_ECX) & 0xFFFFFFFF if leaf in _SUBLEAF_LEAVES else 0
        eax, ebx, ecx, edx = self.table.get((leaf, sub), (0, 0, 0, 0))
        regs = (xc.UC_X86_REG_RAX, xc.UC_X86_REG_RBX, xc.UC_X86_REG_RCX, xc.UC_X86_REG_RDX)
        for reg, value in zip(regs, (eax, ebx, ecx, edx), strict=True):
            eng.reg_write(reg, value)
        return True  # skip Unicorn's own CPUID

    def _rdtsc(self) -> bool:
        value = tsc(self.machine.now())
        eng = self.machine.engine
        eng.reg_write(xc.UC_X86_REG_RAX, value & 0xFFFFFFFF)
        eng.reg_write(xc.UC_X86_REG_RDX, value >> 32)
        return True

    def _rdtscp(self) -> bool:
        self.machine.engine.reg_write(xc.UC_X86_REG_RCX, 0)  # TSC_AUX: CPU 0
        return self._rdtsc()
