"""Direct access to Unicorn's riscv64 CPU state (``CPURISCVState``) for what its API lacks.

Unicorn 2.1.4 exposes neither the interrupt-pending bits a device drives (MTIP, MSIP, MEIP are
read-only through ``reg_write``), nor the fault address of a trap (``badaddr``), nor a time
source for the ``time`` CSR (``rdtime_fn`` is NULL, so ``rdtime`` traps). The state struct is
found once per engine by writing a pattern into x1..x31 and searching for it behind the
pointers at the start of Unicorn's ``uc_struct`` (the state struct opens with ``gpr[32]``); the
field offsets follow Unicorn 2.1.4's ``target/riscv/cpu.h`` and are checked against values
written through the API before use.

With these, interrupts are taken by Unicorn itself (QEMU's ``riscv_cpu_do_interrupt``: mideleg,
priorities, vectored mode, exact unmasking) and ``rdtime`` costs one C callback, not a trap.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable

from unicorn import Uc
from unicorn import riscv_const as rc

from kprobesim.errors import SimError

# Offsets in CPURISCVState (RV64, Unicorn 2.1.4).
GPR, PC, BADADDR, PRIV, MSTATUS, MIP, MIE = 0, 512, 544, 592, 624, 632, 648
MTVEC, MSCRATCH, RDTIME_FN = 728, 976, 1528
MIP_SSIP, MIP_MSIP, MIP_STIP, MIP_MTIP, MIP_SEIP, MIP_MEIP = 1 << 1, 1 << 3, 1 << 5, 1 << 7, 1 << 9, 1 << 11
_SOFT_MIP = MIP_SSIP | MIP_STIP | MIP_SEIP  # what the CSR path lets software write

RdTime = ctypes.CFUNCTYPE(ctypes.c_uint64)


_CPU_POINTER = 0x1B8  # offsetof(struct uc_struct, cpu) in Unicorn 2.1.4


def _read(fd: int, addr: int, size: int) -> bytes:
    """Up to ``size`` bytes of this process's memory at ``addr`` (fewer at a gap, none if unmapped)."""
    try:
        return os.pread(fd, size, addr)
    except OSError:
        return b""


def _find_state(uc: Uc) -> int:
    pattern = [0x5A17_0000_0000_0000 | (os.getpid() << 24) | (i * 0x10001) for i in range(1, 32)]
    saved = [uc.reg_read(rc.UC_RISCV_REG_X1 + i) for i in range(31)]
    saved_pc = uc.reg_read(rc.UC_RISCV_REG_PC)
    for i, value in enumerate(pattern):
        uc.reg_write(rc.UC_RISCV_REG_X1 + i, value)
    mark = 0x7E57_0000_1234_5678 & ~3
    uc.reg_write(rc.UC_RISCV_REG_PC, mark)
    needle = struct.pack("<31Q", *pattern)
    found: set[int] = set()
    # Unicorn's ``uc_struct`` points at the CPU object holding the state (``uc->cpu``, at
    # 0x1b8 in 2.1.4); try the pointers near its start, that one first. Memory is read through
    # /proc/self/mem, where an address that is not mapped is an I/O error, not a crash.
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        head = _read(mem.fileno(), uc._uch.value, 0x800)
        pointers = [struct.unpack_from("<Q", head, off)[0] for off in range(0, len(head) - 7, 8)]
        if len(pointers) > _CPU_POINTER // 8:
            pointers.insert(0, pointers[_CPU_POINTER // 8])
        for ptr in dict.fromkeys(p for p in pointers if 0x10000 <= p < 1 << 47):
            data = _read(mem.fileno(), ptr, 0x40000)
            at = data.find(needle)
            while at >= 8:
                if at - 8 + PC + 8 <= len(data) and struct.unpack_from("<Q", data, at - 8 + PC)[0] == mark:
                    found.add(ptr + at - 8)
                at = data.find(needle, at + 1)
            if found:
                break
        # A stale copy of the pattern (freed memory) may sit nearby: the live state is the
        # one that follows a register written through the API.
        uc.reg_write(rc.UC_RISCV_REG_X1, ~pattern[0] & (1 << 64) - 1)
        live = [env for env in found if struct.unpack("<Q", _read(mem.fileno(), env + 8, 8))[0] != pattern[0]]
    for i, value in enumerate(saved):
        uc.reg_write(rc.UC_RISCV_REG_X1 + i, value)
    uc.reg_write(rc.UC_RISCV_REG_PC, saved_pc)
    if len(live) != 1:
        raise SimError("cannot locate Unicorn's riscv CPU state (unsupported unicorn build)")
    return live[0]


class Hart:
    """Hart 0's state behind the engine: interrupt lines, fault address, time source."""

    def __init__(self, uc: Uc) -> None:
        self.uc = uc
        self.env = _find_state(uc)
        self._u64 = {off: ctypes.c_uint64.from_address(self.env + off) for off in (BADADDR, PRIV, MIP, MTVEC)}
        self._check()
        self._rdtime: object = None
        #: Called when a line rises: the machine ends its slice after the running instruction.
        self.raised: Callable[[], None] = lambda: None

    def _check(self) -> None:
        uc = self.uc
        old = uc.reg_read(rc.UC_RISCV_REG_MTVEC)
        uc.reg_write(rc.UC_RISCV_REG_MTVEC, 0x1234_5670)
        ok = self._u64[MTVEC].value == 0x1234_5670 and self._u64[PRIV].value == uc.reg_read(rc.UC_RISCV_REG_PRIV)
        uc.reg_write(rc.UC_RISCV_REG_MTVEC, old)
        if not ok or ctypes.c_void_p.from_address(self.env + RDTIME_FN).value not in (None, 0):
            raise SimError("Unicorn's riscv CPU state has an unexpected layout (unsupported unicorn build)")

    @property
    def priv(self) -> int:
        return self._u64[PRIV].value

    @property
    def badaddr(self) -> int:
        """The address of the last MMU fault (QEMU's ``badaddr``; Unicorn never copies it to tval)."""
        return self._u64[BADADDR].value

    @property
    def mip(self) -> int:
        return self._u64[MIP].value

    def set_line(self, bit: int, level: bool) -> None:
        """Drive an interrupt-pending bit as a device would (level-triggered)."""
        mip = self._u64[MIP]
        new = (mip.value | bit) if level else (mip.value & ~bit)
        if new == mip.value:
            return
        mip.value = new
        if level:  # through the CSR path once, so QEMU notes an interrupt request
            priv = self._u64[PRIV]
            prev, priv.value = priv.value, 3
            try:
                self.uc.reg_write(rc.UC_RISCV_REG_MIP, new & _SOFT_MIP)
            finally:
                priv.value = prev
            self.raised()

    def serve_time(self, now: Callable[[], int]) -> None:
        """Answer ``rdtime``/``csrr time`` with ``now()`` (one C callback, no trap)."""
        self._rdtime = RdTime(now)
        ctypes.c_void_p.from_address(self.env + RDTIME_FN).value = ctypes.cast(self._rdtime, ctypes.c_void_p).value
