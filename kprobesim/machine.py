"""Machine: one engine, its board, a loaded image and the run loop.

The run loop executes the guest in ``emu_start`` slices bounded by the next timer deadline,
the instruction budget and a slice length. Virtual time advances by the instructions each
slice retired (the engine's exact counter), so the same image and probes give the same run.
Nothing is hooked per instruction: hooks fire only on traps, faults and device accesses.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import math
import mmap
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unicorn import (
    UC_HOOK_CODE,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    Uc,
    UcError,
)
from unicorn.unicorn_const import (
    UC_CTL_CONTEXT_CPU,
    UC_CTL_CONTEXT_MEMORY,
    UC_CTL_CONTEXT_MODE,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
)

from .arch import Arch, get_arch
from .board import NEVER, Timer
from .errors import BudgetExhausted, GuestFault, ImageError, ProbeError, SimError, UsageError
from .guest.panic import PanicWatch
from .image import Image, load_image
from .probes.kprobe import Kprobe, Kretprobe, PostHandler, PreHandler, ReturnHandler
from .probes.registry import Registry
from .probes.uprobes import Uprobe, UprobeHandler, Uprobes, UretHandler, Uretprobe
from .probes.userpages import USER_POOL_GAP, USER_POOL_PAGES, UserPages

_FLAT = -1  # key of a trap's page cache: the guest does not translate addresses now
_PAGED = -2  # ... it does (asked at the trap's first access)
SLICE = 200_000  # longest emu_start slice (instructions)
POLL = 20_000  # a held interrupt is looked at again at multiples of this virtual time (and at unmask points)
DEFAULT_BUDGET = 50_000_000
DEFAULT_TIMEOUT = 120.0
STORM = 1000  # trap and interrupt entries in a row with no instruction retired: a trap storm
_U64_AT = struct.Struct("<Q").unpack_from  # (buffer, offset) -> (value,)
PAGE = 0x1000
# Simulator-owned pages by permissions: read+execute kprobe slot pages (4096 16-byte slots), and a
# little read/write/execute room for trap trampolines (x86's shadow GDT is written by the CPU).
# Slots: 512 KiB, room for 32,768 x86 slots (a whole kernel armed, plus boosted copies).
SIM_POOL = {UC_PROT_READ | UC_PROT_EXEC: 0x80000, UC_PROT_ALL: 0x4000}
SLOT_PERMS = UC_PROT_READ | UC_PROT_EXEC

_MEM_ERRORS = {
    UC_ERR_READ_UNMAPPED: ("load", "unmapped"),
    UC_ERR_WRITE_UNMAPPED: ("store", "unmapped"),
    UC_ERR_FETCH_UNMAPPED: ("fetch", "unmapped"),
    UC_ERR_READ_PROT: ("load", "protected"),
    UC_ERR_WRITE_PROT: ("store", "protected"),
    UC_ERR_FETCH_PROT: ("fetch", "protected"),
}


def _device_state(device: object) -> dict[str, Any]:
    """A device's state for a snapshot: its fields, without the machine and wired callbacks."""
    fields = {k: v for k, v in vars(device).items() if k != "machine" and not callable(v)}
    linked = {k: v for k, v in fields.items() if hasattr(v, "attach")}  # another device: keep the reference
    state = copy.deepcopy({k: v for k, v in fields.items() if k not in linked})
    return state | linked


@dataclass
class Snapshot:
    """Everything needed to put a machine back to a moment of its run (memory copy-on-write)."""

    context: Any
    time: int
    console: bytes
    sim_pools: dict[int, list[int]]
    devices: list[dict[str, Any]]
    trace_lines: int = 0  # how many trace lines had been kept
    interrupt_trace: tuple[int, int] = (0, 0)
    user_pages: Any = None  # the user page pool's allocation state


@dataclass
class Break:
    """The guest hit a break instruction at ``pc`` (reported by the arch's trap hooks)."""

    pc: int
    fetched: bool = True  # False: reached by a fetch fault (a trampoline the guest does not map)


@dataclass
class Deferred:
    """A trap the arch layer handles once the slice has ended (the instruction did not retire)."""

    action: Callable[[], None]


@dataclass
class MemFault:
    """A memory access the board does not back."""

    access: str  # load / store / fetch
    addr: int
    pc: int


