"""x86_64 trap delivery through the guest's IDT, as the CPU does it.

Unicorn reports interrupts and exceptions but never walks the IDT, executes no ``syscall``
(it calls the hooks and moves on) and a host write to CS/SS does not change the CPU's
privilege level. So a ring-3 -> ring-0 entry (an interrupt or exception through the IDT, or
``syscall`` through STAR/LSTAR/SFMASK) loads CS, SS and CPL 0 in the engine's CPU state
(:mod:`.privilege`) and builds the frame on TSS.RSP0 (or an IST stack) as the CPU does; no
code of ours runs, so nothing needs mapping in the guest's page tables. ``iretq`` and
``sysretq`` back to ring 3 are the guest's own, executed natively.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import capstone
from unicorn import (
    UC_HOOK_INSN,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_INVALID,
    UcError,
)
from unicorn import x86_const as xc

from kprobesim.engine import access_kind
from kprobesim.errors import ImageError

from . import exception_state, paging, privilege

if TYPE_CHECKING:
    from kprobesim.machine import Machine

IF, TF, NT, RF = 1 << 9, 1 << 8, 1 << 14, 1 << 16
VEC_DB, VEC_BP, VEC_UD, VEC_DF, VEC_TS, VEC_NP, VEC_SS, VEC_GP, VEC_PF = 1, 3, 6, 8, 10, 11, 12, 13, 14
ERROR_CODE_VECTORS = {8, 10, 11, 12, 13, 14, 17, 21, 29, 30}
# A contributory exception (or a page fault) raised while delivering one of these becomes a
# double fault (Intel SDM vol. 3, "Interrupt 8"); a fault while delivering #DF shuts the CPU down.
CONTRIBUTORY = {0, VEC_TS, VEC_NP, VEC_SS, VEC_GP}
MNEMONICS = {0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF", 10: "#TS",
             11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM"}
TRAP_VECTORS = {VEC_BP, 4}  # return to the next instruction
HLT = 0xF4

MSR_EFER, MSR_STAR, MSR_LSTAR, MSR_SFMASK = 0xC0000080, 0xC0000081, 0xC0000082, 0xC0000084
EFER_SCE, EFER_LMA = 1, 1 << 10
SYSCALL_LEN = 2


class Traps:
    """Hooks Unicorn's reports and delivers them through the guest's IDT."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        uc = machine.engine
        #: CR0 and RIP straight in the CPU state where the engine found them (a probe hit asks
        #: both: where it trapped, and whether paging is on), else None
        self._cr0 = getattr(uc, "exact_bits", {}).get(xc.UC_X86_REG_CR0, (None, 0))[0]
        direct = getattr(uc, "direct_registers", None)
        self._rip: tuple[object, int] | None = None
        if direct is not None and xc.UC_X86_REG_RIP in direct[1]:
            self._rip = (direct[0], direct[1][xc.UC_X86_REG_RIP])
        without_stop = getattr(uc, "run_without_stop_address", None)
        if without_stop is not None:  # CR2 must hold the guest's own faults across run slices
            without_stop()
        uc.hook_direct(UC_HOOK_INTR, self._intr, raw=True)
        self._hook_failed = uc.hook_failed
        uc.hook_direct(UC_HOOK_INSN_INVALID, self._invalid)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._mem_invalid)
        uc.hook_add(UC_HOOK_INSN, self._syscall, None, 1, 0, xc.UC_X86_INS_SYSCALL)
        self.debug_handlers: list = []  # kprobe single-step (#DB) consumers

    def host_access(self) -> contextlib.AbstractContextManager:
        """Host register access needs no privilege change on x86."""
        return contextlib.nullcontext()

    def install_port_hooks(self, port_in, port_out) -> None:  # noqa: ANN001
        uc = self.m.engine
        uc.hook_add(UC_HOOK_INSN, lambda uc, port, size, ud: port_in(port, size), None, 1, 0, xc.UC_X86_INS_IN)
        uc.hook_add(
            UC_HOOK_INSN,
            lambda uc, port, size, value, ud: port_out(port, size, value),
            None,
            1,
            0,
            xc.UC_X86_INS_OUT,
        )

    def translate(self, vaddr: int) -> int | None:
        """The physical address behind ``vaddr`` (the guest's page tables, when paging is on);
        while the board's boot page tables are live, also where the kernel will map itself
        (``boot_maps``: probes by symbol before Linux has its own tables)."""
        phys = paging.translate(self.m.engine, vaddr)
        if phys is None and self.m.boot_maps:
            boot = getattr(self.m.board, "boot_page_tables", None)
            if boot is not None and self._reg(xc.UC_X86_REG_CR3) & paging.ADDR_MASK == boot:
                for start, size, base in self.m.boot_maps:
                    if start <= vaddr < start + size:
                        return base + vaddr - start
        return phys

    def untranslated(self) -> bool:
        """Is paging off (every virtual address is its physical one)?"""
        cr0 = self._cr0
        return not (cr0.value if cr0 is not None else self._reg(xc.UC_X86_REG_CR0)) & paging.PG

    @contextlib.contextmanager
    def host_translation(self) -> Iterator[None]:
        """Unicorn drops stale translations of a virtual address by translating it as an
        instruction fetch would; for one the guest's page tables do not map, that records a page
        fault (CR2, and QEMU's memory of an exception being delivered, which would turn the
        guest's next #PF into #DF). Both are put back afterwards."""
        uc = self.m.engine
        cr2 = uc.reg_read(xc.UC_X86_REG_CR2)
        try:
            yield
        finally:
            if paging.paging_on(uc):
                if uc.reg_read(xc.UC_X86_REG_CR2) != cr2:
                    uc.reg_write(xc.UC_X86_REG_CR2, cr2)
                exception_state.clear(uc, self.m._memory_snapshots)

    def user_xol(self) -> int | None:
        """Where a process's uprobe XOL page goes: the board's ``user_xol`` (None: no board
        maps one into processes)."""
        return getattr(self.m.board, "user_xol", None)

    def map_user_page(
        self, vaddr: int, phys: int, new_table: Callable[[], int], root: int | None = None,
        written: list[int] | None = None,
    ) -> str | None:
        """Map a simulator page at user address ``vaddr`` in the current address space, or the
        one whose top table is at ``root`` (a uprobe XOL area, see :func:`paging.map_user_page`);
        the entries written are added to ``written``. None when done, else why not."""
        if not paging.paging_on(self.m.engine):
            return "paging is off: there is no user address space"
        wrote: list[int] = written if written is not None else []
        before = len(wrote)

        def write(addr: int, data: bytes) -> None:
            self.m.write_phys(addr, data)
            wrote.append(addr)

        why = paging.map_user_page(self.m.engine, vaddr, phys, new_table, write, root)
        if len(wrote) > before:
            self.m.flush_tlb()
        return why

    # -- user page tables (uprobes' private text pages) -----------------------------------------
    def user_root(self) -> int | None:
        """The physical address of the current address space's top page table (None: no paging)."""
        if not paging.paging_on(self.m.engine):
            return None
        return self._reg(xc.UC_X86_REG_CR3) & paging.ADDR_MASK

    def user_leaf(self, root: int, vaddr: int) -> tuple[int, int] | None:
        """The 4 KiB leaf entry of ``vaddr`` in the tables at ``root``: its address and value."""
        return paging.leaf_entry(self.m.engine, root, vaddr)

    entry_page = staticmethod(paging.entry_page)
    entry_with_page = staticmethod(paging.with_page)
    user_text_entry = staticmethod(paging.user_text)

    def user_access_error(self, addr: int, size: int, write: bool) -> tuple[int, int] | None:
        """Would the current process's page tables refuse a user-mode access to ``[addr, addr +
        size)``: a page not present, kernel-only, or read-only for a write (a page fork shares
        copy-on-write until one side writes it)? Then (the address the #PF reports, its error
        code: P, W and U as the CPU sets them for that load or store); None when the access may
        go ahead. For accesses the simulator makes on a user
        instruction's behalf, which would otherwise store into a page the process may not write
        (and the other side of a fork shares)."""
        page = addr & ~0xFFF
        while page < addr + size:
            w = paging.walk(self.m.engine, page)
            at = max(addr, page)
            rw = 2 if write else 0
            if w.phys is None:
                return at, 4 | rw
            if not w.user or (write and not w.writable):
                return at, 1 | 4 | rw
            page += 0x1000
        return None

    def user_page_fault(self, addr: int, error: int, rip: int) -> None:
        """Deliver the #PF the user instruction at ``rip`` takes at ``addr`` (CR2 set, as the
        CPU does) with ``error`` (:meth:`user_access_error`'s, the code the CPU gives the
        unprobed instruction's own load or store): the kernel handles it exactly as it does that
        fault and the process comes back to ``rip``."""
        self.m.engine.reg_write(xc.UC_X86_REG_CR2, addr)
        self.deliver(VEC_PF, rip, error)

    def before_slice(self) -> None:
        """Under paging, forget any page fault recorded outside the guest's run (an engine with a
        stop address records one as each run returns; see :mod:`.exception_state`)."""
        if self._reg(xc.UC_X86_REG_CR0) & paging.PG:
            exception_state.clear(self.m.engine, self.m._memory_snapshots)

    def _reg(self, rid: int) -> int:
        return self.m.engine.reg_read(rid)

    # -- Unicorn hooks -------------------------------------------------------------------------
    def _intr(self, handle: int, intno: int, ud: int) -> None:
        """Unicorn's INTR hook, called by libunicorn itself (``hook_direct(raw=True)``)."""
        try:
            direct = self._rip
            rip = direct[0][direct[1]] if direct is not None else self._reg(xc.UC_X86_REG_RIP)  # type: ignore[index]
            if intno == VEC_BP:  # the usual trap: a probe's break
                self.m.on_break(rip - 1)  # handled at once (RIP set by the handler) or after the slice
            else:
                self._exception(intno, rip)
        except BaseException as e:
            self._hook_failed(e)

    def _exception(self, intno: int, rip: int) -> None:
        """Any other interrupt or exception Unicorn reports: into the guest's vector (or to a
        single-step consumer)."""
        pf_error = 0
        if intno == VEC_PF:  # the code the engine's page walk computed, then forgotten as delivered
            pf_error = exception_state.take_page_fault(self.m.engine, self.m._memory_snapshots)
        elif intno in CONTRIBUTORY or intno == VEC_DF:
            exception_state.clear(self.m.engine, self.m._memory_snapshots)
        if intno == VEC_DB:
            for handler in self.debug_handlers:
                if handler(rip):
                    return
            self.deliver(VEC_DB, rip)
        elif intno >= 32 or intno in TRAP_VECTORS:
            self.deliver(intno, rip)
        elif intno == VEC_PF:
            cr2 = self._reg(xc.UC_X86_REG_CR2)
            if cr2 == rip and self._reg(xc.UC_X86_REG_CS) & 3 == 3 and self.m.claims_fetch_fault(rip):
                self.m.on_break(rip, inline=False, fetched=False)  # e.g. a uretprobe trampoline
                return
            self.deliver(VEC_PF, rip, pf_error)
        else:
            self.deliver(intno, rip, 0 if intno in ERROR_CODE_VECTORS else None)

    def _invalid(self) -> bool:
        rip = self._reg(xc.UC_X86_REG_RIP)
        self.m.defer(lambda: self.deliver(VEC_UD, rip))
        return False

    def _mem_invalid(self, uc: object, access: int, addr: int, size: int, value: int, ud: object) -> bool:
        self.m.on_mem_fault(access_kind(access), addr, self._reg(xc.UC_X86_REG_RIP))
        return False

    # -- entry points for the run loop ---------------------------------------------------------
    def breakpoint(self, pc: int) -> None:
        """An int3 no probe owns: the guest's #BP, returning after the int3."""
        self.deliver(VEC_BP, pc + 1)

    def memory_fault(self, access: str, addr: int, pc: int) -> None:
        """No paging here: an access outside the board is a #GP (with the fault named if fatal)."""
        self.deliver(VEC_GP, pc, 0, what=f"{access} access fault at {addr:#x}")

    def interrupt(self, vector: int) -> bool:
        if not self._reg(xc.UC_X86_REG_RFLAGS) & IF:
            return False
        self.deliver(vector, self.m.pc)
        return True

    def unmask_sites(self) -> dict[int, int]:
        """``sti`` (interrupts open after the next instruction), ``popf`` and ``iret``, by a linear
        sweep of the image's kernel text; maps each address to the instructions to run before
        checking. A board whose kernel runs elsewhere than it is loaded (a bzImage under paging)
        has none: a held interrupt is then looked at every POLL instructions."""
        if getattr(self.m.board, "relocates_kernel", False):
            return {}
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        md.skipdata = True
        sites = {}
        for lo, hi in self.m.image.text:
            try:
                code = self.m.image.read(lo, hi - lo)
            except ImageError:
                continue
            for addr, _, mnemonic, _ in md.disasm_lite(code, lo):
                if mnemonic == "sti":
                    sites[addr] = 2
                elif mnemonic in ("popf", "popfq", "iretq", "iret", "iretd"):
                    sites[addr] = 1
        return sites

    def halted(self) -> bool:
        try:
            return self.m.read(self.m.pc - 1, 1)[0] == HLT
        except (UcError, OverflowError):  # the instruction before is not in memory: no hlt
            return False

    # -- delivery ------------------------------------------------------------------------------
    def deliver(self, vector: int, rip: int, error: int | None = None, what: str = "") -> None:
        """Enter the handler of ``vector`` with return address ``rip``.

        A fault while entering (an IDT entry beyond the limit, outside memory or not present, a
        frame that cannot be pushed, a missing TSS) is delivered in its place as the CPU does:
        #GP, #NP, #SS or #TS, promoted to a double fault (#DF) when it follows a contributory
        exception. A fault while entering #DF is a triple fault: the CPU shuts down, and the run
        ends as a guest fault that says so and why.
        """
        m = self.m
        if vector < 32 and vector not in TRAP_VECTORS:
            rip = m.exception_pc(rip)
        failures = []
        while True:
            failure = self._enter(vector, rip, error)
            if failure is None:
                return
            nested, code, reason = failure
            failures.append(f"{_describe(vector)}: {reason}")
            if vector == VEC_DF:
                m.fault("triple fault, CPU shut down: " + "; then ".join([what, *failures] if what else failures), rip)
                return
            if nested in CONTRIBUTORY and (vector in CONTRIBUTORY or vector == VEC_PF):
                nested, code = VEC_DF, 0
            vector, error = nested, code

    def _in_ram(self, addr: int, size: int) -> bool:
        """Is ``addr .. addr+size`` backed by RAM (through the page tables when paging is on)?"""
        base, ram = self.m.ram
        if not self._reg(xc.UC_X86_REG_CR0) & paging.PG:
            return base <= addr and addr + size <= base + ram
        page = addr & ~0xFFF
        while page < addr + size:
            phys = paging.translate(self.m.engine, page)
            if phys is None or not base <= phys < base + ram:
                return False
            page += 0x1000
        return True

    def _enter(self, vector: int, rip: int, error: int | None) -> tuple[int, int, str] | None:
        """Enter ``vector``'s handler; or (the exception this raises, its error code, why)."""
        m = self.m
        selector_error = vector * 8 + 2 + (vector != VEC_BP)  # IDT bit, EXT unless software int3
        _, idt_base, idt_limit, _ = self._reg(xc.UC_X86_REG_IDTR)
        if idt_limit < vector * 16 + 15:
            return VEC_GP, selector_error, f"vector {vector} beyond the IDT limit {idt_limit:#x}"
        entry = idt_base + vector * 16
        if not self._in_ram(entry, 16):
            return VEC_GP, selector_error, f"IDT entry at {entry:#x} outside memory"
        lo, sel, ist, attr, mid, hi, _ = struct.unpack("<HHBBHII", m.read(entry, 16))
        if not attr & 0x80:
            return VEC_NP, selector_error, "IDT gate not present"
        handler = lo | mid << 16 | hi << 32
        cs, ss = self._reg(xc.UC_X86_REG_CS), self._reg(xc.UC_X86_REG_SS)
        rsp, rflags = self._reg(xc.UC_X86_REG_RSP), self._reg(xc.UC_X86_REG_RFLAGS)
        cpl = cs & 3
        tr, tss = self._reg(xc.UC_X86_REG_TR)[:2]
        if ist & 7 or cpl:
            if not tss:
                return VEC_TS, tr & ~3, "stack switch with no TSS loaded"
            where = tss + 0x24 + 8 * ((ist & 7) - 1) if ist & 7 else tss + 4
            if not self._in_ram(where, 8):
                return VEC_TS, tr & ~3, f"TSS stack pointer at {where:#x} outside memory"
            stack = struct.unpack("<Q", m.read(where, 8))[0]
        else:
            stack = rsp
        stack &= ~0xF
        words = [ss, rsp, rflags, cs, rip] + ([error] if error is not None else [])
        frame = struct.pack(f"<{len(words)}Q", *reversed(words))
        if not self._in_ram(stack - len(frame), len(frame)):
            return VEC_SS, 0, f"exception frame push at {(stack - len(frame)) & (1 << 64) - 1:#x} outside memory"
        new_flags = rflags & ~(TF | NT | RF | (IF if attr & 0xF == 0xE else 0))
        if cpl == 0:
            m.entered()
            self._complete(stack - len(frame), handler, frame, new_flags, sel)
            return None
        _, gdt_base, gdt_limit, _ = self._reg(xc.UC_X86_REG_GDTR)
        where = gdt_base + (sel & ~7)
        if sel & ~7 == 0 or sel & 4 or gdt_limit < (sel & ~7) + 7:
            return VEC_GP, sel & ~3, f"gate selector {sel:#x} is not in the GDT"
        if not self._in_ram(where, 8):
            return VEC_GP, sel & ~3, f"GDT entry at {where:#x} outside memory"
        e2 = struct.unpack("<I", m.read(where + 4, 4))[0]
        if not e2 & privilege.DESC_P:
            return VEC_NP, sel & ~3, f"code segment {sel:#x} not present"
        m.entered()
        # 64-bit interrupts to an inner ring load SS with the null selector (Intel SDM 6.14.2)
        privilege.enter_ring0(m.engine, sel & ~3, e2, 0, 0, m._memory_snapshots)
        self._complete(stack - len(frame), handler, frame, new_flags, None)
        return None

    def _complete(self, rsp: int, handler: int, frame: bytes, rflags: int, sel: int | None) -> None:
        uc = self.m.engine
        self.m.write(rsp, frame)
        if sel is not None and sel != self._reg(xc.UC_X86_REG_CS):
            uc.reg_write(xc.UC_X86_REG_CS, sel)
        uc.reg_write(xc.UC_X86_REG_RSP, rsp)
        uc.reg_write(xc.UC_X86_REG_RFLAGS, rflags)
        uc.reg_write(xc.UC_X86_REG_RIP, handler)

    def _syscall(self, uc: object, ud: object) -> None:
        """``syscall`` (Intel SDM): RCX = the next RIP, R11 = RFLAGS, RFLAGS &= ~SFMASK, flat
        kernel CS/SS from STAR[47:32], CPL 0, RIP = LSTAR; #UD without EFER.SCE or long mode."""
        eng = self.m.engine
        rip = self._reg(xc.UC_X86_REG_RIP)
        if eng.msr_read(MSR_EFER) & (EFER_SCE | EFER_LMA) != EFER_SCE | EFER_LMA:
            self.m.defer(lambda: self.deliver(VEC_UD, rip))
            return
        rflags = self._reg(xc.UC_X86_REG_RFLAGS)
        selector = (eng.msr_read(MSR_STAR) >> 32) & 0xFFFF
        eng.reg_write(xc.UC_X86_REG_RCX, rip + SYSCALL_LEN)
        eng.reg_write(xc.UC_X86_REG_R11, rflags & ~RF)
        eng.reg_write(xc.UC_X86_REG_RFLAGS, rflags & ~(eng.msr_read(MSR_SFMASK) | RF))
        privilege.enter_ring0(
            eng, selector & 0xFFFC, privilege.SYSCALL_CS, (selector + 8) & 0xFFFC, privilege.SYSCALL_SS,
            self.m._memory_snapshots,
        )  # fmt: skip
        # Unicorn adds the instruction's length to RIP once the hooks have run
        eng.reg_write(xc.UC_X86_REG_RIP, (eng.msr_read(MSR_LSTAR) - SYSCALL_LEN) & (1 << 64) - 1)


def _describe(vector: int) -> str:
    """``exception 13 (#GP)``; ``interrupt 32`` for the external vectors."""
    if vector >= 32:
        return f"interrupt {vector}"
    name = MNEMONICS.get(vector)
    return f"exception {vector} ({name})" if name else f"exception {vector}"
