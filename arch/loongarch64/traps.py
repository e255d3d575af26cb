"""loongarch64 trap handling on the P-code engine.

The engine implements the privileged architecture itself (CSRs, the constant timer and its
interrupts, ``ertn``, ``idle``) and reports synchronous exceptions through UC_HOOK_INTR with the
PC at the faulting instruction. Here breaks go to the kprobe layer first; everything else is
entered architecturally (ERA, PRMD, ESTAT, BADV, jump to EENTRY) by the engine's own
``raise_exception``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_INTR, UC_HOOK_MEM_INVALID

from kprobesim.engine import access_kind
from kprobesim.engine.pcode.loongarch_const import EXC_ADE, EXC_BRK, LA_REG_CSR_EENTRY, LA_REG_PC

if TYPE_CHECKING:
    from kprobesim.machine import Machine

ADEM = 1  # EsubCode of ADE for a data access


class Traps:
    """Intercepts breaks for the kprobe layer and lets the engine enter everything else."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.engine = machine.engine
        hook = self.engine.hook_add(UC_HOOK_INTR, self._intr)
        self._on_break = machine.on_break  # the break path, bound once
        fast = getattr(self.engine, "hook_break_fast", None)
        if fast is not None:  # the engine calls on_break itself for a break (what _intr does)
            fast(EXC_BRK, hook, self._on_break)
        direct = getattr(self.engine, "direct_registers", None)  # the PC read in place in a trap hook
        self._file, self._pc_at = (direct[0], direct[1][LA_REG_PC]) if direct else (None, 0)
        self.engine.hook_add(UC_HOOK_MEM_INVALID, self._mem_invalid)

    def host_access(self) -> contextlib.AbstractContextManager:
        """The engine lets the host read and write CSRs at any privilege."""
        return contextlib.nullcontext()

    def hold_interrupts(self, hold: bool) -> None:
        """The engine takes interrupts itself, at any instruction: while a probe steps out of
        line it holds them (CRMD/PRMD stay as the guest set them)."""
        self.engine.hold_interrupts(hold)

    def install_port_hooks(self, port_in: object, port_out: object) -> None:
        raise NotImplementedError("loongarch64 has no I/O ports")

    def unmask_sites(self) -> dict[int, int]:
        """None needed: the engine takes interrupts at the exact instruction itself."""
        return {}

    # -- engine hooks --------------------------------------------------------------------------
    def _intr(self, uc: object, intno: int, ud: object) -> None:
        pc = self._file[self._pc_at] if self._file is not None else self.engine.reg_read(LA_REG_PC)
        if intno == EXC_BRK:
            self._on_break(pc)
            return
        ecode, subcode, badv = self.engine.last_exception or (intno, 0, None)
        self._enter(ecode, subcode, badv, pc)

    def _mem_invalid(self, uc: object, access: int, addr: int, size: int, value: int, ud: object) -> bool:
        self.m.on_mem_fault(access_kind(access), addr, self.engine.reg_read(LA_REG_PC))
        return False

    # -- delivery ------------------------------------------------------------------------------
    def _enter(self, ecode: int, subcode: int, badv: int | None, pc: int, what: str = "") -> None:
        pc = self.m.exception_pc(pc)
        if not self.engine.reg_read(LA_REG_CSR_EENTRY):
            self.m.fault(what or f"exception {ecode:#x} with no exception entry (EENTRY=0)", pc)
            return
        self.m.entered()
        self.engine.reg_write(LA_REG_PC, pc)
        self.engine.raise_exception(ecode, subcode, badv)

    def breakpoint(self, pc: int) -> None:
        """A break no probe owns: the guest's own BRK exception."""
        self._enter(EXC_BRK, 0, None, pc)

    def memory_fault(self, access: str, addr: int, pc: int) -> None:
        """Outside the board's memory in direct-address mode: an address error (ADE)."""
        self._enter(EXC_ADE, 0 if access == "fetch" else ADEM, addr, pc, f"{access} access fault at {addr:#x}")

    def interrupt(self, irq: int) -> bool | None:
        """Board timers do not exist here: the CPU's own timer interrupts in the engine."""
        return None

    def halted(self) -> bool:
        """``idle`` with no interrupt able to arrive stops the engine with ``halted`` set."""
        return bool(getattr(self.engine, "halted", False))