class Machine:
    """A simulated computer running one kernel image."""

    def __init__(
        self,
        arch: Arch,
        image: Image,
        console: Callable[[bytes], None] | None = None,
        step_variant: str | None = None,
        board: Any = None,
    ) -> None:
        # A machine of its own (RAM, devices, boot state: see kprobesim/board/virt and board/pc);
        # None: the arch's own board.
        self.board = board
        self._translate: Callable[[int], int | None] | None = None
        #: virtual page -> physical page while a break handler runs inside the slice (the guest
        #: is stopped, so its page tables hold); None otherwise (see :meth:`read`)
        self._pages: dict[int, int] | None = None
        self.reboot_requested = False  # the guest asked the board to reset (the run ended)
        self.arch = arch
        self.step_variant = step_variant
        self.trace_sink: Callable[[str], None] | None = None  # where trace lines go (the CLI's stdout)
        self.trace_lines: list[str] = []  # trace lines kept when there is no sink
        #: Interrupts the run loop delivered: (how many, a digest of each one's virtual time and
        #: vector). A probed run must take the same ones at the same instructions as unprobed.
        self.interrupt_trace: tuple[int, int] = (0, 0)
        self._registry: Registry | None = None
        self._uprobes: Uprobes | None = None
        self.image = image
        self.engine = arch.new_engine()
        self.console_bytes = bytearray()
        self._console_sink = console
        #: Called after each console write (a device that waits for the console to go quiet).
        self.console_listeners: list[Callable[[], None]] = []
        #: a Linux or xv6 panic on the console ends the run (guest/panic.py)
        self.panic_watch = PanicWatch(self._panicked if image.has_symbol("panicked") else None)
        self.exit_status: int | None = None
        self._running = False  # inside run(): a handler calling run() again is refused
        self._time = 0
        self._slice_start = 0
        self._slice_end = 0
        self.hidden = 0  # instructions of the current slice that are not the guest's
        self.event: Break | MemFault | Deferred | None = None
        self._pending_fault: GuestFault | None = None
        self._cut = False  # the slice is ending early (a device or an unmask point stopped it)
        self._stopped_before = False  # ... before an instruction, which did not run
        self._timers: list[Timer] = []
        self._ports: dict[int, tuple[Callable, Callable, int]] = {}
        self._port_hooks = False
        self.break_handlers: list[Callable[[Machine, int], bool]] = []
        self.exception_fixups: list[Callable[[int], int]] = []  # pc of a fault -> pc to report
        #: A user-mode fetch fault at an address one of these claims is a break there instead
        #: of the guest's fault (a uretprobe trampoline a process has no XOL page for).
        self.fetch_fault_claims: list[Callable[[int], bool]] = []
        self.ram = board.ram if board is not None else arch.ram
        #: The RAM's bytes in a host buffer the engine runs from (Unicorn), read and written
        #: directly by the host for addresses inside it; None where the engine has no such
        #: buffer or once memory snapshots are on (copy-on-write moves stored pages out of it).
        self._ram_view: mmap.mmap | None = None
        self._ram_lo, self._ram_hi = self.ram[0], self.ram[0] + self.ram[1]
        self._ram_size = self.ram[1]
        #: Where the simulator-owned pages are in physical memory: the board's choice (outside
        #: its RAM, which may be sized by the user), else the arch's.
        self.sim_phys: int = getattr(board, "sim_base", None) or arch.sim_base
        #: Where the guest sees them: at their physical address, or in a board's window in the
        #: kernel's address space (the pc board maps them near Linux's text).
        self.sim_base: int = getattr(board, "sim_window", None) or self.sim_phys
        self._sim_end = self.sim_base + sum(SIM_POOL.values())
        self._lines = bool(getattr(board, "interrupt_lines", False))  # devices drive the hart's pending bits
        #: Mappings a guest OS will set up, known before it runs: (virtual start, size, physical
        #: start). Used for its virtual addresses while its MMU is still off (a Linux kernel's text).
        self.boot_maps: list[tuple[int, int, int]] = []
        #: Where the target kernel's raw BTF comes from (see :attr:`btf`); a guest-OS module may
        #: replace it, e.g. to find a Linux image's ``.BTF`` in guest memory.
        self.btf_source: Callable[[], bytes | None] = image.btf_data
        self._btf: Any = None
        #: The kernel's configuration (``.config`` text) for ``__kconfig`` externs, and its
        #: version (``KERNEL_VERSION(a, b, c)``) when known; the bundled kernels have neither.
        self.kconfig_source: Callable[[], str | None] = lambda: None
        self.kernel_version: int | None = None
        #: The running task (pid, tgid, comm) as the guest OS describes it, for traces and eBPF
        #: helpers; None: the bundled firmware's ``current_task`` convention (see task.py).
        self.task_source: Callable[[Machine], Any] | None = getattr(image, "task_source", None)
        self._load_image()
        self._map_sim_pool()
        self.traps = arch.traps(self)
        self.devices = list(board.devices() if board is not None else arch.devices())
        for device in self.devices:
            device.attach(self)
        self._memory_snapshots = False
        self._engine_clock = hasattr(type(self.engine), "vtime")
        #: ``engine.vtime += n`` in one call where the engine offers it (a probe hit's account)
        self._advance_vtime: Callable[[int], None] | None = getattr(self.engine, "advance_vtime", None)
        self._held = False  # an interrupt is pending but the CPU masks it
        self._held_by_step = False  # ... or only a probe's step masks it (it ends the slice at the step's end)
        self._guest_held = False  # the guest refused (or kept) one at the last look: see _deliver_interrupts
        self._look = False  # the next slice start is a look point (after an unmask point ran, a wake from idle)
        #: A boosted probe slot entered and its jump back not yet accounted: (copy, jump, resume).
        self._boost: tuple[int, int, int] | None = None
        self._carry = 0  # hidden instructions the next slice owes (a boost's jump back)
        # Breaks handled inside the trap hook, except where probed instructions are stepped in
        # place (that runs the engine again, which a hook cannot): there only hits the registry
        # finishes without the engine (a simulated or register-only instruction).
        self._inline_breaks = not self.steps_in_place
        self._refused = False  # the last delivery found an interrupt the CPU masks
        self.entries = 0  # traps and interrupts the guest entered (each spends budget, not time)
        self._storm = 0  # entries since an instruction last retired
        self._run_exactly = 0  # the next slice runs this many instructions (an unmask point)
        self._pause = False  # pause() was called: run() ends after the current instruction
        self._goal: int | None = None  # run_to's address
        self._stopped_at_goal = False
        for addr, count in self.traps.unmask_sites().items():
            self.engine.hook_add(UC_HOOK_CODE, self._unmask_point, count, addr, addr)
        self.pc = image.entry
        self._translate = getattr(self.traps, "translate", None)  # virtual -> physical, if paging
        #: ``ram_u64(addr)``: the u64 at ``addr`` in RAM the engine holds, or None (read_u64)
        self._ram_u64: Callable[[int], int | None] | None = getattr(self.engine, "ram_u64", None)
        self._ram_u64_at: Callable[[int], int | None] | None = getattr(self.engine, "ram_u64_at", None)  # read_u64_at
        self._flat: Callable[[], bool] | None = getattr(self.traps, "untranslated", None)  # paging off now?
        #: forget_code with paging off is one ``ctl_remove_cache`` (a Unicorn engine, fetches unguarded)
        self._flat_forget = isinstance(self.engine, Uc) and not hasattr(self.traps, "physical_fetch")
        self._trap_flat = self._flat_forget and self._flat is not None  # write()/exchange() in a trap
        self._host_guard = getattr(self.traps, "host_translation", None)  # see _host_translation
        self._before_slice: Callable[[], None] | None = getattr(self.traps, "before_slice", None)
        if board is not None:
            board.boot(self)

    @classmethod
    def load(
        cls,
        path: str | Path,
        arch: str | None = None,
        console: Callable[[bytes], None] | None = None,
        step_variant: str | None = None,
        **image_args: Any,
    ) -> Machine:
        """Load an image (ELF: arch inferred and checked; raw: ``arch`` needed, and like the command
        line ``base`` defaults to the board's and ``symbols`` to a ``System.map`` beside it)."""
        image = load_image(path, arch=arch, **image_args)
        return cls(get_arch(image.arch or ""), image, console=console, step_variant=step_variant)

    # -- memory --------------------------------------------------------------------------------
    def _load_image(self) -> None:
        base, size = self.ram
        map_ram = getattr(self.engine, "map_ram", None)
        if map_ram is not None:
            self._ram_view = map_ram(base, size)
        else:
            self.engine.mem_map(base, size, UC_PROT_ALL)
        for seg in self.image.segments:
            if not (base <= seg.addr and seg.addr + seg.memsz <= base + size):
                raise ImageError(
                    f"{self.image.path}: segment {seg.addr:#x}-{seg.addr + seg.memsz:#x} is outside "
                    f"{self.arch.name} RAM {base:#x}-{base + size:#x}"
                )
            self.engine.mem_write(seg.addr, seg.data[: seg.memsz])
        if not base <= self.image.entry < base + size:
            raise ImageError(f"{self.image.path}: entry {self.image.entry:#x} is outside RAM")

    def _map_sim_pool(self) -> None:
        """Map every simulator-owned page now: after a memory snapshot the engine can neither map
        nor re-protect pages, so the pool's permissions are fixed from the start.

        The guest may only execute these pages (slots: fetch only; the trap trampolines' data is
        read by the trampoline's own instruction). An engine whose host writes ignore page
        protection even under snapshots (the P-code engine) maps each part with those
        permissions. On Unicorn the pool is one region (its memory snapshots mishandle several
        adjacent ones): execute-only and written by the host straight into its backing memory
        (``map_host_backed``), so a guest load or store there is an access fault through the
        engine's own protection check. Only where the simulator's guest code uses the pool as
        data (an arch's ``sim_data``; none now) is it read/write/execute, with read and write hooks turning the
        guest's other accesses into faults; such hooks, whatever their range, put every load
        and store of the guest on the engine's slow path.
        """
        addr = self.sim_phys
        shift = self.sim_base - addr
        self._sim_pools: dict[int, list[int]] = {}
        self.sim_data_readers: list[tuple[int, int]] = []  # PCs whose loads may read the pool
        self._sim_undo: list[tuple[int, bytes]] = []  # pool bytes a refused guest store overwrote
        protected = getattr(self.engine, "host_writes_ignore_protection", False)
        if not protected and not self.arch.sim_data and hasattr(self.engine, "map_host_backed"):
            self.engine.map_host_backed(addr, sum(SIM_POOL.values()), UC_PROT_EXEC)
        elif not protected:
            self.engine.mem_map(addr, sum(SIM_POOL.values()), UC_PROT_ALL)
            # the hooks see the guest's (virtual) addresses: the pages where the guest sees them
            start, end = self.sim_base, self.sim_base + sum(SIM_POOL.values()) - 1
            self.engine.hook_add(UC_HOOK_MEM_WRITE, self._sim_write, None, start, end)
            self.engine.hook_add(UC_HOOK_MEM_READ, self._sim_read, None, start, end)
        for perms, size in SIM_POOL.items():
            self._sim_pools[perms] = [addr + shift, addr + shift + size]
            if protected:
                self.engine.mem_map(addr, size, UC_PROT_EXEC)
            addr += size
        #: Pages processes' page tables point at for uprobes, on boards that map XOL pages into
        #: processes (``user_xol``): a region of its own, read+execute (see probes/userpages.py).
        self.user_pages: UserPages | None = None
        if getattr(self.board, "user_xol", None):
            base = self.sim_phys + USER_POOL_GAP
            if hasattr(self.engine, "map_host_backed"):
                self.engine.map_host_backed(base, USER_POOL_PAGES * PAGE, UC_PROT_READ | UC_PROT_EXEC)
            else:
                self.engine.mem_map(base, USER_POOL_PAGES * PAGE, UC_PROT_READ | UC_PROT_EXEC)
            self.user_pages = UserPages(self, base, USER_POOL_PAGES)

    def _sim_write(self, uc: object, access: int, addr: int, size: int, value: int, ud: object) -> None:
        """The guest stored into a simulator page: a store fault; the bytes are put back afterwards."""
        self._sim_undo.append((addr, self.read(addr, size)))
        self.on_mem_fault("store", addr, self.pc)
        self.engine.emu_stop()

    def _sim_read(self, uc: object, access: int, addr: int, size: int, value: int, ud: object) -> None:
        """The guest loaded from a simulator page: a load fault, unless the simulator's own
        trampoline is reading its data (x86's far pointer and shadow GDT)."""
        pc = self.pc
        if any(lo <= pc < hi for lo, hi in self.sim_data_readers):
            return
        self.on_mem_fault("load", addr, pc)
        self.engine.emu_stop()

    @property
    def sim_end(self) -> int:
        """The end of the simulator-owned pages (they start at :attr:`sim_base`)."""
        return self._sim_end

    def sim_alloc(self, size: int, perms: int = UC_PROT_ALL) -> int:
        """Simulator-owned pages outside RAM (kprobe slots: read+execute, never guest-writable)."""
        size = (size + PAGE - 1) & ~(PAGE - 1)
        pool = self._sim_pools[perms]
        if pool[0] + size > pool[1]:
            raise SimError(f"out of simulator pages ({SIM_POOL[perms] // PAGE} with permissions {perms})")
        pool[0] += size
        return pool[0] - size

    def sim_phys_alloc(self) -> int:
        """One zeroed simulator page for the guest's page tables to point at (a uprobe XOL page,
        a page table of the simulator's): its physical address."""
        page = self.sim_alloc(PAGE, SLOT_PERMS) - self.sim_base + self.sim_phys
        self.write_phys(page, bytes(PAGE))  # a page handed out after a restore keeps its old bytes
        return page

    def _pieces(self, addr: int, size: int, error: int) -> list[tuple[int, int]]:
        """(physical address, length) pieces behind ``addr .. addr+size`` in the guest's current
        address space (the page tables, when the arch has them and they are on)."""
        if self._translate is None:
            return [(addr, size)]
        if self.in_sim_pages(addr):  # simulator pages are reached by their physical address
            return [(addr - self.sim_base + self.sim_phys, size)]
        pieces = []
        while size > 0:
            n = min(size, PAGE - (addr & (PAGE - 1)))
            phys = self._translate(addr)
            if phys is None:
                raise UcError(error)
            pieces.append((phys, n))
            addr, size = addr + n, size - n
        return pieces

    def read_u64(self, addr: int) -> int:
        """The little-endian u64 at ``addr``, as ``read(addr, 8)`` gives it: straight from the
        host's RAM buffer when the address is RAM and not translated (the eBPF pid helpers):
        no paging, or (x86_64) a trap while paging is off; an engine without a RAM view
        (the P-code engine) reads its own RAM region (``ram_u64``)."""
        ram = self._ram_view
        if ram is not None:
            if self._ram_lo <= addr and addr + 8 <= self._ram_hi:
                if self._translate is None:
                    return _U64_AT(ram, addr - self._ram_lo)[0]
                cache = self._pages  # in a trap: paging off (noted at its first access)?
                if cache is not None and (_FLAT in cache or (not cache and self._flat_ram(addr, 8))):
                    return _U64_AT(ram, addr - self._ram_lo)[0]
        elif self._translate is None and self._ram_u64 is not None:
            value = self._ram_u64(addr)
            if value is not None:
                return value
        return int.from_bytes(self.read(addr, 8), "little")

    def read_u64_at(self, addr: int) -> int:
        """``read_u64(read_u64(addr))``, 0 when the pointer read is 0 (a firmware task's ids
        through ``current_task``: the eBPF pid helper on every hit), with both reads in one call
        when they are plain RAM reads (the cases of :meth:`read_u64`)."""
        ram = self._ram_view
        if ram is not None:
            lo, hi = self._ram_lo, self._ram_hi
            if lo <= addr and addr + 8 <= hi:
                cache = self._pages
                if self._translate is None or (
                    cache is not None and (_FLAT in cache or (not cache and self._flat_ram(addr, 8)))
                ):  # fmt: skip
                    ptr = _U64_AT(ram, addr - lo)[0]
                    if not ptr:
                        return 0
                    if lo <= ptr and ptr + 8 <= hi:
                        return _U64_AT(ram, ptr - lo)[0]
                    return self.read_u64(ptr)
        elif self._translate is None and self._ram_u64_at is not None:
            value = self._ram_u64_at(addr)
            if value is not None:
                return value
        ptr = self.read_u64(addr)
        return self.read_u64(ptr) if ptr else 0

    def read(self, addr: int, size: int) -> bytes:
        """Guest memory at ``addr``: through the page tables when the arch translates them itself
        (x86_64 paging), else physical, or virtual through the hart's tables (riscv64 virt)."""
        if self._translate is not None:
            if self._flat_ram(addr, size):
                addr -= self._ram_lo
                return self._ram_view[addr : addr + size]  # type: ignore[index]
            cache = self._pages
            ram = self._ram_view
            if (
                cache is None and ram is not None and 0 < size and self._ram_lo <= addr
                and addr + size <= self._ram_hi and self._flat is not None and self._flat()
            ):  # fmt: skip
                addr -= self._ram_lo  # outside a trap with paging off (placing probes): physical
                return ram[addr : addr + size]
            within = (addr & (PAGE - 1)) + size <= PAGE
            if cache is not None and within and not self.sim_base <= addr < self._sim_end:
                return self.read_phys(self._trap_phys(cache, addr, UC_ERR_READ_UNMAPPED), size)
            return b"".join(self.read_phys(p, n) for p, n in self._pieces(addr, size, UC_ERR_READ_UNMAPPED))
        ram = self._ram_view
        if ram is not None and 0 < size and self._ram_lo <= addr and addr + size <= self._ram_hi:
            addr -= self._ram_lo
            return ram[addr : addr + size]  # physical = the guest's address, as below
        try:
            return bytes(self.engine.mem_read(addr, size))
        except UcError:
            physical = getattr(self.traps, "physical", None)
            if physical is None:
                raise
            out = bytearray()
            while len(out) < size:  # page by page: neighbouring virtual pages need not be
                chunk = min(size - len(out), 0x1000 - ((addr + len(out)) & 0xFFF))
                try:
                    out += self.read_phys(physical(addr + len(out)), chunk)
                except Exception:
                    raise UcError(UC_ERR_READ_UNMAPPED) from None
            return bytes(out)

    def _flat_ram(self, addr: int, size: int) -> bool:
        """Inside a trap, while the guest does not translate addresses (x86 with paging off):
        is ``addr .. addr+size`` RAM, reachable in its host buffer? (The simulator's pages are
        never in RAM.) Asks the arch about paging at the trap's first access only."""
        cache = self._pages
        if cache is None or self._ram_view is None or self._flat is None:
            return False
        if not cache:
            cache[_FLAT if self._flat() else _PAGED] = 1
        return _FLAT in cache and 0 < size and self._ram_lo <= addr and addr + size <= self._ram_hi

    def _trap_phys(self, cache: dict[int, int], addr: int, error: int) -> int:
        """The physical address behind virtual ``addr`` inside a trap: itself while paging is
        off (noted this trap), else through the trap's page notes (:meth:`_page_in_trap`)."""
        if _FLAT in cache:
            return addr
        page = addr & ~(PAGE - 1)
        phys = cache.get(page)
        if phys is None:
            phys = self._page_in_trap(cache, page, error)
        return phys | (addr & (PAGE - 1))

    def _page_in_trap(self, cache: dict[int, int], page: int, error: int) -> int:
        """The physical page behind virtual ``page``, noted for the rest of the trap (see
        :meth:`on_break`). While the guest does not translate at all (x86 with paging off),
        every page is its own and no store can change that: noted once, kept over stores."""
        if not cache and self._flat is not None and self._flat():
            cache[_FLAT] = 1
        if _FLAT in cache:
            return page
        phys = self._translate(page)  # type: ignore[misc]
        if phys is None:
            raise UcError(error)
        cache[page] = phys
        return phys

    def read_phys(self, addr: int, size: int) -> bytes:
        """Memory at physical ``addr`` (RAM straight from its host buffer, else the engine's)."""
        ram = self._ram_view
        if ram is not None and 0 < size and self._ram_lo <= addr and addr + size <= self._ram_hi:
            addr -= self._ram_lo
            return ram[addr : addr + size]
        return bytes(self.engine.mem_read(addr, size))

    def _store_phys(self, addr: int, data: bytes) -> None:
        """Store at physical ``addr`` (RAM straight into its host buffer, else through the
        engine); the caller drops stale translations (:meth:`forget_code`)."""
        ram = self._ram_view
        size = len(data)
        if ram is not None and 0 < size and self._ram_lo <= addr and addr + size <= self._ram_hi:
            addr -= self._ram_lo
            ram[addr : addr + size] = data
            return
        self.engine.mem_write(addr, data)

    def write(self, addr: int, data: bytes) -> None:
        """Store at virtual address ``addr``: into the physical pages behind it (as text_poke does
        for read-only kernel text)."""
        ram = self._ram_view
        if self._pages is not None and ram is not None and self._trap_flat and self._flat():  # type: ignore[misc]
            # Inside a trap with paging off (an x86 kretprobe putting a return address back):
            # one RAM store and one drop of translations.
            at = addr - self._ram_lo
            end = at + len(data)
            if 0 <= at < end <= self._ram_size:
                ram[at:end] = data
                self.engine.ctl_remove_cache(addr, addr + end - at)
                return
        if self._translate is None:
            try:
                self._store_phys(addr, data)  # physical = the guest's address
                self.forget_code(addr, len(data))
            except UcError:
                physical = getattr(self.traps, "physical", None)  # a virtual address (riscv64 virt)
                if physical is None:
                    raise
                done = 0
                while done < len(data):  # page by page, as read() does
                    chunk = min(len(data) - done, 0x1000 - ((addr + done) & 0xFFF))
                    try:
                        phys = physical(addr + done)
                    except Exception:
                        raise UcError(UC_ERR_WRITE_UNMAPPED) from None
                    self.write_phys(phys, data[done : done + chunk])
                    done += chunk
            return
        if self._flat_ram(addr, len(data)):  # (the P-code engine's case of the path above)
            at = addr - self._ram_lo
            self._ram_view[at : at + len(data)] = data  # type: ignore[index]
            self.forget_code(addr, len(data))
            return
        cache = self._pages
        within = (addr & (PAGE - 1)) + len(data) <= PAGE
        if cache is not None and within and not self.sim_base <= addr < self._sim_end:
            phys = self._trap_phys(cache, addr, UC_ERR_WRITE_UNMAPPED)
            self._store_phys(phys, data)
            if _FLAT in cache and self._flat_forget:  # paging off, noted this trap: what forget_code does
                if self._memory_snapshots:
                    self.flush_tlb()
                self.engine.ctl_remove_cache(phys, phys + len(data))
                return
            cache.clear()  # the write may change a page table
            self._host_wrote()
            self.forget_code(phys, len(data))
            return
        elif cache:
            cache.clear()
        off = 0
        for phys, n in self._pieces(addr, len(data), UC_ERR_WRITE_UNMAPPED):
            self._store_phys(phys, data[off : off + n])
            self.forget_code(phys, n)
            off += n
        self._host_wrote()

    def exchange(self, addr: int, data: bytes) -> bytes:
        """Store ``data`` at virtual ``addr`` and return the bytes it replaced, as :meth:`read`
        then :meth:`write` would (a kretprobe swapping a return address on the stack): inside
        a trap while the guest does not translate, one RAM access and one check for code."""
        ram = self._ram_view
        if self._pages is not None and ram is not None and self._trap_flat and self._flat():  # type: ignore[misc]
            at = addr - self._ram_lo  # as in write(): every x86 kretprobe hit's swap
            end = at + len(data)
            if 0 <= at < end <= self._ram_size:
                old = ram[at:end]
                ram[at:end] = data
                self.engine.ctl_remove_cache(addr, addr + end - at)
                return old
        old = self.read(addr, len(data))
        self.write(addr, data)
        return old

    def write_phys(self, addr: int, data: bytes) -> None:
        """Store at physical address ``addr`` (a guest page-table entry, a device's DMA)."""
        self._store_phys(addr, data)
        self._host_wrote()
        self.forget_code(addr, len(data))

    def forget_code(self, phys: int, size: int) -> None:
        """Drop the engine's translations of code in physical ``[phys, phys + size)`` after a host
        store there. Unicorn 2.1.4's ``uc_mem_write`` keeps them (its ``invalidate_and_set_dirty``
        is empty), so the guest would go on running the old instructions: on virt, xv6 ran
        another process's code when virtio read a program into pages that had held one. Unicorn
        finds what to drop by translating the address as a fetch would, so the arch makes
        fetches physical meanwhile (riscv64: M-mode); where it cannot (x86-64 with paging on,
        where only the guest's page tables are stored this way), nothing is dropped."""
        if not isinstance(self.engine, Uc):
            return  # the P-code engine drops them on every store itself
        physical_fetch = getattr(self.traps, "physical_fetch", None)
        if physical_fetch is not None:
            with physical_fetch():
                self.engine.ctl_remove_cache(phys, phys + size)
            return
        untranslated = getattr(self.traps, "untranslated", None)
        if untranslated is None:
            with self._host_translation():
                self.engine.ctl_remove_cache(phys, phys + size)
        elif untranslated():  # paging off: the fetch is the identity and cannot fault, no guard
            self.engine.ctl_remove_cache(phys, phys + size)

    def _host_wrote(self) -> None:
        """After a host store under memory snapshots, drop the CPU's TLB: the store may copy
        the page (copy-on-write), and Unicorn 2.1.4's ``memory_cow`` then flushes the TLB
        entries of the page's *physical* address only, so a guest that pages could keep
        reaching the old copy through its virtual one."""
        if self._memory_snapshots:
            self.flush_tlb()

    def flush_tlb(self) -> None:
        """Drop the CPU's cached translations (after the host changed the guest's page tables)."""
        self.engine.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    def patch_code(self, addr: int, data: bytes) -> None:
        """Write instructions and drop stale translations (the simulator's fence.i).

        A virtual address the engine does not back physically is written in the physical page
        behind it (Linux's ``text_poke``: even a read-only kernel mapping gets the break)."""
        flat = self._flat
        if flat is not None and self._flat_forget and not self._memory_snapshots and flat():
            # Paging off (x86 before its kernel pages, the bundled firmware): every address is
            # its physical one, so one store and one drop of translations do (what the
            # general path below does twice over, through the page tables).
            if self.sim_base == self.sim_phys or not self.sim_base <= addr < self._sim_end:
                size, ram = len(data), self._ram_view
                if ram is not None and self._ram_lo <= addr and addr + size <= self._ram_hi:
                    at = addr - self._ram_lo
                    ram[at : at + size] = data
                else:
                    self.engine.mem_write(addr, data)
                self.engine.ctl_remove_cache(addr, addr + size)
                return
        if self._translate is not None and self.sim_base != self.sim_phys and self.in_sim_pages(addr):
            self.patch_physical(addr - self.sim_base + self.sim_phys, addr, data)
            return
        if self._translate is not None:
            self.write(addr, data)
        else:
            ram, at = self._ram_view, addr - self._ram_lo
            if ram is not None and 0 <= at and at + len(data) <= self._ram_size:
                ram[at : at + len(data)] = data  # RAM's host buffer: what mem_write stores into
            else:
                try:
                    self.engine.mem_write(addr, data)
                except UcError:
                    physical = getattr(self.traps, "physical", None)
                    if physical is None:
                        raise
                    self.patch_physical(physical(addr), addr, data)
                    return
        if self._host_guard is None:
            self.engine.ctl_remove_cache(addr, addr + len(data))
        else:
            with self._host_guard():
                self.engine.ctl_remove_cache(addr, addr + len(data))

    def patch_physical(self, phys: int, vaddr: int, data: bytes) -> None:
        """Write instructions at a physical address seen by the guest at ``vaddr``."""
        self.engine.mem_write(phys, data)
        self._host_wrote()
        with self._host_translation():
            self.engine.ctl_remove_cache(vaddr, vaddr + len(data))
            if phys != vaddr:
                self.engine.ctl_remove_cache(phys, phys + len(data))

    def _host_translation(self) -> contextlib.AbstractContextManager:
        """Around the engine translating addresses for the host (dropping stale translations):
        the arch's guard against that leaving fault state behind, if it needs one."""
        guard = getattr(self.traps, "host_translation", None)
        return guard() if guard is not None else contextlib.nullcontext()

    def in_sim_pages(self, addr: int) -> bool:
        return self.sim_base <= addr < self.sim_end

    def map_sim_pages(self) -> bool:
        """Make the simulator's pages reachable from the guest's current address space, when the
        board maps them into it (before the guest is sent into a probe slot or trampoline).
        False: they cannot be, and the run ends with a fault saying why."""
        mapper = getattr(self.board, "map_sim_window", None)
        return mapper is None or mapper(self)

    @property
    def steps_in_place(self) -> bool:
        """Probed instructions run where they are (the guest's page tables may not map slots)."""
        return self.board is not None and hasattr(self.traps, "step_in_place")

    # -- registers -----------------------------------------------------------------------------
    @property
    def pc(self) -> int:
        return self.engine.reg_read(self.arch.pc_reg)

    @pc.setter
    def pc(self, value: int) -> None:
        self.engine.reg_write(self.arch.pc_reg, value)

    def register_dump(self) -> str:
        """All interesting registers, four to a line."""
        with self.traps.host_access():
            cells = [f"{name:>7}={self.engine.reg_read(rid):016x}" for name, rid in self.arch.dump_regs]
        return "\n".join("  ".join(cells[i : i + 4]) for i in range(0, len(cells), 4))

    # -- devices -------------------------------------------------------------------------------
    def console_write(self, data: bytes) -> None:
        self.console_bytes += data
        if self._console_sink is not None:
            self._console_sink(data)
        for listener in self.console_listeners:
            listener()
        if b"\n" in data and self.panic_watch.feed(self.console_bytes, self.now()):
            self.cut_slice()

    def _panicked(self) -> bool:
        """xv6's ``panicked`` flag is set (read where the kernel sees it; unreadable: not set)."""
        try:
            return any(self.read(self.image.symbol("panicked").addr, 4))
        except SimError:
            return False

    @property
    def console(self) -> str:
        """The guest's console transcript so far."""
        return self.console_bytes.decode("utf-8", "replace")

    def guest_exit(self, status: int) -> None:
        """The exit device was written: end the run with ``status``."""
        if self.exit_status is None:
            self.exit_status = status
        self.cut_slice()

    def cut_slice(self) -> None:
        """End the current slice from a device callback, once the accessing instruction is done.

        The instruction completes (each of its device accesses happens once: ``emu_stop`` would
        leave an MMIO access unretired, to be replayed with its side effects on resume) and the
        engine stops before the next one. Inside a kprobe slot the step thus completes as it
        would unprobed; what the device changed (a timer deadline, an interrupt, the exit) is
        acted on between slices, where the step's masked interrupts hold it back until the step
        break has run.
        """
        if self._slice_end and not self._cut:
            self._cut = self._look = True  # what the device changed is looked at right after
            self.engine.stop_after_insn()

    def pause(self) -> None:
        """From a handler or device callback: end ``run()`` once the running instruction is done
        (it raises BudgetExhausted saying it paused; calling ``run()`` again goes on from there,
        e.g. after a snapshot at a moment the console shows)."""
        self._pause = True
        self.cut_slice()

    def add_timer(self, timer: Timer) -> None:
        self._timers.append(timer)

    def timer_changed(self) -> None:
        """A timer was reprogrammed mid-slice: end the slice if it now fires sooner.

        Nothing changes when an interrupt was already pending (and held) at the start of the
        slice and a deadline in the past keeps one pending: the unmask points watch for it.
        """
        deadline = min(t.deadline() for t in self._timers)
        if deadline < self._slice_end and not (self._held and deadline <= self.now()):
            self.cut_slice()

    def add_port(self, base: int, count: int, read: Callable, write: Callable) -> None:
        """Claim I/O ports ``base .. base+count-1`` (engines with port I/O only)."""
        for port in range(base, base + count):
            self._ports[port] = (read, write, base)
        if not self._port_hooks:
            self.traps.install_port_hooks(self._port_in, self._port_out)
            self._port_hooks = True

    def _port_in(self, port: int, size: int) -> int:
        read, _, base = self._ports.get(port, (None, None, 0))
        return read(port - base, size) if read else 0xFFFFFFFF & ((1 << (8 * size)) - 1)

    def _port_out(self, port: int, size: int, value: int) -> None:
        entry = self._ports.get(port)
        if entry:
            entry[1](port - entry[2], size, value)

    # -- time ----------------------------------------------------------------------------------
    def now(self) -> int:
        """Virtual time: guest instructions retired (exact, also inside a slice)."""
        if self._engine_clock:
            return self.engine.vtime
        if self._slice_end:
            done = self.engine.icount() - 1 - self.hidden
            boost = self._boost
            if boost is not None and boost[0] <= self.pc < boost[1]:
                done += 1  # inside a boosted copy: its jump back, already hidden, has not run
            return self._slice_start + max(0, done)
        return self._time

    # -- boosted probe slots (the step ends with a jump back, not a trap) ---------------------
    def boost_entered(self, copy: int, jump: int, resume: int) -> None:
        """A probe hit goes on in a boosted slot: the engine will count its jump back, which is
        not a guest instruction. It is hidden now and put right where the slice ends before it."""
        self._boost = (copy, jump, resume)
        if self._slice_end:
            self.hidden += 1
        else:
            self._carry += 1

    @property
    def boost_copy(self) -> int | None:
        """The copy address of the boosted slot still open, if any."""
        return self._boost[0] if self._boost is not None else None

    def boost_abandoned(self) -> None:
        """The boosted copy faulted: its jump back never runs."""
        if self._boost is not None:
            self._boost = None
            if self._slice_end:
                self.hidden -= 1
            else:
                self._carry -= 1

    def _settle_boost(self, faulted: bool) -> None:
        """The slice ended with a boost open: if it stopped at the jump back, take the jump here
        (no instruction); if before the copy ran, the jump is owed to the next slice."""
        copy, jump, resume = self._boost  # type: ignore[misc]
        pc = self.pc
        if pc == jump:
            self.hidden -= 1
            self.pc = resume
            self._boost = None
        elif copy <= pc < jump:
            self.hidden -= 1
            if faulted:
                self._boost = None
            else:
                self._carry += 1  # the boost stays open: the next slice runs the copy and jump
        else:
            self._boost = None  # the jump ran

    def _next_deadline(self) -> int:
        """The earliest timer deadline still ahead (a passed one is pending, not a bound)."""
        now = self._time
        return min((d for t in self._timers if (d := t.deadline()) > now), default=NEVER)

    # -- events from the arch's trap hooks -------------------------------------------------------
    def on_break(self, pc: int, inline: bool = True, fetched: bool = True) -> bool:
        """A break instruction trapped at ``pc`` (called from the engine's trap hook).

        A break handler that claims it (a probe hit, a step's end, the kretprobe trampoline)
        runs at once, inside the slice: it sets the PC and the engine goes on, with no
        ``emu_start`` restart (True is returned; the break itself is not a guest instruction).
        Any other break, or every break when ``inline`` is False (the engine cannot go on
        after this trap), is handled after the slice ends (False). ``fetched`` False: the
        engine reached ``pc`` with a fetch fault, so it counted no instruction there.
        """
        if (
            inline
            and (self._inline_breaks or (self._registry is not None and self._registry.hit_needs_no_engine(pc)))
            and self.event is None
            and self._slice_end
            and not self._pending_fault
        ):
            # The guest does not run while the handlers do: its translations hold meanwhile.
            self._pages = {}
            try:
                for handler in self.break_handlers:
                    if handler(self, pc):
                        self.hidden += 1
                        return True
            finally:
                self._pages = None
        self.event = Break(pc, fetched)
        self.engine.emu_stop()
        return False

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the slice (for traps a hook cannot resume from)."""
        if self.event is None:
            self.event = Deferred(action)
        self.engine.emu_stop()

    def claims_fetch_fault(self, addr: int) -> bool:
        """Is a fetch fault at ``addr`` the simulator's (see :attr:`fetch_fault_claims`)?"""
        return any(claim(addr) for claim in self.fetch_fault_claims)

    def exception_pc(self, pc: int) -> int:
        """The PC a synchronous exception reports (a fault in a probe's slot is the probe's)."""
        for fixup in self.exception_fixups:
            pc = fixup(pc)
        return pc

    def on_mem_fault(self, access: str, addr: int, pc: int) -> None:
        if self.event is None:
            self.event = MemFault(access, addr, pc)

    def entered(self) -> None:
        """The arch's trap layer entered the guest's vector (an exception or an interrupt)."""
        self.entries += 1

    # -- the run loop --------------------------------------------------------------------------
    @property
    def instructions(self) -> int:
        """Guest instructions retired so far (virtual time)."""
        return self._time

    def run(self, max_insns: int | None = None, timeout: float | None = None) -> int:
        """Run until the guest exits; returns its exit status.

        Raises BudgetExhausted when ``max_insns`` guest instructions or ``timeout`` seconds
        pass first, GuestFault when the guest cannot continue; UsageError for a budget or time
        limit that is not a positive finite number, or when called from inside a handler.
        """
        if self._running:
            raise UsageError("Machine.run called while the machine is already running (from inside a handler)")
        if max_insns is not None and (isinstance(max_insns, bool) or not isinstance(max_insns, int) or max_insns <= 0):
            raise UsageError(f"max_insns must be a positive number of instructions, not {max_insns!r}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf
        ):
            raise UsageError(f"timeout must be a positive, finite number of seconds, not {timeout!r}")
        self._running = True
        try:
            return self._run(max_insns, timeout)
        finally:
            self._running = False

    def _run(self, max_insns: int | None, timeout: float | None) -> int:
        start, entries = self._spent(), self._entries()
        limit = start + (max_insns if max_insns is not None else DEFAULT_BUDGET)
        wall = time.monotonic() + (timeout if timeout is not None else DEFAULT_TIMEOUT)
        self._storm = 0
        while self.exit_status is None:
            if self.panic_watch.due(self._time, exited=False):
                raise self.panic_watch.error(self.console_bytes, self._time)
            if self._pause:
                self._pause = False
                raise BudgetExhausted(f"paused after {self._time} instructions at {self.image.describe(self.pc)}")
            if self._stopped_at_goal and self._goal is not None:
                return 0
            if self._spent() >= limit:
                taken = self._entries() - entries
                also = f" and {taken} trap and interrupt entries" if taken else ""
                raise BudgetExhausted(
                    f"instruction budget exhausted after {self._time} instructions{also} "
                    f"at {self.image.describe(self.pc)}"
                )
            if time.monotonic() > wall:
                raise BudgetExhausted(f"time limit reached after {self._time} instructions")
            self._step_slice(limit)
        if self.panic_watch.due(self._time, exited=True):  # panic=-1: the restart that followed
            raise self.panic_watch.error(self.console_bytes, self._time)
        return self.exit_status

    def run_to(self, addr: int, max_insns: int | None = None, timeout: float | None = None) -> None:
        """Run until the guest is about to execute the instruction at (virtual) ``addr`` for the
        first time; it has not run. One code hook on that address only, removed afterwards:
        nothing else is slowed. Raises like :meth:`run`, and SimError when the guest exits first.
        """
        self._goal, self._stopped_at_goal = addr, False
        hook = self.engine.hook_add(UC_HOOK_CODE, self._at_goal, None, addr, addr)
        with self._host_translation():  # (an address the guest does not map faults, x86: CR2)
            self.engine.ctl_remove_cache(addr, addr + 1)
        try:
            self.run(max_insns, timeout)
        finally:
            self.engine.hook_del(hook)
            self._goal = None
        if not self._stopped_at_goal:
            raise SimError(f"the guest exited (status {self.exit_status}) before reaching {addr:#x}")

    def _at_goal(self, uc: object, addr: int, size: int, ud: object) -> None:
        if self._slice_end and not self._stopped_at_goal:
            self._stopped_at_goal = True
            self._cut = self._stopped_before = True
            self.engine.emu_stop()

    def _entries(self) -> int:
        """Trap and interrupt entries so far: the arch layer's and those an engine takes alone."""
        return self.entries + getattr(self.engine, "interrupts_taken", 0)

    def _spent(self) -> int:
        """Budget spent: instructions retired, and one for every trap or interrupt entry (a trap
        loop or an interrupt storm that retires little or nothing still ends on its budget)."""
        return self._time + self._entries()

    def _watch_storm(self, time_before: int, entries_before: int) -> None:
        """A run of slices that enter traps or interrupts and retire nothing is a trap storm."""
        if self._time > time_before:
            self._storm = 0
            return
        self._storm += self._entries() - entries_before
        if self._storm >= STORM:
            pc = self.pc
            raise GuestFault(
                f"trap storm: {self._storm} trap and interrupt entries in a row with no instruction "
                f"retired ({self.image.describe(pc)})",
                pc,
                self.register_dump(),
            )

    def _unmask_point(self, uc: object, addr: int, size: int, count: int) -> None:
        """About to run an instruction that may unmask interrupts while one is held: stop
        before it, run exactly it (``count`` instructions), then look at interrupts again."""
        if self._held and not self._run_exactly and not self._cut and self._slice_end - self._slice_start > count:
            self._run_exactly = count
            self._cut = self._stopped_before = True
            self.engine.emu_stop()

    def _step_slice(self, limit: int) -> None:
        now, entries = self._time, self._entries()
        self._run_slice(limit)
        if self.exit_status is None:
            self._watch_storm(now, entries)

    def _run_slice(self, limit: int) -> None:
        # Interrupts come between the guest's instructions, never inside a boosted slot.
        if self._boost is not None:
            held = self._until_look() if self._guest_held else SLICE
        else:
            held = self._deliver_interrupts()
        self._held = held < SLICE
        now = self._time
        deadline = self._next_deadline()
        n = min(SLICE, limit - self._spent(), max(1, deadline - now), held)
        if n <= 0:  # the interrupts just taken spent the rest of the budget
            return
        exact = bool(self._run_exactly)
        if exact:
            n, self._run_exactly = min(n, self._run_exactly), 0
        self._slice_start, self._slice_end = now, now + n
        self.hidden, self._carry = self._carry, 0
        self.event = None
        self._cut = self._stopped_before = False
        error: UcError | None = None
        if self._before_slice is not None:
            self._before_slice()
        try:
            self.engine.emu_start(self.pc, self.arch.until, 0, n)
        except UcError as e:
            error = e
        event = self.event
        if exact or self._time >= deadline:  # an unmask point ran, a timer's deadline came: look
            self._look = True
        if self._boost is not None:
            self._settle_boost(isinstance(event, MemFault))
        retired = self.engine.icount() - self.hidden
        trapped = isinstance(event, MemFault | Deferred) or (error is not None and event is None)
        trapped = trapped or (isinstance(event, Break) and event.fetched)
        if trapped or self._stopped_before:
            retired -= 1  # the trapping (or hook-stopped) instruction did not retire
        # An engine with its own clock knows best (it retires, traps and idles exactly).
        self._time = self.engine.vtime if self._engine_clock else now + max(0, retired)
        self._slice_end = 0
        while self._sim_undo:  # a refused guest store into the simulator's pages: undo it
            where, old = self._sim_undo.pop()
            self.patch_code(where, old)
        if self._pending_fault is not None:
            fault, self._pending_fault = self._pending_fault, None
            raise fault
        if self.exit_status is not None:
            return
        if isinstance(event, Break):
            self._handle_break(event.pc)
        elif isinstance(event, Deferred):
            event.action()
        elif isinstance(event, MemFault):
            self.traps.memory_fault(event.access, event.addr, event.pc)
        elif error is not None:
            self._engine_error(error)
        elif self.engine.icount() < n and not self._cut and self.traps.halted():  # stopped early, not by the count
            self._idle()

    def _handle_break(self, pc: int) -> None:
        for handler in self.break_handlers:
            if handler(self, pc):
                return
        self.traps.breakpoint(pc)

    def _engine_error(self, error: UcError) -> None:
        pc = self.pc
        kind = _MEM_ERRORS.get(error.errno)
        if kind is not None:
            self.traps.memory_fault(kind[0], pc if kind[0] == "fetch" else 0, pc)
            return
        raise GuestFault(f"{error} ({self.image.describe(pc)})", pc, self.register_dump())

    def _idle(self) -> None:
        """The guest waits for an interrupt: jump virtual time to the next timer deadline."""
        stopped = getattr(self.board, "stopped_for_good", None)
        if stopped is not None and stopped(self):  # nothing can wake the CPU: the board is off
            self.exit_status = 0
            return
        self._look = True  # a halted CPU wakes for the interrupt: look now, held or not
        if any(timer.pending(self._time) is not None for timer in self._timers):
            return  # one is pending already (a device raised it): the next slice delivers it
        deadline = self._next_deadline()
        if deadline >= NEVER:
            raise GuestFault("guest halted with no timer armed", self.pc, self.register_dump())
        self._time = max(self._time, deadline)
        self._deliver_interrupts()
        if self._refused:  # a level-triggered line still high after delivery is not a refusal
            raise GuestFault("guest halted with interrupts masked", self.pc, self.register_dump())

    def _deliver_interrupts(self) -> int:
        """Deliver pending timer interrupts the guest accepts.

        Returns how soon to look again for one still held back (SLICE when none is). An
        interrupt becomes pending where both a probed and an unprobed run end a slice (a timer
        deadline, a device's cut), so one the guest accepts is taken there in both. One the
        guest refuses there is held, and looked at again only at *look points*, which every
        run has at the same instruction: right after an unmask point ran (the exact instruction
        that may let it in), at a timer deadline or a device's cut, when the CPU halts, and at
        every multiple of POLL in virtual time (for code the unmask scan did not see: a kernel
        relocated by its own page tables, code patched at run time). Never at another slice
        start: probes end slices where an unprobed run does not (a break, a step's end), and a
        probe must not move an interrupt.
        """
        held = SLICE
        self._refused = False  # did the CPU mask one?
        if self._registry is not None and self._registry.steps:
            # A probe's out-of-line step is in flight: interrupts wait until it ends (Linux
            # masks them for the step; the registry's step end stops the slice to let them in).
            self._held_by_step = any(t.pending(self._time) is not None for t in self._timers)
            if self._guest_held:
                return self._until_look()
            return POLL if self._held_by_step else SLICE
        self._held_by_step = False
        if self._guest_held and not (self._look or self._time % POLL == 0):
            return self._until_look()
        self._look = self._guest_held = False
        for timer in self._timers:
            irq = timer.pending(self._time)
            if irq is None:
                continue
            if self.traps.interrupt(irq) is True:
                timer.delivered(self._time)
                count, digest = self.interrupt_trace
                self.interrupt_trace = (count + 1, hash((digest, self._time, irq)))
                if timer.pending(self._time) is None or self._lines:  # lines: the hart takes it when it may
                    continue
            else:
                self._refused = True
            held = min(held, POLL)  # masked, or (level-triggered) still pending in its handler
        if held < SLICE:
            self._guest_held = True
            return self._until_look()
        return held

    def _until_look(self) -> int:
        """Instructions to the next multiple of POLL in virtual time (a look point)."""
        return POLL - self._time % POLL

    def interrupts_unmasked(self) -> None:
        """A hook gave the guest back its interrupts (a probe step ended): when one waited for
        the step, end the slice so it is delivered right here, as between slices. One the guest
        held back itself keeps waiting for the moment the unprobed run looks again (where no
        unmask point catches the exact instruction that lets it in, as under a relocated kernel,
        that is the slice's end): a probe must not move an interrupt."""
        if self._slice_end and self._held and self._held_by_step:
            self.engine.emu_stop()

    def account(self, instructions: int) -> None:
        """Count guest instructions the host performed (a simulated probed instruction)."""
        if self._slice_end:  # inside a slice (a hook): credit it when the slice is counted
            self.hidden -= instructions
            if self._engine_clock:
                if self._advance_vtime is not None:
                    self._advance_vtime(instructions)
                else:
                    self.engine.vtime += instructions
        else:
            self._time += instructions
            self._sync_engine_clock()

    def _sync_engine_clock(self) -> None:
        """Engines with a CPU timer of their own (LoongArch's) run it on the machine's clock."""
        if self._engine_clock:
            self.engine.vtime = self._time

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Save CPU, memory (copy-on-write), virtual time, console and devices; no probes may be
        placed (restore drops the registry, as the pages it patched go back too)."""
        if (self._registry is not None and (self._registry.sites or self._registry.kretprobes)) or (
            self._uprobes is not None and self._uprobes.placed
        ):
            raise SimError("snapshot with probes placed is not supported: take it before placing them")
        if not getattr(self.board, "snapshots", True):
            raise SimError(f"snapshots of the {self.board.name} board are not supported yet (its device state)")
        if not self._memory_snapshots:
            self._ram_view = None  # stored pages are copied out of the host buffer from now on
            self.engine.ctl(
                UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE, ctypes.c_int(UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY)
            )
            self._memory_snapshots = True
        devices = [_device_state(t) for t in self._timers]
        if self.board is not None:  # every device of the board, not only its timers
            devices = [_device_state(d) for d in self.devices]
        pools = {p: list(v) for p, v in self._sim_pools.items()}
        users = self.user_pages.state() if self.user_pages is not None else None
        return Snapshot(
            self.engine.context_save(), self._time, bytes(self.console_bytes), pools, devices, len(self.trace_lines),
            self.interrupt_trace,
            users,
        )

    def restore(self, snap: Snapshot) -> None:
        """Go back to ``snap``: the same run can be replayed with other probes, without reloading."""
        if self._running:
            raise UsageError("Machine.restore called while the machine is running (from inside a handler)")
        if self._registry is not None:
            self._registry.detach()
            self._registry = None
        if self._uprobes is not None:
            self._uprobes.detach()
            self._uprobes = None
        self.engine.context_restore(snap.context)
        if not getattr(self.engine, "restore_invalidates", False):  # (the P-code engine's own is exact)
            self.engine.ctl_flush_tb()  # translations of code the snapshot no longer has
        self.engine.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)  # and the address space it had then
        self._time = snap.time
        self._sync_engine_clock()
        self.console_bytes[:] = snap.console
        self.panic_watch.reset(snap.console)
        del self.trace_lines[snap.trace_lines :]
        self.interrupt_trace = snap.interrupt_trace
        self._sim_pools = {p: list(v) for p, v in snap.sim_pools.items()}
        if self.user_pages is not None and snap.user_pages is not None:
            self.user_pages.restore(snap.user_pages)
        self.exit_status = None
        self._held = self._held_by_step = self._guest_held = self._look = False
        self._boost, self._carry = None, 0
        self._run_exactly = 0
        self._storm = 0
        owners = self.devices if self.board is not None else self._timers
        for device, state in zip(owners, snap.devices, strict=True):
            vars(device).update({k: v if hasattr(v, "attach") else copy.deepcopy(v) for k, v in state.items()})

    # -- probes --------------------------------------------------------------------------------
    @property
    def probes(self) -> Registry:
        """The kprobe registry (created on first use; nothing is patched before)."""
        if self._registry is None:
            self._registry = Registry(self, self.step_variant)
        return self._registry

    def kprobe(
        self, spec: str | int, pre: PreHandler | None = None, post: PostHandler | None = None, name: str = ""
    ) -> Kprobe:
        """Place a kprobe at ``SYM``, ``SYM+OFF`` or an address."""
        _callable(pre=pre, post=post)
        return self.probes.register(spec, pre, post, name)

    def kretprobe(
        self,
        spec: str | int,
        handler: ReturnHandler | None = None,
        entry: ReturnHandler | None = None,
        maxactive: int | None = None,
        name: str = "",
    ) -> Kretprobe:
        """Place a kretprobe on a function."""
        _callable(handler=handler, entry=entry)
        return self.probes.register_kretprobe(spec, handler, entry, maxactive, name)

    @property
    def uprobes(self) -> Uprobes:
        """The uprobe registry (created on first use)."""
        if self._uprobes is None:
            self._uprobes = Uprobes(self, self.step_variant)
        return self._uprobes

    @property
    def uprobe_refusals(self) -> list[str]:
        """Why uprobe hits were refused (the user page pool ran out), one line each."""
        return list(self._uprobes.refusals) if self._uprobes is not None else []

    def uprobe(self, target: str, handler: UprobeHandler | None = None, name: str = "") -> Uprobe:
        """Place a uprobe at ``PATH:OFFSET`` or ``PATH:SYMBOL[+OFF]`` (the bundled firmware's
        user program is ``init``); ``handler(probe, regs)`` runs before the instruction."""
        _callable(handler=handler)
        return self.uprobes.register(target, handler, name)

    def uretprobe(self, target: str, handler: UretHandler | None = None, name: str = "") -> Uretprobe:
        """Place a uretprobe on a user function (``PATH:SYMBOL``); ``handler(instance, regs)``."""
        _callable(handler=handler)
        return self.uprobes.register_uretprobe(target, handler, name)

    @property
    def btf(self) -> Any:
        """The target kernel's BTF (a :class:`~kprobesim.ebpf.btf.Btf`), or None when it has none.

        The one place that answers "the target's BTF" (CO-RE relocations, typed globals, ksyms):
        it parses what :attr:`btf_source` returns once (by default the image's ``.BTF`` section
        or the ``kernel.btf`` beside it). Malformed BTF raises :class:`ImageError`.
        """
        if self._btf is None:
            from .ebpf.btf import Btf, BtfError

            raw = self.btf_source()
            if raw is None:
                return None
            try:
                self._btf = Btf.parse(raw)
            except BtfError as e:
                raise ImageError(f"{self.image.path}: kernel BTF: {e}") from None
        return self._btf

    def load_bpf(self, path: str | Path, **options: Any) -> Any:
        """Load an eBPF object and attach its programs by section (``kprobe/SYM``, ...);
        ``options`` are :func:`kprobesim.ebpf.loader.load`'s (``attach``, ``globals``, ...)."""
        from .ebpf.loader import load

        return load(self, path, **options)

    def trace_line(self, text: str) -> None:
        """One line of trace output (probe events, bpf_trace_printk, ring buffer records)."""
        if self.trace_sink is not None:
            self.trace_sink(text)
        else:
            self.trace_lines.append(text)

    def fault(self, message: str, pc: int) -> None:
        """Stop the run: the guest did something it cannot continue from.

        Inside a hook the fault is kept and raised once the slice has ended.
        """
        fault = GuestFault(message, pc, self.register_dump())
        if not self._slice_end:
            raise fault
        self._pending_fault = fault
        self.engine.emu_stop()


def _callable(**handlers: object) -> None:
    """Refuse a handler that cannot be called, when the probe is placed (not at its first hit)."""
    for what, fn in handlers.items():
        if fn is not None and not callable(fn):
            label = "the handler" if what == "handler" else f"the {what} handler"
            raise ProbeError(f"{label} must be callable, not {type(fn).__name__} {fn!r}")
