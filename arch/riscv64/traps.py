"""riscv64 trap delivery: Unicorn reports traps but never enters the guest's vector.

We do what the hart would for exceptions: an exception medeleg delegates, taken below M-mode,
goes to S-mode (sepc/scause/stval, SIE stacked into SPIE, the privilege into SPP, stvec);
otherwise to M-mode (mepc/mcause/mtval, MIE into MPIE, MPP, mtvec, vectored for interrupts
when the mode bits are 1). Unicorn reports every ``ecall`` as cause 8: the cause is chosen by
the current privilege. Unicorn advances the PC by 4 before reporting any exception (whatever
the instruction's length), so the faulting instruction is at ``pc - 4``: a page fault's epc is
there and the guest retries the access after mapping the page. Instruction bytes and fault
addresses are read through the MMU.

Interrupts: on the bundled firmware's board the run loop delivers them here (M-mode). On
boards with device-driven lines (``virt``) the lines are set in the hart's ``mip`` and Unicorn
takes them itself (mideleg, priorities, exact unmasking), see ``hart.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from unicorn import UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UC_HOOK_MEM_INVALID, UcError
from unicorn.riscv_const import (
    UC_RISCV_REG_MCAUSE,
    UC_RISCV_REG_MEDELEG,
    UC_RISCV_REG_MEPC,
    UC_RISCV_REG_MIDELEG,
    UC_RISCV_REG_MIE,
    UC_RISCV_REG_MSTATUS,
    UC_RISCV_REG_MTVAL,
    UC_RISCV_REG_MTVEC,
    UC_RISCV_REG_PC,
    UC_RISCV_REG_PRIV,
    UC_RISCV_REG_SATP,
    UC_RISCV_REG_SCAUSE,
    UC_RISCV_REG_SEPC,
    UC_RISCV_REG_STVAL,
    UC_RISCV_REG_STVEC,
)

from kprobesim.engine import access_kind

from .mmu import PPN_MASK, PageFault, entry_page, leaf_entry, map_user_page, translate, user_text, user_top, with_page

if TYPE_CHECKING:
    from kprobesim.machine import Machine

_IRQ_CSRS = (0x300, 0x304, 0x100, 0x104)  # mstatus, mie, sstatus, sie
MSTATUS_MIE = 1 << 3
MSTATUS_MPIE = 1 << 7
MSTATUS_MPP = 3 << 11
MSTATUS_SIE = 1 << 1
MSTATUS_SPIE = 1 << 5
MSTATUS_SPP = 1 << 8
INTERRUPT = 1 << 63
WFI = 0x10500073

CAUSE_FETCH_FAULT, CAUSE_ILLEGAL, CAUSE_BREAKPOINT = 1, 2, 3
CAUSE_LOAD_FAULT, CAUSE_STORE_FAULT = 5, 7
ECALL_CAUSES = (8, 9, 11)
ECALL_BY_PRIV = {0: 8, 1: 9, 3: 11}
ADDRESS_CAUSES = (0, 1, 4, 5, 6, 7, 12, 13, 15)  # tval holds the faulting address
_ACCESS_CAUSE = {"fetch": CAUSE_FETCH_FAULT, "load": CAUSE_LOAD_FAULT, "store": CAUSE_STORE_FAULT}


class Traps:
    """Hooks Unicorn's trap reports and delivers them into the guest's M-mode vector."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        uc = machine.engine
        self.hart = None
        if getattr(machine.board, "interrupt_lines", False):
            from .hart import Hart

            self.hart = Hart(uc)
            self.hart.raised = machine.cut_slice
            per_tick = getattr(machine.board, "insns_per_tick", 1)
            self.hart.serve_time(machine.now if per_tick == 1 else lambda: machine.now() // per_tick)
        uc.hook_direct(UC_HOOK_INTR, self._intr)
        uc.hook_direct(UC_HOOK_INSN_INVALID, self._invalid)
        # Unmapped and protected accesses (never in RAM, mapped read/write/execute). The hook
        # also covers RAM on purpose: Unicorn 2.1.4 lets a store skip its check for translated
        # code once the store's TLB entry is marked dirty, which it does after the first store
        # through that entry to a page with code (dropping only the blocks that store overlaps),
        # unless a memory hook covers the page. Then a kernel filling a page through its direct
        # map, where a process's code had been, left that code's other blocks to run in the
        # next process given the page (xv6's stressfs on virt). Covered, every store to RAM is
        # checked, as in QEMU while a page holds code.
        uc.hook_add(UC_HOOK_MEM_INVALID, self._mem_invalid)
        # Unicorn flags an ebreak as an error before its hook runs; engines that can clear it
        # let a handled break go on in the same emu_start.
        go_on = getattr(uc, "continue_after_trap", None)
        self._continue = go_on if go_on is not None and go_on() else None
        self._reg_read, self._on_break = uc.reg_read, machine.on_break  # the break path, bound once

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
    #: M-mode fetches are untranslated: how the engine finds the code at a physical address
    physical_fetch = machine_mode

    def host_access_needed(self) -> bool:
        """Must host CSR access lift the privilege now (the hart is below M-mode)?"""
        return self.m.engine.reg_read(UC_RISCV_REG_PRIV) != 3

    # -- Unicorn hooks -------------------------------------------------------------------------
    def _intr(self, intno: int) -> None:
        uc = self.m.engine
        pc = uc.reg_read(UC_RISCV_REG_PC)
        if intno in ECALL_CAUSES:  # Unicorn says 8 whatever the privilege
            sbi = getattr(self.m.board, "sbi", None)
            if sbi is not None and uc.reg_read(UC_RISCV_REG_PRIV) & 3 == 1:  # the simulator is the firmware
                sbi.ecall()
                uc.reg_write(UC_RISCV_REG_PC, pc)
                return
            self.exception(ECALL_BY_PRIV.get(uc.reg_read(UC_RISCV_REG_PRIV) & 3, intno), pc - 4, 0)
        elif intno == CAUSE_ILLEGAL:
            epc = pc - 4  # even for a 2-byte instruction
            insn = self.fetch(epc, 4)
            self.exception(CAUSE_ILLEGAL, epc, int.from_bytes(insn if insn[0] & 3 == 3 else insn[:2], "little"))
        elif intno in (CAUSE_FETCH_FAULT, 12) and self.hart is not None and (
            self.m.in_sim_pages(self.hart.badaddr) or self.m.claims_fetch_fault(self.hart.badaddr)
        ):
            # e.g. a kretprobe trampoline the guest's tables do not map: handled after the slice
            self.m.on_break(self.hart.badaddr, inline=False, fetched=False)
        elif intno in ADDRESS_CAUSES and self.hart is not None:
            self.exception(intno, pc - 4, self.hart.badaddr)
        else:
            self.exception(intno, pc - 4, 0)

    def step_in_place(self, addr: int, original: bytes, patched: bytes) -> bool:
        """Execute the original instruction at ``addr`` where it is, with every interrupt
        masked (mie cleared: M-level interrupts are taken in S-mode whatever mstatus says).

        Used where the guest's page tables would not map an out-of-line slot. Returns True
        when it retired (False: it trapped and the trap was delivered to the guest).
        """
        uc = self.m.engine
        phys = self.physical(addr)
        with self.machine_mode():
            mie = uc.reg_read(UC_RISCV_REG_MIE)
            uc.reg_write(UC_RISCV_REG_MIE, 0)
        self.m.patch_physical(phys, addr, original)
        self.m.event = None
        try:
            uc.emu_start(addr, self.m.arch.until, 0, 1)
        except UcError:
            pass
        finally:
            self.m.patch_physical(phys, addr, patched)
            with self.machine_mode():
                uc.reg_write(UC_RISCV_REG_MIE, mie)
        return uc.reg_read(UC_RISCV_REG_PC) == addr + len(original) and self.m.event is None

    def user_xol(self) -> int | None:
        """Where a process's uprobe XOL page goes on a board that maps one into processes
        (``user_xol``): the last page of the user half of the paging mode in use (Sv39:
        0x3ffffff000; Linux's mmap stays below Sv48's end even under Sv57). None without."""
        if not getattr(self.m.board, "user_xol", False):
            return None
        with self.machine_mode():
            top = user_top(self.m.engine.reg_read(UC_RISCV_REG_SATP))
        return None if top is None else top - 0x1000

    def map_user_page(
        self, vaddr: int, phys: int, new_table: Callable[[], int], root: int | None = None,
        written: list[int] | None = None,
    ) -> str | None:
        """Map a simulator page execute-only for user mode at ``vaddr`` in the current address
        space, or the one whose top table is at ``root`` (a uprobe XOL page, see
        :func:`mmu.map_user_page`); the entries written are added to ``written``. None when
        done, else why not."""
        uc = self.m.engine
        with self.machine_mode():
            satp = uc.reg_read(UC_RISCV_REG_SATP)
        if root is not None and satp >> 60:
            satp = (satp >> 60) << 60 | root >> 12
        wrote: list[int] = written if written is not None else []
        before = len(wrote)

        def write(addr: int, data: bytes) -> None:
            self.m.write_phys(addr, data)
            wrote.append(addr)

        why = map_user_page(satp, vaddr, phys, self.m.read_phys, write, new_table)
        if len(wrote) > before:
            self.m.flush_tlb()
        return why

    # -- user page tables (uprobes' private text pages) -----------------------------------------
    def user_root(self) -> int | None:
        """The physical address of the current address space's top page table (None: no paging)."""
        with self.machine_mode():
            satp = self.m.engine.reg_read(UC_RISCV_REG_SATP)
        return (satp & PPN_MASK) << 12 if satp >> 60 else None

    def user_leaf(self, root: int, vaddr: int) -> tuple[int, int] | None:
        """The 4 KiB leaf entry of ``vaddr`` in the tables at ``root``: its address and value."""
        with self.machine_mode():
            mode = self.m.engine.reg_read(UC_RISCV_REG_SATP) >> 60
        return leaf_entry(mode << 60 | root >> 12, vaddr, self.m.read_phys) if mode else None

    entry_page = staticmethod(entry_page)
    entry_with_page = staticmethod(with_page)
    user_text_entry = staticmethod(user_text)

    def physical(self, vaddr: int) -> int:
        """The physical address the hart would use for ``vaddr`` now (its page tables below M)."""
        uc = self.m.engine
        with self.machine_mode() as priv:
            satp = uc.reg_read(UC_RISCV_REG_SATP) if priv < 3 else 0
        if satp >> 60 == 0:  # no paging yet: where the OS will map it, if known
            for start, size, phys in self.m.boot_maps:
                if start <= vaddr < start + size:
                    return phys + vaddr - start
        return translate(satp, vaddr, self.m.read_phys)

    def fetch(self, vaddr: int, size: int) -> bytes:
        """Instruction bytes at a virtual PC (page by page, as the hart fetches)."""
        out = b""
        while size:
            chunk = min(size, 0x1000 - (vaddr & 0xFFF))
            try:
                out += self.m.read_phys(self.physical(vaddr), chunk)
            except (PageFault, UcError):
                out += bytes(chunk)
            vaddr, size = vaddr + chunk, size - chunk
        return out

    def _invalid(self) -> bool:
        """An ebreak (Unicorn's only report of it). True: handled at once, go on at the new PC."""
        go_on = self._continue
        if self._on_break(self._reg_read(UC_RISCV_REG_PC), go_on is not None) and go_on is not None:
            return go_on()
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
        if self.hart is not None:  # a device line: Unicorn takes it when the hart allows
            self.hart.set_line(1 << irq, True)
            return True
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
        code = cause & 0xFF
        with self.machine_mode() as priv:
            deleg = uc.reg_read(UC_RISCV_REG_MIDELEG if cause & INTERRUPT else UC_RISCV_REG_MEDELEG)
            to_s = priv < 3 and deleg >> code & 1
            vec = uc.reg_read(UC_RISCV_REG_STVEC if to_s else UC_RISCV_REG_MTVEC)
            if vec == 0:
                reg = "stvec" if to_s else "mtvec"
                self.m.fault(what or f"trap cause {code} with no trap vector ({reg}=0)", epc)
                return
            self.m.entered()
            status = uc.reg_read(UC_RISCV_REG_MSTATUS)
            if to_s:
                sie = 1 if status & MSTATUS_SIE else 0
                status = (status & ~(MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP)) | (sie << 5) | (priv << 8)
                regs = (UC_RISCV_REG_SEPC, UC_RISCV_REG_SCAUSE, UC_RISCV_REG_STVAL)
            else:
                mie = 1 if status & MSTATUS_MIE else 0
                status = (status & ~(MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP)) | (mie << 7) | (priv << 11)
                regs = (UC_RISCV_REG_MEPC, UC_RISCV_REG_MCAUSE, UC_RISCV_REG_MTVAL)
            uc.reg_write(UC_RISCV_REG_MSTATUS, status)
            for reg, value in zip(regs, (epc, cause, tval), strict=True):
                uc.reg_write(reg, value)
        uc.reg_write(UC_RISCV_REG_PRIV, 1 if to_s else 3)
        base = vec & ~3
        vectored = vec & 3 == 1 and cause & INTERRUPT
        uc.reg_write(UC_RISCV_REG_PC, base + 4 * code if vectored else base)

    # -- run-loop queries ----
    def unmask_sites(self) -> dict[int, int]:
        """Instructions that can unmask interrupts: csr writes to m/sstatus or m/sie, mret, sret.

        Maps each address to how many instructions to execute before interrupts are checked.
        """
        sites: dict[int, int] = {}
        if self.hart is not None:  # Unicorn itself takes interrupts the moment they are unmasked
            return sites
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
        return int.from_bytes(self.fetch(self.m.pc - 4, 4), "little") == WFI

    def install_port_hooks(self, port_in: object, port_out: object) -> None:
        raise NotImplementedError("riscv64 has no I/O ports")
