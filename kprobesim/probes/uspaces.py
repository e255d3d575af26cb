"""Uprobes' pages in the address spaces of a Linux guest's processes.

Linux writes a uprobe's break into a private copy of the probed page in the one process
(``uprobe_write_opcode``: the page-cache page is replaced in that mm by an anonymous copy), so
``read(2)`` of the file and other processes' mappings of it keep the original bytes. The
simulator cannot allocate guest pages, so it does the equivalent with its own: the probed
page's entry in the process's page table is pointed at a copy in the simulator's user page
pool (``userpages.py``) holding the break, with the entry's permissions unchanged (user,
read+execute). The guest kernel never learns of it; the entry is put back to the file's page
wherever the kernel itself would look at it, at the hooks Linux's own uprobes use:

- ``uprobe_munmap(vma, start, end)``: the kernel is about to zap ``[start, end)`` (munmap, the
  mm's teardown at exit or exec, a vma being adjusted): the copies there are given back;
  ``uprobe_mmap(vma)`` (a new or adjusted mapping) arms the address space again.
- ``uprobe_start_dup_mmap()`` / ``uprobe_end_dup_mmap()`` bracket fork's copy of the parent's
  page tables: the parent's entries go back to the file's page meanwhile (the child copies
  the kernel's own entries) and the copies return afterwards; ``uprobe_dup_mmap(old, new)``
  names the child's mm, whose copied entries (if any) get copies of their own at the end.
- ``uprobe_clear_state(mm)`` (the mm is being freed, before its tables are torn down): every
  simulator page of that address space goes back to the pool: copies, the XOL page and the
  page tables the simulator added for it (their links in the guest's tables are cleared).
- ``uprobe_copy_process(task, flags)``: a child forked inside uretprobed functions gets the
  parent's chain of return instances and its own XOL page at the same address (Linux's
  ``dup_utask``/``dup_xol_work``), so it returns through the trampoline as the parent does;
  ``uprobe_free_utask(task)`` (exit, exec) drops a task's chain.
- ``handle_mm_fault`` returning: the pages a fault mapped are looked at (a fork's child and an
  exec'd program fault their text in).

Pages come from a fixed pool: when it has none left, what needed the page is refused with
a one-line reason (``refusals``) and counted missed: a process that cannot get a copy runs
unprobed (one miss per probe of the page), a hit that cannot get an XOL page puts the
process's page back to the file's and runs the original instruction (one miss per probe).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unicorn import UcError

from kprobesim.ebpf.btf import BTF_KIND_STRUCT, BTF_KIND_UNION, BtfError
from kprobesim.errors import ProbeError, SimError
from kprobesim.task import current_task

from .kprobe import Instance
from .regs import Regs
from .xol import UserXol

if TYPE_CHECKING:
    from .uprobes import Uprobes, USite

PAGE = 0x1000
CLONE_VM, CLONE_VFORK = 0x100, 0x4000
FOLLOW_MAXACTIVE = 256  # tasks inside handle_mm_fault at once that a guest-file uprobe can follow
EXHAUSTED = "the simulator's user page pool is exhausted"


class PoolExhausted(Exception):
    pass


@dataclass(eq=False)
class CowPage:
    """A process's private copy of a probed text page."""

    root: int  # the address space: its top page table's physical address
    vaddr: int  # the page's user address
    entry: int  # physical address of the page-table entry that maps it
    orig: int  # the page the entry mapped (the file's)
    copy: int  # the simulator's page, holding the breaks
    sites: set[int] = field(default_factory=set)
    suspended: bool = False  # the entry points back at ``orig`` while a fork copies the tables


@dataclass(eq=False)
class Space:
    """The simulator's pages in one address space."""

    root: int
    xol: UserXol | None = None
    tables: list[int] = field(default_factory=list)  # pool pages used as page tables
    written: list[int] = field(default_factory=list)  # entries the simulator wrote for the XOL page
    cows: dict[int, CowPage] = field(default_factory=dict)  # by page address
    refused: set[int] = field(default_factory=set)  # pages whose copy was refused here (counted once)


