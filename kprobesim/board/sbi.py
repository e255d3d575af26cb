"""The simulator's own SBI (``--bios builtin``): the RISC-V Supervisor Binary Interface v2.0
served from the trap path, so an S-mode kernel (Linux, an rCore-style kernel) runs without an
M-mode firmware.

An ``ecall`` from S-mode arrives here instead of at an M-mode vector; the call's extension
(a7) and function (a6) pick the service; ``a0``/``a1`` get the error and value (the legacy
calls, extensions 0x00-0x08, return one value in ``a0``). Implemented: base, legacy console,
timer and IPI calls, TIME, IPI, RFENCE, HSM, SRST and DBCN, for the one hart of the board.
The timer raises STIP on virtual time, an IPI raises SSIP. The OS-facing surface is this one
class: what a kernel may ask of its firmware, named by the spec's extension IDs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import riscv_const as rc
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from . import NEVER

if TYPE_CHECKING:
    from ..machine import Machine
    from .ns16550a import Ns16550a

SPEC_VERSION = 2 << 24  # SBI v2.0
IMPL_ID = 0x6B70  # "kp": not an ID the spec assigns to another implementation
IMPL_VERSION = 1

SUCCESS, ERR_FAILED, ERR_NOT_SUPPORTED, ERR_INVALID_PARAM = 0, -1, -2, -3
ERR_DENIED, ERR_INVALID_ADDRESS, ERR_ALREADY_AVAILABLE = -4, -5, -6

EXT_BASE, EXT_TIME, EXT_IPI, EXT_RFENCE = 0x10, 0x54494D45, 0x735049, 0x52464E43
EXT_HSM, EXT_SRST, EXT_DBCN = 0x48534D, 0x53525354, 0x4442434E
LEGACY = range(0x00, 0x09)  # set_timer .. shutdown
EXTENSIONS = {EXT_BASE, EXT_TIME, EXT_IPI, EXT_RFENCE, EXT_HSM, EXT_SRST, EXT_DBCN, *LEGACY}

MIP_SSIP, MIP_STIP = 1 << 1, 1 << 5
STIP_IRQ = 5
MASK64 = (1 << 64) - 1
ALL_HARTS = MASK64  # hart_mask_base of -1: every hart


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


class Sbi:
    """SBI v2.0 for hart 0 of the board; also the supervisor timer (a board timer)."""

    def __init__(self, uart: Ns16550a, insns_per_tick: int = 1) -> None:
        self.uart = uart
        self.stimecmp = NEVER  # in timer ticks, as the kernel set it
        self.calls = 0
        self.insns_per_tick = insns_per_tick

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_timer(self)

    # -- the supervisor timer -------------------------------------------------------------------
    def deadline(self) -> int:
        return min(self.stimecmp * self.insns_per_tick, NEVER)

    def pending(self, now: int) -> int | None:
        return STIP_IRQ if now >= self.deadline() else None

    def delivered(self, now: int) -> None:
        """Level-triggered: STIP stays up until the kernel sets another deadline."""

    def _set_timer(self, when: int) -> None:
        self.stimecmp = when
        due = self.machine.now() >= self.deadline()
        self.machine.traps.hart.set_line(MIP_STIP, due)
        if not due:
            self.machine.timer_changed()

    # -- the call ---------------------------------------------------------------------------------
    def ecall(self) -> None:
        """Serve the SBI call the hart's registers describe (an ``ecall`` from S-mode)."""
        uc = self.machine.engine
        args = [uc.reg_read(rc.UC_RISCV_REG_A0 + i) for i in range(8)]
        ext, fid = args[7], args[6]
        self.calls += 1
        if ext in LEGACY:
            uc.reg_write(rc.UC_RISCV_REG_A0, self._legacy(ext, args) & MASK64)
            return
        error, value = self._call(ext, fid, args)
        uc.reg_write(rc.UC_RISCV_REG_A0, error & MASK64)
        uc.reg_write(rc.UC_RISCV_REG_A1, value & MASK64)

    def _legacy(self, ext: int, a: list[int]) -> int:
        if ext == 0x00:
            self._set_timer(a[0])
        elif ext == 0x01:
            self.machine.console_write(bytes([a[0] & 0xFF]))
        elif ext == 0x02:
            return self._getchar()
        elif ext == 0x03:
            self.machine.traps.hart.set_line(MIP_SSIP, False)
        elif ext == 0x04:
            if a[0] == 0 or self._legacy_mask(a[0]) & 1:  # a0: the mask's (virtual) address
                self.machine.traps.hart.set_line(MIP_SSIP, True)
        elif ext in (0x06, 0x07):
            self._flush_tlb()
        elif ext == 0x08:
            self.machine.guest_exit(0)
        return 0

    def _call(self, ext: int, fid: int, a: list[int]) -> tuple[int, int]:
        handler = {
            EXT_BASE: self._base, EXT_TIME: self._time, EXT_IPI: self._ipi, EXT_RFENCE: self._rfence,
            EXT_HSM: self._hsm, EXT_SRST: self._srst, EXT_DBCN: self._dbcn,
        }.get(ext)
        if handler is None:
            return ERR_NOT_SUPPORTED, 0
        return handler(fid, a)

    def _base(self, fid: int, a: list[int]) -> tuple[int, int]:
        values = {0: SPEC_VERSION, 1: IMPL_ID, 2: IMPL_VERSION, 4: 0, 5: 0, 6: 0}
        if fid == 3:
            return SUCCESS, int(a[0] in EXTENSIONS)
        if fid in values:
            return SUCCESS, values[fid]
        return ERR_NOT_SUPPORTED, 0

    def _time(self, fid: int, a: list[int]) -> tuple[int, int]:
        if fid != 0:
            return ERR_NOT_SUPPORTED, 0
        self._set_timer(a[0])
        return SUCCESS, 0

    @staticmethod
    def _targets_hart0(mask: int, base: int) -> bool | None:
        """Does (hart_mask, hart_mask_base) name hart 0? None: it names a hart that does not exist."""
        if base == ALL_HARTS or mask == 0:
            return base == ALL_HARTS
        return True if base == 0 and mask == 1 else None

    def _ipi(self, fid: int, a: list[int]) -> tuple[int, int]:
        if fid != 0:
            return ERR_NOT_SUPPORTED, 0
        target = self._targets_hart0(a[0], a[1])
        if target is None:
            return ERR_INVALID_PARAM, 0
        if target:
            self.machine.traps.hart.set_line(MIP_SSIP, True)
        return SUCCESS, 0

    def _rfence(self, fid: int, a: list[int]) -> tuple[int, int]:
        if fid > 2:  # the hypervisor fences: no H extension
            return ERR_NOT_SUPPORTED, 0
        target = self._targets_hart0(a[0], a[1])
        if target is None:
            return ERR_INVALID_PARAM, 0
        if target and fid in (1, 2):
            self._flush_tlb()
        return SUCCESS, 0  # fence.i: the engine already sees every code write

    def _hsm(self, fid: int, a: list[int]) -> tuple[int, int]:
        if fid == 0:  # hart_start
            return (ERR_ALREADY_AVAILABLE if a[0] == 0 else ERR_INVALID_PARAM), 0
        if fid == 1:  # hart_stop: the only hart may not stop
            return ERR_FAILED, 0
        if fid == 2:  # hart_get_status
            return (SUCCESS, 0) if a[0] == 0 else (ERR_INVALID_PARAM, 0)
        if fid == 3:  # hart_suspend: default retentive suspend returns like wfi
            kind = a[0] & 0xFFFF_FFFF
            if kind == 0:
                return SUCCESS, 0
            return (ERR_NOT_SUPPORTED if kind >= 0x8000_0000 else ERR_INVALID_PARAM), 0
        return ERR_NOT_SUPPORTED, 0

    def _srst(self, fid: int, a: list[int]) -> tuple[int, int]:
        if fid != 0:
            return ERR_NOT_SUPPORTED, 0
        kind, reason = a[0] & 0xFFFF_FFFF, a[1] & 0xFFFF_FFFF
        if kind > 2 or (1 < reason < 0xF000_0000):
            return ERR_INVALID_PARAM, 0
        # shutdown: status 0 unless the kernel reports a system failure; a reboot ends the run
        # as the test device's reset does
        self.machine.guest_exit(1 if kind or reason == 1 else 0)
        return SUCCESS, 0

    def _dbcn(self, fid: int, a: list[int]) -> tuple[int, int]:
        if fid == 2:  # console_write_byte
            self.machine.console_write(bytes([a[0] & 0xFF]))
            return SUCCESS, 0
        if fid not in (0, 1):
            return ERR_NOT_SUPPORTED, 0
        count, addr = a[0], a[1] | (a[2] << 32)
        if fid == 0:  # console_write
            data = self._read(addr, count)
            if data is None:
                return ERR_INVALID_PARAM, 0
            self.machine.console_write(data)
            return SUCCESS, len(data)
        got = bytearray()  # console_read: what has been typed, without waiting
        while len(got) < count and (byte := self._getchar()) >= 0:
            got.append(byte)
        if got and not self._write(addr, bytes(got)):
            return ERR_INVALID_PARAM, 0
        return SUCCESS, len(got)

    # -- helpers --------------------------------------------------------------------------------
    def _flush_tlb(self) -> None:
        self.machine.engine.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def _legacy_mask(self, vaddr: int) -> int:
        try:
            return int.from_bytes(self.machine.read(vaddr, 8), "little")
        except Exception:  # an address the kernel's tables do not map: no hart named
            return 0

    def _getchar(self) -> int:
        if not self.uart.rx:
            return -1
        byte = self.uart.rx.pop(0)
        self.uart.on_read_rx()
        return byte

    def _read(self, addr: int, size: int) -> bytes | None:
        base, ram = self.machine.ram
        if size > 1 << 20 or not base <= addr <= addr + size <= base + ram:
            return None
        return self.machine.read_phys(addr, size)

    def _write(self, addr: int, data: bytes) -> bool:
        base, ram = self.machine.ram
        if not base <= addr <= addr + len(data) <= base + ram:
            return False
        self.machine.write_phys(addr, data)
        return True
