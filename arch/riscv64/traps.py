"""riscv64 trap delivery: Unicorn reports traps but never enters the guest's vector.

We do what the hart would: write mepc/mcause/mtval, stack MIE into MPIE, record the previous
privilege in MPP, switch to M-mode and jump to mtvec (vectored for interrupts when
mtvec.MODE = 1). The kernels run in M-mode; delegation to S-mode is not modelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UC_HOOK_MEM_INVALID, UcError
from unicorn.riscv_const import (
    UC_RISCV_REG_MCAUSE,
    UC_RISCV_REG_MEPC,
    UC_RISCV_REG_MIE,
    UC_RISCV_REG_MSTATUS,
    UC_RISCV_REG_MTVAL,
    UC_RISCV_REG_MTVEC,
    UC_RISCV_REG_PC,
    UC_RISCV_REG_PRIV,
)

from kprobesim.engine import access_kind

if TYPE_CHECKING:
    from kprobesim.machine import Machine

_IRQ_CSRS = (0x300, 0x304, 0x100, 0x104)  # mstatus, mie, sstatus, sie
MSTATUS_MIE = 1 << 3
MSTATUS_MPIE = 1 << 7
MSTATUS_MPP = 3 << 11
INTERRUPT = 1 << 63
WFI = 0x10500073

CAUSE_FETCH_FAULT, CAUSE_ILLEGAL, CAUSE_BREAKPOINT = 1, 2, 3
CAUSE_LOAD_FAULT, CAUSE_STORE_FAULT = 5, 7
ECALL_CAUSES = (8, 9, 11)
_ACCESS_CAUSE = {"fetch": CAUSE_FETCH_FAULT, "load": CAUSE_LOAD_FAULT, "store": CAUSE_STORE_FAULT}


class Traps:
    """Hooks Unicorn's trap reports and delivers them into the guest's M-mode vector."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        uc = machine.engine
        uc.hook_direct(UC_HOOK_INTR, self._intr)
        uc.hook_direct(UC_HOOK_INSN_INVALID, self._invalid)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._mem_invalid)
        # Unicorn flags an ebreak as an error before its hook runs; engines that can clear it
        # let a handled break go on in the same emu_start.
        go_on = getattr(uc, "continue_after_trap", None)
        self._continue = go_on if go_on is not None and go_on() else None

    @contextmanager
    def machine_mode(self) -> Iterator[int]:
        """Host CSR access is checked against the guest's privilege: lift it to M meanwhile."""
        uc = self.m.engine
        prev = uc.reg_read(UC_RISCV_REG_PRIV)
        if prev == 3:  # already M-mode (where kernels run): nothing to lift
            yield prev
            return
        uc.reg_write(UC_RISCV_REG_PRIV, 3)
        try:
            yield prev
        finally:
            uc.reg_write(UC_RISCV_REG_PRIV, prev)

    host_access = machine_mode

    def host_access_needed(self) -> bool:
        """Must host CSR access lift the privilege now (the hart is below M-mode)?"""
        return self.m.engine.reg_read(UC_RISCV_REG_PRIV) != 3

    # -- Unicorn hooks -------------------------------------------------------------------------
    def _intr(self, intno: int) -> None:
        pc = self.m.engine.reg_read(UC_RISCV_REG_PC)
        if intno in ECALL_CAUSES:
            self.exception(intno, pc - 4, 0)
        elif intno == CAUSE_ILLEGAL:
            epc = self._illegal_pc(pc)
            self.exception(CAUSE_ILLEGAL, epc, int.from_bytes(self.m.read(epc, 4), "little"))
        else:
            self.exception(intno, pc, 0)

    def _illegal_pc(self, pc: int) -> int:
        """Unicorn reports illegal instructions at pc+4, even 2-byte ones: find the start."""
        low = self.m.read(pc - 4, 2)
        return pc - 4 if low[0] & 3 == 3 else pc - 2

    def _invalid(self) -> bool:
        """An ebreak (Unicorn's only report of it). True: handled at once, go on at the new PC."""
        engine = self.m.engine
        inline = self._continue is not None
        if self.m.on_break(engine.reg_read(UC_RISCV_REG_PC), inline) and self._continue is not None:
            return self._continue()
        return False

    def _mem_invalid(self, uc: object, access: int, addr: int, size: int, value: int, ud: object) -> bool:
        self.m.on_mem_fault(access_kind(access), addr, self.m.engine.reg_read(UC_RISCV_REG_PC))
        return False

    # -- delivery ------------------------------------------------------------------------------
    def exception(self, cause: int, epc: int, tval: int) -> None:
        """Enter the guest's trap vector for a synchronous exception."""
        self._enter(cause, epc, tval)

    def breakpoint(self, pc: int) -> None:
        """A break no probe owns: the guest's own breakpoint exception."""
        self._enter(CAUSE_BREAKPOINT, pc, pc)

    def memory_fault(self, access: str, addr: int, pc: int) -> None:
        self._enter(_ACCESS_CAUSE[access], pc, addr, what=f"{access} access fault at {addr:#x}")

    def interrupt(self, irq: int) -> bool | None:
        """Take interrupt ``irq`` if the hart accepts it now.

        True: taken; False: masked by mstatus.MIE; None: disabled in mie.
        """
        uc = self.m.engine
        with self.machine_mode() as priv:
            if not uc.reg_read(UC_RISCV_REG_MIE) & (1 << irq):
                return None
            if priv == 3 and not uc.reg_read(UC_RISCV_REG_MSTATUS) & MSTATUS_MIE:
                return False
        self._enter(INTERRUPT | irq, self.m.pc, 0)
        return True

    def _enter(self, cause: int, epc: int, tval: int, what: str = "") -> None:
        uc = self.m.engine
        if not cause & INTERRUPT:
            epc = self.m.exception_pc(epc)
        with self.machine_mode() as priv:
            mtvec = uc.reg_read(UC_RISCV_REG_MTVEC)
            if mtvec == 0:
                self.m.fault(what or f"trap cause {cause & 0xFF} with no trap vector (mtvec=0)", epc)
                return
            self.m.entered()
            status = uc.reg_read(UC_RISCV_REG_MSTATUS)
            mie = 1 if status & MSTATUS_MIE else 0
            status = (status & ~(MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP)) | (mie << 7) | (priv << 11)
            uc.reg_write(UC_RISCV_REG_MSTATUS, status)
            uc.reg_write(UC_RISCV_REG_MEPC, epc)
            uc.reg_write(UC_RISCV_REG_MCAUSE, cause)
            uc.reg_write(UC_RISCV_REG_MTVAL, tval)
        uc.reg_write(UC_RISCV_REG_PRIV, 3)
        base = mtvec & ~3
        vectored = mtvec & 3 == 1 and cause & INTERRUPT
        uc.reg_write(UC_RISCV_REG_PC, base + 4 * (cause & 0xFF) if vectored else base)

    # -- run-loop queries ----
    def unmask_sites(self) -> dict[int, int]:
        """Instructions that can unmask interrupts: csr writes to m/sstatus or m/sie, mret, sret.

        Maps each address to how many instructions to execute before interrupts are checked.
        """
        sites = {}
        for seg in self.m.image.segments:
            code, pc = seg.data, 0
            while pc + 2 <= len(code):
                if code[pc] & 3 != 3:
                    pc += 2
                    continue
                if pc + 4 > len(code):
                    break
                word = int.from_bytes(code[pc : pc + 4], "little")
                if word in (0x30200073, 0x10200073) or (
                    word & 0x7F == 0x73 and (word >> 12) & 7 not in (0, 4) and word >> 20 in _IRQ_CSRS
                ):
                    sites[seg.addr + pc] = 1
                pc += 4
        return sites

    def halted(self) -> bool:
        """Did the slice end on a ``wfi``?"""
        pc = self.m.pc
        try:
            return int.from_bytes(self.m.read(pc - 4, 4), "little") == WFI
        except UcError:  # the PC at the start of mapped memory: nothing ran before it
            return False

    def install_port_hooks(self, port_in: object, port_out: object) -> None:
        raise NotImplementedError("riscv64 has no I/O ports")