def _member_offset(btf: Any, struct_name: str, name: str) -> int:
    """Byte offset of member ``name`` of ``struct_name``, looking into anonymous members."""
    tid = btf.find(struct_name, BTF_KIND_STRUCT)
    if tid is None:
        raise BtfError(f"no struct {struct_name}")

    def search(type_id: int, base: int) -> int | None:
        for m in btf.members(type_id):
            if m.name == name:
                return base + m.bit_offset // 8
            if not m.name and btf.resolved(m.type_id).kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
                found = search(m.type_id, base + m.bit_offset // 8)
                if found is not None:
                    return found
        return None

    found = search(tid, 0)
    if found is None:
        raise BtfError(f"struct {struct_name} has no member {name!r}")
    return found


class Spaces:
    """Copies, XOL pages and page tables of the simulator in each address space (by root)."""

    def __init__(self, uprobes: Uprobes) -> None:
        self.u = uprobes
        self.m = uprobes.m
        self.traps = self.m.traps
        pool = self.m.user_pages
        assert pool is not None
        self.pool = pool
        self.spaces: dict[int, Space] = {}
        self.copies: dict[int, CowPage] = {}  # by the copy's physical page
        self.dup_roots: set[int] = set()  # parents copying their tables for a fork
        self.forking: dict[int, int] = {}  # parent pid -> the child's root
        self.hooks: list[Any] = []
        self._layout: dict[str, int] | None = None

    # -- the guest kernel's structures ---------------------------------------------------------
    def layout(self) -> dict[str, int]:
        if self._layout is None:
            btf = self.m.btf
            if btf is None:
                raise ProbeError("uprobes on a guest's files need the kernel's BTF (mm_struct, vm_area_struct)")
            try:
                self._layout = {
                    "pgd": _member_offset(btf, "mm_struct", "pgd"),
                    "vm_mm": _member_offset(btf, "vm_area_struct", "vm_mm"),
                    "pid": _member_offset(btf, "task_struct", "pid"),
                }
            except BtfError as e:
                raise ProbeError(f"uprobes on a guest's files: kernel BTF: {e}") from None
        return self._layout

    def _u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.m.read(addr, 8))[0]

    def root_of_mm(self, mm: int) -> int | None:
        """The physical address of an mm's top page table (``mm->pgd``)."""
        try:
            return self.u._physical(self._u64(mm + self.layout()["pgd"]))
        except (UcError, SimError):
            return None

    def root_of_vma(self, vma: int) -> int | None:
        try:
            return self.root_of_mm(self._u64(vma + self.layout()["vm_mm"]))
        except UcError:
            return None

    def current_root(self) -> int | None:
        return self.traps.user_root()

    # -- the kernel hooks ----------------------------------------------------------------------
    def place_hooks(self) -> None:
        """Kprobes on the kernel's uprobe hooks and a kretprobe on handle_mm_fault."""
        if self.hooks:
            return
        self.layout()
        probes = self.m.probes
        hooks: list[tuple[str, Callable[[Regs], None]]] = [
            ("uprobe_munmap", self._on_munmap),
            ("uprobe_mmap", self._on_mmap),
            ("uprobe_start_dup_mmap", self._on_start_dup),
            ("uprobe_dup_mmap", self._on_dup),
            ("uprobe_end_dup_mmap", self._on_end_dup),
            ("uprobe_clear_state", self._on_clear_state),
            ("uprobe_copy_process", self._on_copy_process),
            ("uprobe_free_utask", self._on_free_utask),
        ]
        try:
            for symbol, handler in hooks:
                self.hooks.append(probes.register(symbol, pre=self._hook(handler), name=f"uprobes-{symbol}"))
            self.hooks.append(
                probes.register_kretprobe(
                    "handle_mm_fault", lambda inst, regs: self.u._arm_mapped_all(), maxactive=FOLLOW_MAXACTIVE,
                    name="uprobes-follow",
                )
            )
        except SimError as e:
            self.remove_hooks()
            raise ProbeError(f"uprobes on guest files follow the kernel's own uprobe hooks: {e}") from None

    @staticmethod
    def _hook(handler: Callable[[Regs], None]) -> Callable[[Any, Regs], int]:
        def pre(probe: Any, regs: Regs) -> int:
            handler(regs)
            return 0

        return pre

    def remove_hooks(self) -> None:
        for hook in self.hooks:
            hook.unregister()
        self.hooks.clear()

    def _on_munmap(self, regs: Regs) -> None:
        root = self.root_of_vma(regs.arg(1))
        space = self.spaces.get(root) if root is not None else None
        if space is None:
            return
        start, end = regs.arg(2), regs.arg(3)
        for cow in [c for c in space.cows.values() if start <= c.vaddr < end]:
            self.release(cow)

    def _on_mmap(self, regs: Regs) -> None:
        root = self.root_of_vma(regs.arg(1))
        if root is not None and root == self.current_root():
            self.u._arm_mapped_all()

    def _on_start_dup(self, regs: Regs) -> None:
        root = self.current_root()
        if root is None:
            return
        self.dup_roots.add(root)
        space = self.spaces.get(root)
        for cow in space.cows.values() if space is not None else ():
            entry = self._entry(cow.entry)
            if self.traps.entry_page(entry) == cow.copy:
                self._set_entry(cow.entry, self.traps.entry_with_page(entry, cow.orig))
                cow.suspended = True

    def _on_dup(self, regs: Regs) -> None:
        root = self.root_of_mm(regs.arg(2))
        if root is not None:
            self.forking[current_task(self.m).pid] = root

    def _on_end_dup(self, regs: Regs) -> None:
        root = self.current_root()
        if root is None:
            return
        self.dup_roots.discard(root)
        space = self.spaces.get(root)
        for cow in list(space.cows.values()) if space is not None else ():
            if not cow.suspended:
                continue
            cow.suspended = False
            entry = self._entry(cow.entry)
            if self.traps.entry_page(entry) == cow.orig:
                self._set_entry(cow.entry, self.traps.entry_with_page(entry, cow.copy))
            else:
                self.release(cow, restore=False)
        child = self.forking.get(current_task(self.m).pid)
        if child is not None:  # the child's entries, where the kernel copied them (the file's page)
            for site in list(self.u.sites.values()):
                if site.armed and site.program is not None:
                    self.install(site, child)

    def _on_clear_state(self, regs: Regs) -> None:
        root = self.root_of_mm(regs.arg(1))
        if root is not None:
            self.teardown(root)

    def _on_copy_process(self, regs: Regs) -> None:
        """Linux's ``uprobe_copy_process``: a fork inside uretprobed functions."""
        task, flags = regs.arg(1), regs.arg(2)
        parent = current_task(self.m).pid
        child_root = self.forking.pop(parent, None)
        chain = self.u.returns.get(parent)
        if not chain or (flags & CLONE_VM and not flags & CLONE_VFORK):
            return  # nothing to return through, or a thread (it starts on a stack of its own)
        try:
            (pid,) = struct.unpack("<i", self.m.read(task + self.layout()["pid"], 4))
        except UcError:
            return
        copied = [Instance(inst.kretprobe, inst.ret_addr, inst.return_sp, dict(inst.data)) for inst in chain]
        for inst in copied:
            inst.kretprobe.active += 1
        self.u.returns[pid] = copied
        if not flags & CLONE_VM and child_root is not None:  # its own mm: its own XOL page
            self.xol_area(child_root)  # (without one, its return is a fetch fault taken as the return)

    def _on_free_utask(self, regs: Regs) -> None:
        try:
            (pid,) = struct.unpack("<i", self.m.read(regs.arg(1) + self.layout()["pid"], 4))
        except UcError:
            return
        self.u.forget_task(pid)

    # -- XOL pages -----------------------------------------------------------------------------
    def xol_area(self, root: int) -> tuple[UserXol | None, str | None]:
        """The XOL page of the address space at ``root``, mapped (made now if needed)."""
        vaddr = self.u.user_xol
        if vaddr is None:
            return None, "the guest does not page yet"
        space = self.spaces.setdefault(root, Space(root))
        area = space.xol
        if area is None:
            page = self.pool.alloc()
            if page is None:
                return None, EXHAUSTED
            area = UserXol(self.m, vaddr, self.u.step.SLOT_SIZE, page)
        tables: list[int] = []

        def new_table() -> int:
            table = self.pool.alloc()
            if table is None:
                raise PoolExhausted
            tables.append(table)
            return table

        written: list[int] = []
        try:
            why = area.map(root, new_table, written)
        except PoolExhausted:
            why = EXHAUSTED
        space.tables += tables
        space.written += written
        if why is not None:
            if space.xol is None:
                self._unlink(space)
                self.pool.free(area.phys)
            return None, why
        if space.xol is None:
            space.xol = area
            self.u.new_area(area)
        return area, None

    def _unlink(self, space: Space) -> None:
        """Clear the entries the simulator wrote into the guest's own tables, free its tables."""
        for where in space.written:
            if not self.pool.contains(where):
                self.m.write_phys(where, bytes(8))
        space.written.clear()
        for table in space.tables:
            self.pool.free(table)
        space.tables.clear()
        self.m.flush_tlb()

    # -- private copies of probed pages --------------------------------------------------------
    def _entry(self, where: int) -> int:
        return struct.unpack("<Q", self.m.read_phys(where, 8))[0]

    def _set_entry(self, where: int, value: int) -> None:
        self.m.write_phys(where, struct.pack("<Q", value))
        self.m.flush_tlb()

    def copy_at(self, phys: int) -> CowPage | None:
        """The copy a physical address is in."""
        return self.copies.get(phys & ~(PAGE - 1))

    def install(self, site: USite, root: int | None = None) -> None:
        """Give the address space at ``root`` (the current one by default) a copy of the page
        of ``site`` with its break, if that page maps the program's file there."""
        root = self.current_root() if root is None else root
        if root is None or root in self.dup_roots:
            return
        leaf = self.traps.user_leaf(root, site.addr)
        if leaf is None:
            return
        where, entry = leaf
        mapped = self.traps.entry_page(entry)
        page_va = site.addr & ~(PAGE - 1)
        space = self.spaces.get(root)
        cow = space.cows.get(page_va) if space is not None else None
        if cow is not None:
            if mapped == cow.copy and where == cow.entry:
                self._add_break(cow, site)
                return
            self.release(cow, restore=False)  # the kernel mapped something else there meanwhile
        if not self.traps.user_text_entry(entry) or not self._holds_file(site, page_va, mapped):
            return
        copy = self.pool.alloc()
        space = self.spaces.setdefault(root, Space(root))
        if copy is None:
            if page_va not in space.refused:
                space.refused.add(page_va)
                sites = [s for s in self.u.sites.values() if s.armed and s.addr & ~(PAGE - 1) == page_va]
                self.u.refuse([p for s in sites for p in s.probes if p.enabled],
                              f"no private copy of its page {page_va:#x} for this process: {EXHAUSTED}")
            return
        self.m.write_phys(copy, self.m.read_phys(mapped, PAGE))
        cow = CowPage(root, page_va, where, mapped, copy)
        for other in self.u.sites.values():
            if other.armed and other.program is site.program and other.addr & ~(PAGE - 1) == page_va:
                self._add_break(cow, other)
        space.cows[page_va] = cow
        self.copies[copy] = cow
        self._set_entry(where, self.traps.entry_with_page(entry, copy))

    def _holds_file(self, site: USite, page_va: int, phys: int) -> bool:
        prog = site.program
        assert prog is not None
        lo = max(page_va, prog.lo)
        expected = prog.file_bytes(lo, min(page_va + PAGE, prog.hi) - lo)
        if expected is None:
            return False
        try:
            return self.m.read_phys(phys + lo - page_va, len(expected)) == expected
        except UcError:
            return False

    def _add_break(self, cow: CowPage, site: USite) -> None:
        if site.addr in cow.sites:
            return
        cow.sites.add(site.addr)
        self.m.patch_physical(cow.copy + site.addr - cow.vaddr, site.addr, self.u.step.probe_break(site.decision))

    def disarm(self, site: USite) -> None:
        """Take the site's break out of every copy; a copy with no break left is given back."""
        for cow in [c for c in self.copies.values() if site.addr in c.sites]:
            cow.sites.discard(site.addr)
            self.m.patch_physical(cow.copy + site.addr - cow.vaddr, site.addr, site.orig)
            if not cow.sites:
                self.release(cow)

    def release(self, cow: CowPage, restore: bool = True) -> None:
        """Point the entry back at the file's page (when it still maps the copy), free the copy."""
        if restore:
            entry = self._entry(cow.entry)
            if self.traps.entry_page(entry) == cow.copy:
                self._set_entry(cow.entry, self.traps.entry_with_page(entry, cow.orig))
        space = self.spaces.get(cow.root)
        if space is not None and space.cows.get(cow.vaddr) is cow:
            del space.cows[cow.vaddr]
        self.copies.pop(cow.copy, None)
        self.pool.free(cow.copy)

    def release_current(self, addr: int) -> bool:
        """Give back the current address space's copy of the page of ``addr`` (a refused hit)."""
        root = self.current_root()
        space = self.spaces.get(root) if root is not None else None
        cow = space.cows.get(addr & ~(PAGE - 1)) if space is not None else None
        if cow is None:
            return False
        self.release(cow)
        return True

    def teardown(self, root: int) -> None:
        """The mm at ``root`` is being freed: every simulator page of it goes back to the pool."""
        space = self.spaces.pop(root, None)
        self.dup_roots.discard(root)
        if space is None:
            return
        for cow in list(space.cows.values()):
            self.release(cow)
        if space.xol is not None:
            self.u.drop_area(space.xol)
            self.pool.free(space.xol.phys)
        self._unlink(space)

    def clear(self) -> None:
        """Every copy given back (the last guest-file site is gone); XOL pages stay with their processes."""
        for cow in list(self.copies.values()):
            self.release(cow)
