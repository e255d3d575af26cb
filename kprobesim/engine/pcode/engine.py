"""PcodeEngine: a CPU engine with Unicorn's Python API that executes SLEIGH P-code.

Each basic block is decoded once (pypcode) and cached by PC. It runs in tier 0 (:mod:`.interp`,
its P-code interpreted) until it has run ``hot_after`` times, then as a compiled Python function
(:mod:`.codegen`). Decoded blocks and compiled code are shared by all engines of the process
and kept on disk between processes (:mod:`.diskcache`). Writes to memory holding translated
code invalidate the affected blocks (guest stores and ``mem_write`` alike);
``ctl_remove_cache``/``ctl_flush_tb`` do it explicitly.

Time: ``icount()`` counts instructions started by the last ``emu_start`` with Unicorn's
conventions (a trapping instruction, or one a code hook stopped at, counts); ``vtime`` is the
virtual clock (retired instructions plus time ``idle`` skipped) that drives the guest's timer and
rdtime; a host with its own clock sets it. Architecture specifics (registers, privileged model,
traps, timers) live in an :class:`ArchModel`.
"""

from __future__ import annotations

import struct
import sys
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import pypcode
from unicorn import UcError
from unicorn.unicorn_const import (
    UC_CTL_CONTEXT_CPU,
    UC_CTL_CONTEXT_MEMORY,
    UC_CTL_CONTEXT_MODE,
    UC_CTL_TB_FLUSH,
    UC_CTL_TB_REMOVE_CACHE,
    UC_CTL_TLB_FLUSH,
    UC_ERR_ARG,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_HOOK,
    UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_MEM_FETCH_PROT,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_READ_PROT,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MEM_FETCH_PROT,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ,
    UC_MEM_READ_PROT,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE,
    UC_MEM_WRITE_PROT,
    UC_MEM_WRITE_UNMAPPED,
    UC_PROT_ALL,
    UC_PROT_EXEC,
    UC_PROT_READ,
    UC_PROT_WRITE,
)

from . import diskcache
from .arch import ArchModel
from .codegen import (
    HELPERS,
    T_ARCH,
    T_EXC,
    T_IDLE,
    T_INVALID,
    T_MEM,
    T_STOP,
    T_UNIMPL,
    Block,
    CompileCfg,
    Insn,
    Leave,
    OpCode,
    Trap,
    UnimplementedUserOp,
    compile_block,
    compile_snippets,
    lift,
    unpack_insns,
)
from .codeinfo import CodeInfoMap
from .interp import RUN_CODE, Interpreter, block_runner, interpretable
from .memory import PAGE, Memory, Region

INF = 1 << 80
MAX_BLOCK = 128  # instructions per block
_U64_AT = struct.Struct("<Q").unpack_from
# Compiled blocks shared by all engines of a process: (language, pc, bytes, hook flags) ->
# (code object, source, function name). Engines exec the code object in their own namespace.
_CODE_CACHE: dict[tuple[Any, ...], tuple[Any, str, str, tuple[int, ...]]] = {}
_CODE_CACHE_MAX = 10000
# Decoded blocks shared by all engines of a process: (language, pc, max instructions) ->
# entries [probe bytes, limit or None, instruction addresses, end, instructions or None,
# instructions packed for the disk cache or None].
# ``probe`` holds the block's bytes and the next instruction's (which decided where the block
# ends); a block that ended near the byte limit records the limit, since a different limit
# could have cut it elsewhere. Entries loaded from the disk cache have no instructions until a
# compilation needs them.
_LIFT_CACHE: dict[tuple[str, int, int], list[list[Any]]] = {}
_DISK_LOADED: dict[str, Any] = {}  # language -> the diskcache.Store merged into the caches
# Tier-0 runs of each block's code over the process (and, through the disk cache, earlier
# processes): compile key -> [runs]. A block compiles once its code has run hot_after times,
# whichever machines ran it.
_TIER0_RUNS: dict[Any, list[int]] = {}
# Runs of a block in tier 0 (interpreted P-code, see .interp) before it is compiled.
HOT_AFTER = 4
# block function code object -> (instruction addresses, source line of each instruction,
# register words the block writes). Never evicted by size: a block still running needs its
# entry (a trap writes back the registers held in its locals), however many blocks were
# compiled since; an entry goes when its code object does (equal code objects of two
# compilations are distinct keys: the map is by identity).
_CODE_INFO: CodeInfoMap = CodeInfoMap()
POLL = 20000  # instructions between wall-clock checks when a timeout is set

_MEM_HOOKS = (
    UC_HOOK_MEM_READ_UNMAPPED
    | UC_HOOK_MEM_WRITE_UNMAPPED
    | UC_HOOK_MEM_FETCH_UNMAPPED
    | UC_HOOK_MEM_READ_PROT
    | UC_HOOK_MEM_WRITE_PROT
    | UC_HOOK_MEM_FETCH_PROT
)
# access type -> (hook bit, error)
_ACCESS = {
    UC_MEM_READ_UNMAPPED: (UC_HOOK_MEM_READ_UNMAPPED, UC_ERR_READ_UNMAPPED),
    UC_MEM_WRITE_UNMAPPED: (UC_HOOK_MEM_WRITE_UNMAPPED, UC_ERR_WRITE_UNMAPPED),
    UC_MEM_FETCH_UNMAPPED: (UC_HOOK_MEM_FETCH_UNMAPPED, UC_ERR_FETCH_UNMAPPED),
    UC_MEM_READ_PROT: (UC_HOOK_MEM_READ_PROT, UC_ERR_READ_PROT),
    UC_MEM_WRITE_PROT: (UC_HOOK_MEM_WRITE_PROT, UC_ERR_WRITE_PROT),
    UC_MEM_FETCH_PROT: (UC_HOOK_MEM_FETCH_PROT, UC_ERR_FETCH_PROT),
}
_BRANCHES = frozenset({OpCode.BRANCH, OpCode.CBRANCH, OpCode.BRANCHIND, OpCode.CALL,
                       OpCode.CALLIND, OpCode.RETURN})


@dataclass(slots=True)
class _Hook:
    htype: int
    cb: Any
    ud: Any
    begin: int
    end: int

    def covers(self, addr: int) -> bool:
        return self.begin > self.end or self.begin <= addr <= self.end


@dataclass(eq=False)
class _MemSnap:
    """Copy-on-write memory snapshot: the original bytes of every page changed since."""

    saved: dict[int, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class _Context:
    regs: list[int]
    arch: Any
    vt: int
    toff: int
    mem: _MemSnap | None = None


_CONTEXTS: dict[str, Any] = {}


def _context(lang: str) -> Any:
    """One pypcode context per language (loading a SLEIGH spec takes ~20 ms; translation keeps
    no state between calls)."""
    ctx = _CONTEXTS.get(lang)
    if ctx is None:
        ctx = _CONTEXTS[lang] = pypcode.Context(lang)
    return ctx


def _arch_class(name: str) -> type[ArchModel]:
    if name in ("loongarch64", "loongarch"):
        from .loongarch import LoongArch64

        return LoongArch64
    if name in ("riscv64", "riscv"):
        from .riscv import RiscV64

        return RiscV64
    raise ValueError(f"PcodeEngine: unknown architecture {name!r}")


class PcodeEngine:
    """A Unicorn-compatible CPU engine on SLEIGH P-code (see the module docstring)."""

    #: context_restore drops exactly the translations the restored memory and mode invalidate
    #: (Machine.restore then needs no whole-cache flush; Unicorn's engines do)
    restore_invalidates = True
    host_writes_ignore_protection = True  # mem_write fills read-only pages, also under snapshots

    def __init__(self, arch: str = "loongarch64", hot_after: int | None = None) -> None:
        """``hot_after``: runs of a block in tier 0 (interpreted) before it is compiled (0:
        compile every block at once); default :data:`HOT_AFTER`."""
        self.arch: ArchModel = _arch_class(arch)(self)
        #: Trap kinds whose instruction retires (the arch's ``trap_retires``, asked once).
        self._retiring = frozenset(k for k in range(T_EXC, T_STOP + 1) if self.arch.trap_retires(k))
        self.hot_after = HOT_AFTER if hot_after is None else hot_after
        self._hot: set[Any] = set()
        self.arch_name = self.arch.name
        self._ctx = _context(self.arch.lang)
        self._R: list[int] = [0] * self.arch.nwords
        self._pcw = self.arch.pc_word
        self._mem = Memory()
        self._blocks: dict[Any, Block] = {}
        self._code_pages: dict[int, set[Any]] = {}
        self._code_cache = _CODE_CACHE
        self._rpages: dict[int, tuple[bytearray, int, int]] = {}
        self._wpages: dict[int, tuple[bytearray, int, int]] = {}
        self._wrev: dict[int, set[int]] = {}
        self._hooks: dict[int, _Hook] = {}
        #: (exception code, INTR hook, fn): see hook_break_fast
        self._fast_break: tuple[int, _Hook, Any] | None = None
        self._next_hook = 1
        self._code_hooks: list[_Hook] = []
        self._block_hooks: list[_Hook] = []
        self._intr_hooks: list[_Hook] = []
        self._invalid_hooks: list[_Hook] = []
        self._mem_hooks: list[_Hook] = []
        self._rd_hooks: list[_Hook] = []  # UC_HOOK_MEM_READ
        self._wr_hooks: list[_Hook] = []  # UC_HOOK_MEM_WRITE
        self._whook_pages: set[int] = set()
        self._whook_all = False
        self._ctx_mode = UC_CTL_CONTEXT_CPU
        self._snaps: list[weakref.ref[_MemSnap]] = []
        self._cow_saved: set[int] = set()  # pages every live snapshot has saved
        self._win: Region | None = None
        self._host_ram: Region | None = None  # mem_read's last RAM region
        self._win_page0 = 0
        self._until: int | None = None
        self._vt = 0  # instructions executed over the engine's life
        self._toff = 0  # virtual time skipped by idle (virtual time = _vt + _toff)
        self._chk = INF
        self._trunc = 0
        self._count_end = INF
        self._deadline: float | None = None
        self._stop = False
        self.interrupts_taken = 0  # interrupts the engine took on its own (budget for the host)
        self._finish = False  # stop_after_insn() was called: stop once this instruction is done
        self._mmio_log: list[int] = []  # device accesses of one instruction: (live vt, values...)
        self._replay: list[int] | None = None  # re-running it: its device accesses, already done
        self._running = False
        self._trapped = False  # inside _on_trap (a trap hook runs between blocks)
        self.irq_hold = False  # interrupts wait (a kprobe's out-of-line step is in flight)
        self._start_vt = 0
        self._icount = 0
        self._last_fault: tuple[int, int, int] | None = None
        self._sync_due = False  # inside a device callback, registers not yet synced
        self._store: Any = None  # this language's disk cache (diskcache.Store), once loaded
        self.last_exception: tuple[int, int, int | None] | None = None
        self.halted = False
        self._G: dict[str, Any] = dict(HELPERS)
        for n in (2, 4, 8):
            fmt = {2: "<H", 4: "<I", 8: "<Q"}[n]
            self._G[f"U{n}"] = struct.Struct(fmt).unpack_from
            self._G[f"P{n}"] = struct.Struct(fmt).pack_into
        self._G.update(LD=self._ld, ST=self._st, CH=self._code_hook, BH=self._block_hook,
                       E=self, C=None)
        self._G.update(self.arch.helpers())
        self._interp = Interpreter(self.arch, self._G)
        self._update_window()
        self.arch.reset()

    # ------------------------------------------------------------------ virtual time
    @property
    def vtime(self) -> int:
        """Virtual time (timer, rdtime): instructions retired plus the time idle skipped.

        Trapping instructions (breaks, exceptions, faults) start but do not retire: they count
        in ``icount()`` but not here. A host that keeps its own clock (instructions it
        simulates, probe steps it hides) sets it: ``engine.vtime = now``.
        """
        if self._trapped or not self._running:  # the register file and _vt are current
            return self._vt + self._toff
        return self._live_vt() + self._toff

    @vtime.setter
    def vtime(self, value: int) -> None:
        toff = int(value) - (self._vt if self._trapped or not self._running else self._live_vt())
        ahead = toff - self._toff
        self._toff = toff
        # The next check (in instructions run, the clock minus the offset) comes ``ahead``
        # sooner: a timer deadline is that much closer (a probe's simulated instruction).
        self._chk = self._chk - ahead if ahead >= 0 else -1

    def advance_vtime(self, n: int) -> None:
        """``vtime += n`` in one call (a probe hit's simulated instruction, from its trap hook)."""
        self._toff += n
        self._chk = self._chk - n if n >= 0 else -1

    def _live_vt(self) -> int:
        """Instructions done so far, also from inside a callback of a running block (the
        executing instruction not included)."""
        if self._running and not self._trapped:
            at = self._block_position()
            if at is not None:
                return at[0] + at[1]
        return self._vt

    def icount(self) -> int:
        """Instructions started by the last (or current) ``emu_start``.

        Inside a callback during a run (a device access, a hook) the instruction being executed
        counts as started, as with Unicorn.
        """
        if not self._running:
            return self._icount
        if self._trapped:
            return self._vt - self._start_vt
        at = self._block_position()
        if at is None:
            return self._vt - self._start_vt
        vt, idx, _, _ = at
        return vt - self._start_vt + idx + 1

    def _block_position(self) -> tuple[int, int, Any, int] | None:
        """(vt at block entry, index of the executing instruction, frame, its address) of the
        running block, compiled or in tier 0.

        Found by walking the Python stack: nothing on the hot path keeps it up to date.
        """
        import bisect

        f = sys._getframe(1)
        while f is not None:
            code = f.f_code
            info = _CODE_INFO.get(code)
            if info is not None:
                idx = bisect.bisect_right(info[1], f.f_lineno) - 1  # -1: before the first
                return f.f_locals["vt"], idx, f, info[0][max(idx, 0)]
            if code is RUN_CODE:
                loc = f.f_locals
                return loc["vt"], loc["idx"], f, loc["insn"].addr
            f = f.f_back
        return None

    def _resched(self) -> None:
        """Something may need the dispatcher's attention at the next block boundary."""
        self._chk = -1

    def hold_interrupts(self, hold: bool) -> None:
        """Take no interrupt while ``hold`` (the guest's own enable bits untouched); on release
        one that is pending is taken before the next instruction."""
        self.irq_hold = hold
        if not hold:
            self._chk = -1

    # ------------------------------------------------------------------ memory API
    def mem_map(self, address: int, size: int, perms: int = UC_PROT_ALL) -> None:
        self._mem.map(address, size, perms)
        self._mem_changed(flush_blocks=False)

    def mmio_map(self, address: int, size: int, read_cb: Any, user_data_read: Any,
                 write_cb: Any, user_data_write: Any) -> None:
        self._mem.map_mmio(address, size, read_cb, user_data_read, write_cb, user_data_write)
        self._mem_changed(flush_blocks=False)

    def mem_unmap(self, address: int, size: int) -> None:
        self._mem.unmap(address, size)
        self._mem_changed(flush_blocks=True)

    def mem_protect(self, address: int, size: int, perms: int = UC_PROT_ALL) -> None:
        self._mem.protect(address, size, perms)
        self._mem_changed(flush_blocks=True)

    def mem_regions(self) -> Any:
        yield from self._mem.regions_list()

    def _host_region(self, addr: int, err: int) -> tuple[Region, int]:
        r = self._mem.find(addr)
        if r is not None:
            return r, addr
        pa = self.arch.va_to_pa(addr)
        if pa is not None:
            r = self._mem.find(pa)
            if r is not None:
                return r, pa
        raise UcError(err)

    def mem_read(self, address: int, size: int) -> bytearray:
        r = self._host_ram  # the RAM region the last read found (forgotten on any map change)
        if r is None or address < r.begin or address + size > r.end:
            r = self._mem.find(address)
            if r is None or r.buf is None or address + size > r.end:
                return self._mem_read_pieces(address, size)
            self._host_ram = r
        o = address - r.begin
        return bytearray(r.buf[o:o + size])

    def ram_u64(self, address: int) -> int | None:
        """The little-endian u64 at ``address`` if it lies in the RAM region the last read found
        (what ``mem_read(address, 8)`` gives), else None."""
        r = self._host_ram
        if r is not None and r.begin <= address and address + 8 <= r.end:
            return _U64_AT(r.buf, address - r.begin)[0]
        return None

    def ram_u64_at(self, address: int) -> int | None:
        """``ram_u64(ram_u64(address))`` (0 for a null pointer) when both reads lie in that RAM
        region, else None."""
        r = self._host_ram
        if r is not None:
            begin, end = r.begin, r.end
            if begin <= address and address + 8 <= end:
                ptr = _U64_AT(r.buf, address - begin)[0]
                if not ptr:
                    return 0
                if begin <= ptr and ptr + 8 <= end:
                    return _U64_AT(r.buf, ptr - begin)[0]
        return None

    def _mem_read_pieces(self, address: int, size: int) -> bytearray:
        """mem_read across regions, of MMIO or through the arch's address translation."""
        out = bytearray()
        a, end = address, address + size
        while a < end:
            r, pa = self._host_region(a, UC_ERR_READ_UNMAPPED)
            n = min(end - a, r.end - pa)
            if r.buf is None:
                for i in range(n):
                    v = r.read_cb(self, pa + i - r.mmio_base, 1, r.read_ud) if r.read_cb else 0
                    out.append(v & 0xFF)
            else:
                o = pa - r.begin
                out += r.buf[o:o + n]
            a += n
        return out

    def mem_write(self, address: int, data: bytes) -> None:
        data = bytes(data)
        a, end, k = address, address + len(data), 0
        while a < end:
            r, pa = self._host_region(a, UC_ERR_WRITE_UNMAPPED)
            n = min(end - a, r.end - pa)
            if r.buf is None:
                if r.write_cb:
                    for i in range(n):
                        r.write_cb(self, pa + i - r.mmio_base, 1, data[k + i], r.write_ud)
            else:
                if self._snaps:
                    self._cow_touch(pa, n)
                o = pa - r.begin
                r.buf[o:o + n] = data[k:k + n]
                self._invalidate(pa, pa + n)
            a += n
            k += n

    def _mem_changed(self, flush_blocks: bool) -> None:
        self._host_ram = None
        self._flush_tlb()
        if flush_blocks:
            self._flush_blocks()
        self._update_window()

    def _flush_tlb(self) -> None:
        """Forget cached address resolutions (map or translation-mode change)."""
        self._rpages.clear()
        self._wpages.clear()
        self._wrev.clear()

    def _update_window(self) -> None:
        """Point the generated code's inline fast path at the largest RAM region."""
        G = self._G
        best = None
        for r in self._mem.regions:
            if r.buf is not None and (best is None or r.end - r.begin > best.end - best.begin):
                best = r
        self._win = best
        if best is None:
            G.update(RAM=bytearray(), VLO=1, WLO=1, CP=bytearray(1))
            for n in (1, 2, 4, 8):
                G[f"VH{n}"] = -1
                G[f"WH{n}"] = -1
            return
        G["RAM"] = best.buf
        G["VLO"] = G["WLO"] = best.begin
        readable = best.perms & UC_PROT_READ and not self._rd_hooks
        for n in (1, 2, 4, 8):
            G[f"VH{n}"] = best.end - n if readable else -1
            G[f"WH{n}"] = best.end - n if best.perms & UC_PROT_WRITE else -1
        self._win_page0 = best.begin >> 12
        G["CP"] = bytearray(((best.end - best.begin) >> 12) + 1)
        self._rebuild_cp()

    def _wslow(self, p: int) -> bool:
        """Must guest writes to physical page ``p`` take the slow path?"""
        return (p in self._code_pages or self._whook_all or p in self._whook_pages
                or (bool(self._snaps) and p not in self._cow_saved))

    def _rebuild_cp(self) -> None:
        cp = self._G["CP"]
        if self._whook_all or self._snaps:
            cp[:] = b"\x01" * len(cp)
            if self._whook_all:
                return
            marks = self._cow_saved
        else:
            cp[:] = bytes(len(cp))
            marks = set(self._code_pages) | self._whook_pages
        for p in marks:
            self._cp_mark(cp, p)

    def _cp_mark(self, cp: bytearray, p: int) -> None:
        """Recompute the write-slow flag of pages p-1 and p (a write may straddle into p)."""
        base = self._win_page0
        for q in (p - 1, p):
            i = q - base
            if 0 <= i < len(cp) - 1:
                cp[i] = 1 if (self._wslow(q) or self._wslow(q + 1)) else 0

    # ---- CPU-side accesses (called from generated code)
    def _resolve(self, a: int) -> tuple[Region | None, int]:
        r = self._mem.find(a)
        if r is not None:
            return r, a
        pa = self.arch.va_to_pa(a)
        if pa is not None and pa != a:
            r = self._mem.find(pa)
            if r is not None:
                return r, pa
        return None, a

    def _ld(self, a: int, size: int, idx: int) -> int:
        e = self._rpages.get(a >> 12)
        if e is not None:
            buf, base, lim = e
            o = a - base
            if o + size <= lim:
                return int.from_bytes(buf[o:o + size], "little")
        return self._ld_slow(a, size, idx)

    def _ld_slow(self, a: int, size: int, idx: int) -> int:
        r, pa = self._resolve(a)
        if r is None:
            raise Trap(T_MEM, idx, UC_MEM_READ_UNMAPPED, a, (size, 0))
        if r.buf is None:
            if r.read_cb is None:
                return 0
            if self._replay:
                return self._replay.pop(0)
            was, was_finish = self._stop, self._finish
            self._sync_due = True  # registers are synced if the device looks at them
            try:
                v = r.read_cb(self, pa - r.mmio_base, size, r.read_ud)
            finally:
                self._sync_due = False
            v = int(v) & ((1 << (8 * size)) - 1)
            self._log_mmio(v)
            if self._stop and not was or self._finish and not was_finish:
                raise Trap(T_STOP, idx)  # as Unicorn: the access stays unretired, the PC at it
            return v
        if not r.perms & UC_PROT_READ:
            raise Trap(T_MEM, idx, UC_MEM_READ_PROT, a, (size, 0))
        o = pa - r.begin
        lim = ((pa | 0xFFF) + 1) - r.begin
        if self._rd_hooks:  # nothing is cached while read hooks exist
            was = self._stop
            self._access_hooks(self._rd_hooks, UC_MEM_READ, a, size, 0, idx)
            if self._stop and not was:
                raise Trap(T_STOP, idx)
            if o + size <= lim:
                return int.from_bytes(r.buf[o:o + size], "little")
        if o + size > lim:
            return sum(self._ld(a + i, 1, idx) << (8 * i) for i in range(size))
        self._rpages[a >> 12] = (r.buf, a - o, lim)
        return int.from_bytes(r.buf[o:o + size], "little")

    def _st(self, a: int, size: int, v: int, idx: int) -> None:
        e = self._wpages.get(a >> 12)
        if e is not None:
            buf, base, lim = e
            o = a - base
            if o + size <= lim:
                buf[o:o + size] = v.to_bytes(size, "little")
                return
        self._st_slow(a, size, v, idx)

    def _st_slow(self, a: int, size: int, v: int, idx: int, hooks: bool = True) -> None:
        r, pa = self._resolve(a)
        if r is None:
            raise Trap(T_MEM, idx, UC_MEM_WRITE_UNMAPPED, a, (size, v))
        if r.buf is None:
            if r.write_cb is not None:
                if self._replay:
                    self._replay.pop(0)
                    return
                was, was_finish = self._stop, self._finish
                self._sync_due = True
                try:
                    r.write_cb(self, pa - r.mmio_base, size, int(v), r.write_ud)
                finally:
                    self._sync_due = False
                self._log_mmio(0)
                if self._stop and not was or self._finish and not was_finish:
                    raise Trap(T_STOP, idx)  # as Unicorn: the store runs again on resume
            return
        if not r.perms & UC_PROT_WRITE:
            raise Trap(T_MEM, idx, UC_MEM_WRITE_PROT, a, (size, v))
        o = pa - r.begin
        lim = ((pa | 0xFFF) + 1) - r.begin
        stopped = False
        if hooks and self._wr_hooks:
            was = self._stop
            self._access_hooks(self._wr_hooks, UC_MEM_WRITE, a, size, int(v), idx)
            stopped = self._stop and not was
        if o + size > lim:
            for i in range(size):
                self._st_slow(a + i, 1, (int(v) >> (8 * i)) & 0xFF, idx, hooks=False)
        else:
            if self._snaps:
                self._cow_touch(pa, size)
            r.buf[o:o + size] = int(v).to_bytes(size, "little")
            p = pa >> 12
            if p in self._code_pages:
                self._invalidate(pa, pa + size)
            elif not self._wslow(p):
                self._wpages[a >> 12] = (r.buf, a - o, lim)
                self._wrev.setdefault(p, set()).add(a >> 12)
        if stopped:  # a write hook stopped: the store is done, the PC stays at it
            raise Trap(T_STOP, idx)

    def _log_mmio(self, value: int) -> None:
        """Note a device access of the executing instruction (what a re-run replays)."""
        at = self._live_vt()
        if not self._mmio_log or self._mmio_log[0] != at:
            self._mmio_log = [at]
        self._mmio_log.append(value)

    def _finish_insn(self, ipc: int) -> None:
        """``stop_after_insn`` was called from a device access of the instruction at ``ipc``,
        which left its block unretired: run it again alone, its device accesses served from
        what they did (each device sees each access once), and count it retired."""
        log, self._mmio_log = self._mmio_log, []
        self._finish = False
        self._replay = log[1:]
        vt = self._vt - 1  # the instruction counts as started already
        try:
            b = self._blocks.get((ipc, 1)) or self._translate(ipc, 1)
            npc = b.fn(self._R, vt)
        except Trap:  # it faults after its access: it stays unretired, the PC at it
            self._R[self.arch.pc_word] = ipc
            return
        finally:
            self._replay = None
        self._R[self.arch.pc_word] = npc
        self._toff += 1

    def _access_hooks(self, hooks: list[_Hook], access: int, a: int, size: int, v: int,
                      idx: int) -> bool:
        """Call UC_HOOK_MEM_READ/WRITE hooks covering ``a`` (registers synced); True if any."""
        hit = [h for h in hooks if h.covers(a)]
        if not hit:
            return False
        self._sync_registers(idx)
        for h in hit:
            h.cb(self, access, a, size, v, h.ud)
        return True

    def _sync_registers(self, idx: int) -> None:
        """Copy the running block's register locals to the register file (for hooks)."""
        at = self._block_position()
        if at is None:
            return
        R = self._R
        f = at[2]
        if f.f_code is not RUN_CODE:
            for name, v in f.f_locals.items():
                if name[0] == "r" and name[1:].isdigit():
                    R[int(name[1:])] = v
        R[self.arch.pc_word] = at[3]

    def _cow_touch(self, pa: int, size: int) -> None:
        """Before changing [pa, pa+size): save original pages into the live snapshots."""
        live = [s for s in (ref() for ref in self._snaps) if s is not None]
        if len(live) != len(self._snaps):
            self._snaps = [weakref.ref(s) for s in live]
            if not live:
                self._cow_saved.clear()
                self._rebuild_cp()
                return
        for p in range(pa >> 12, ((pa + size - 1) >> 12) + 1):
            if p in self._cow_saved:
                continue
            r = self._mem.find(p << 12)
            if r is not None and r.buf is not None:
                o = (p << 12) - r.begin
                page = bytes(r.buf[o:o + PAGE])
                for snap in live:
                    snap.saved.setdefault(p, page)
            self._cow_saved.add(p)
            cp = self._G.get("CP")
            if cp is not None:
                self._cp_mark(cp, p)

    def _fetch(self, pc: int) -> tuple[bytes, int]:
        """Bytes from ``pc`` to the end of its page (and the next page if mapped), and the PA."""
        r, pa = self._resolve(pc)
        if r is None:
            raise Trap(T_MEM, -1, UC_MEM_FETCH_UNMAPPED, pc, (self.arch.min_insn, 0))
        if r.buf is None or not r.perms & UC_PROT_EXEC:
            raise Trap(T_MEM, -1, UC_MEM_FETCH_PROT, pc, (self.arch.min_insn, 0))
        o = pa - r.begin
        end = min(((pa | 0xFFF) + 1) - r.begin, len(r.buf))
        data = bytes(r.buf[o:end])
        if self.arch.max_insn > self.arch.min_insn and end < len(r.buf):
            # an instruction may straddle the page end (riscv)
            data += bytes(r.buf[end:end + self.arch.max_insn - 1])
        return data, pa

    # ------------------------------------------------------------------ registers / context
    @property
    def direct_registers(self) -> tuple[list[int], dict[int, int]] | None:
        """(the register file, register id -> its word) for the registers a trap hook may read
        and write there directly (the arch's plain ones), or None; see ``write_pc``."""
        words = self.arch.direct_registers()
        return (self._R, words) if words else None

    def write_pc(self, value: int) -> None:
        """Set the PC from a trap hook (or between runs), where the register file is current."""
        self._R[self.arch.pc_word] = value & 0xFFFF_FFFF_FFFF_FFFF

    def reg_read(self, reg_id: int, opt: Any = None) -> int:
        if self._sync_due:
            self._sync_now()
        return self.arch.reg_read(reg_id)

    def reg_write(self, reg_id: int, value: int) -> None:
        if self._sync_due:
            self._sync_now()
        self.arch.reg_write(reg_id, value)

    def _sync_now(self) -> None:
        """A device callback touches registers: bring the register file up to date first."""
        self._sync_due = False
        self._sync_registers(-1)

    def context_save(self) -> _Context:
        if self._sync_due:
            self._sync_now()
        ctx = _Context(list(self._R), self.arch.save(), self._vt, self._toff)
        if self._ctx_mode & UC_CTL_CONTEXT_MEMORY:
            ctx.mem = _MemSnap()
            self._snaps.append(weakref.ref(ctx.mem))
            self._cow_saved = set()
            self._wpages.clear()
            self._wrev.clear()
            self._rebuild_cp()
        return ctx

    def context_update(self, ctx: _Context) -> None:
        ctx.regs = list(self._R)
        ctx.arch = self.arch.save()

    def context_restore(self, ctx: _Context) -> None:
        """Registers, the arch's state and (with a memory snapshot) every page changed since.
        Translated blocks always match memory (every store into code drops the blocks it
        overlaps), so only pages whose bytes differ now drop theirs; a change of where fetches
        go (the arch's ``fetch_map``) drops them all."""
        self._R[:len(ctx.regs)] = ctx.regs
        mapped = self.arch.fetch_map()
        self.arch.restore(ctx.arch)
        if mapped is None or mapped != self.arch.fetch_map():
            self._flush_blocks()
        if ctx.mem is not None:
            for p, data in ctx.mem.saved.items():
                r = self._mem.find(p << 12)
                if r is None or r.buf is None:
                    continue
                self._cow_touch(p << 12, PAGE)
                o = (p << 12) - r.begin
                if r.buf[o:o + PAGE] == data:  # e.g. a code page whose probes are gone again
                    continue
                r.buf[o:o + PAGE] = data
                self._invalidate(p << 12, (p + 1) << 12)
        self._resched()

    # ------------------------------------------------------------------ ctl
    def ctl(self, ctl: int, op: int = 0, *args: Any) -> None:
        """The ``uc_ctl`` subset: context mode, translation-cache and TLB flushes."""
        vals = [getattr(a, "value", a) for a in args]
        if ctl == UC_CTL_CONTEXT_MODE:
            self._ctx_mode = int(vals[0])
        elif ctl == UC_CTL_TB_FLUSH:
            self.ctl_flush_tb()
        elif ctl == UC_CTL_TB_REMOVE_CACHE:
            self.ctl_remove_cache(int(vals[0]), int(vals[1]))
        elif ctl == UC_CTL_TLB_FLUSH:
            self._flush_tlb()
        else:
            raise UcError(UC_ERR_ARG)

    def ctl_flush_tb(self) -> None:
        self._flush_blocks()

    def ctl_flush_tlb(self) -> None:
        self._flush_tlb()

    def ctl_context_mode(self, mode: int) -> None:
        self._ctx_mode = mode

    # ------------------------------------------------------------------ hooks
    def hook_direct(self, htype: int, fn: Any) -> int:
        """Unicorn-engine parity: a trap hook called as ``fn(intno)`` (INTR) or ``fn()`` (INSN_INVALID)."""
        if htype == UC_HOOK_INTR:
            return self.hook_add(htype, lambda uc, intno, ud: fn(intno))
        if htype == UC_HOOK_INSN_INVALID:
            return self.hook_add(htype, lambda uc, ud: fn())
        raise ValueError(f"no direct hook for hook type {htype}")

    def hook_break_fast(self, ecode: int, hook: int, fn: Any) -> None:
        """While the UC_HOOK_INTR hook ``hook`` is the only one, an exception ``ecode`` that a
        block returned (a break, see ``_trap_returned``) calls ``fn(pc)`` instead of it: for a
        hook that does just that for ``ecode``, two calls shorter on every probe hit."""
        self._fast_break = (ecode, self._hooks[hook], fn)

    def hook_add(self, htype: int, callback: Any, user_data: Any = None, begin: int = 1,
                 end: int = 0, arg1: int = 0, arg2: int = 0) -> int:
        h = _Hook(htype, callback, user_data, begin, end)
        if htype == UC_HOOK_CODE:
            self._code_hooks.append(h)
            self._hooks_changed()
        elif htype == UC_HOOK_BLOCK:
            self._block_hooks.append(h)
            self._hooks_changed()
        elif htype == UC_HOOK_INTR:
            self._intr_hooks.append(h)
        elif htype == UC_HOOK_INSN_INVALID:
            self._invalid_hooks.append(h)
        elif htype and not htype & ~(_MEM_HOOKS | UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE):
            if htype & _MEM_HOOKS:
                self._mem_hooks.append(h)
            if htype & UC_HOOK_MEM_READ:
                self._rd_hooks.append(h)
            if htype & UC_HOOK_MEM_WRITE:
                self._wr_hooks.append(h)
            if htype & (UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE):
                self._access_hooks_changed()
        else:
            raise UcError(UC_ERR_HOOK)
        handle = self._next_hook
        self._next_hook += 1
        self._hooks[handle] = h
        return handle

    def hook_del(self, h: int) -> None:
        hk = self._hooks.pop(h, None)
        if hk is None:
            return
        for lst in (self._code_hooks, self._block_hooks, self._intr_hooks, self._invalid_hooks,
                    self._mem_hooks, self._rd_hooks, self._wr_hooks):
            if hk in lst:
                lst.remove(hk)
        if hk.htype in (UC_HOOK_CODE, UC_HOOK_BLOCK):
            self._hooks_changed()
        if hk.htype & (UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE):
            self._access_hooks_changed()

    def _access_hooks_changed(self) -> None:
        """Route hooked addresses through the slow path (where the hooks are called)."""
        self._whook_all = False
        pages: set[int] = set()
        for h in self._wr_hooks:
            if h.begin > h.end or (h.end - h.begin) >> 12 > 1 << 16:
                self._whook_all = True
                break
            pages.update(range(h.begin >> 12, (h.end >> 12) + 1))
        self._whook_pages = pages
        self._flush_tlb()
        self._update_window()

    def _hooks_changed(self) -> None:
        self._flush_blocks()

    def _hooked(self, start: int, end: int, pcs: tuple[int, ...]) -> frozenset[int]:
        """The addresses among ``pcs`` (a block spanning [start, end)) a code hook covers."""
        hooks = self._code_hooks
        if not hooks:
            return frozenset()
        near = [h for h in hooks if h.begin > h.end or (h.begin < end and h.end >= start)]
        if not near:
            return frozenset()
        return frozenset(a for a in pcs if any(h.covers(a) for h in near))

    def _code_hook(self, addr: int, size: int) -> bool:
        if self._replay is not None:  # _finish_insn: this instruction's hooks already ran
            return False
        R = self._R
        pcw = self.arch.pc_word
        for h in list(self._code_hooks):
            if h.covers(addr) and h in self._code_hooks:
                h.cb(self, addr, size, h.ud)
                if self._stop or R[pcw] != addr:
                    return True
        return self._stop or R[pcw] != addr

    def _block_hook(self, addr: int, size: int) -> bool:
        if self._replay is not None:
            return False
        R = self._R
        pcw = self.arch.pc_word
        for h in list(self._block_hooks):
            if h.covers(addr) and h in self._block_hooks:
                h.cb(self, addr, size, h.ud)
        return self._stop or R[pcw] != addr

    def call_intr_hooks(self, intno: int) -> bool:
        """Report ``intno`` to the UC_HOOK_INTR hooks; False if there are none."""
        if not self._intr_hooks:
            return False
        for h in list(self._intr_hooks):
            h.cb(self, intno, h.ud)
        return True

    def call_invalid_hooks(self) -> bool:
        """Ask the UC_HOOK_INSN_INVALID hooks; True if one handled the instruction."""
        handled = False
        for h in list(self._invalid_hooks):
            if h.cb(self, h.ud):
                handled = True
        return handled

    # ------------------------------------------------------------------ translation cache
    def ctl_remove_cache(self, begin: int, end: int | None = None) -> None:
        """Invalidate translated blocks overlapping [begin, end)."""
        if end is None or end <= begin:
            end = begin + 1
        self._invalidate(begin, end)
        if self._mem.find(begin) is None:
            pa = self.arch.va_to_pa(begin)
            if pa is not None:
                self._invalidate(pa, pa + (end - begin))

    def _flush_blocks(self) -> None:
        self._blocks.clear()
        self._code_pages.clear()
        if self._G.get("CP") is not None:
            self._rebuild_cp()

    def _drop(self, key: Any) -> None:
        b = self._blocks.pop(key, None)
        if b is None:
            return
        for p in b.pages:
            s = self._code_pages.get(p)
            if s is not None:
                s.discard(key)
                if not s:
                    del self._code_pages[p]
                    self._cp_update(p)

    def _cp_update(self, p: int) -> None:
        cp = self._G["CP"]
        self._cp_mark(cp, p)

    def _invalidate(self, pa: int, pa_end: int) -> None:
        """Drop blocks whose bytes overlap physical [pa, pa_end)."""
        cps = self._code_pages
        for p in range(pa >> 12, ((pa_end - 1) >> 12) + 1):
            keys = cps.get(p)
            if not keys:
                continue
            for key in list(keys):
                b = self._blocks.get(key)
                if b is None or (b.pa0 < pa_end and b.pa0 + (b.end - b.start) > pa):
                    self._drop(key)

    def _add_code_page(self, p: int, key: Any) -> None:
        s = self._code_pages.get(p)
        if s is None:
            s = self._code_pages[p] = set()
            for vp in self._wrev.pop(p, ()):
                self._wpages.pop(vp, None)
            s.add(key)
            self._cp_update(p)
        else:
            s.add(key)

    def _promote(self, key: Any) -> None:
        """A tier-0 block ran hot_after times: compile it when it is next reached."""
        self._hot.add(key)
        self._blocks.pop(key, None)

    def _cached(self, ckey: Any) -> Any:
        """Compiled code for ``ckey`` from before (noted as used, for the disk cache's budget)."""
        hit = self._code_cache.get(ckey)
        if hit is not None:
            self._store.used_code.add(ckey)
        return hit

    def _remember(self, ckey: Any, hit: Any) -> None:
        if len(self._code_cache) > _CODE_CACHE_MAX:
            self._code_cache.clear()
        self._code_cache[ckey] = hit
        self._disk().add_code(ckey, hit)

    def _define(self, codeobj: Any) -> dict[str, Any]:
        """Run generated code in this engine's namespace: the functions it defines, by name."""
        ns: dict[str, Any] = {}
        exec(codeobj, self._G, ns)  # noqa: S102 - code generated by .codegen
        return ns

    def _tier0(self, insns: list[Insn], key: Any, runs: list[int]) -> Any:
        """The tier-0 function of a block: interpreted P-code, compiled one-instruction snippets
        (all of a block's in one code object) for instructions the architecture generates."""
        arch = self.arch
        snippets: list[Any] = [None] * len(insns)
        items = []
        for idx, insn in enumerate(insns):
            if not interpretable(arch, insn):
                snippets[idx] = arch.tier0_op(insn)
                if snippets[idx] is None:
                    items.append((idx, insn))
        if items:
            ckey = (arch.lang, "snippets", tuple((i, n.addr, n.raw) for i, n in items))
            hit = self._cached(ckey)
            if hit is None:
                hit = compile_snippets(arch, items)
                self._remember(ckey, hit)
            ns = self._define(hit[0])
            for (idx, _), name in zip(items, hit[2], strict=True):
                snippets[idx] = ns[name]
        return block_runner(self._interp, insns, snippets, runs, self.hot_after,
                            lambda: self._promote(key))

    def _disk(self) -> Any:
        """This language's persistent store, merged into the in-memory caches once."""
        lang = self.arch.lang
        st = diskcache.store(lang)
        if _DISK_LOADED.get(lang) is not st:
            _DISK_LOADED[lang] = st
            for (pc, maxn), entries in st.shapes.items():
                mine = _LIFT_CACHE.setdefault((lang, pc, maxn), [])
                mine.extend([probe, lim, pcs, end, None, packed]
                            for probe, lim, pcs, end, packed in entries)
            self._code_cache.update(st.code)
            for k, n in st.runs.items():
                r = _TIER0_RUNS.setdefault(k, [0])
                r[0] = max(r[0], n)
            st.runs_source = _TIER0_RUNS
        self._store = st
        return st

    def _shape(self, pc: int, data: bytes, limit: int, maxn: int) -> list[Any]:
        """The cache entry of the block at ``pc`` (see _LIFT_CACHE): [probe, limit, pcs, end,
        insns or None, packed insns or None]."""
        ckey = (self.arch.lang, pc, maxn)
        entries = _LIFT_CACHE.get(ckey)
        if entries is not None:
            for e in entries:
                lim = e[1]
                if (limit == lim if lim is not None else len(e[0]) <= limit) \
                        and data.startswith(e[0]):
                    self._store.used_shapes.add((pc, maxn))
                    return e
        insns = self._decode(pc, data, limit, maxn)
        end = insns[-1].addr + insns[-1].length
        seen = end - pc + self.arch.max_insn
        probe = data[:min(seen, limit)]
        lim = limit if seen >= limit else None
        pcs = tuple(i.addr for i in insns)
        e = [probe, lim, pcs, end, insns, None]
        if len(_LIFT_CACHE) > _CODE_CACHE_MAX:
            _LIFT_CACHE.clear()
        entries = _LIFT_CACHE.setdefault(ckey, [])
        if len(entries) >= 8:  # the page keeps changing (probes being placed): keep the newest
            del entries[0]
        entries.append(e)
        self._disk().add_shape((pc, maxn), (probe, lim, pcs, end, insns))  # packed at flush
        return e

    def _decode(self, pc: int, data: bytes, limit: int, maxn: int) -> list[Insn]:
        """Decode (pypcode), lift and classify the instructions of the block at ``pc``."""
        arch = self.arch
        insns: list[Insn] = []
        try:
            tx = self._ctx.translate(data, pc, 0, limit, maxn,
                                     pypcode.TranslateFlags.BB_TERMINATING)
            lifted = lift(tx.ops)
        except (pypcode.BadDataError, pypcode.UnimplError, pypcode.DecoderError):
            lifted = []
        classify, is_terminator = arch.classify, arch.is_terminator
        for addr, length, ops in lifted:
            if addr - pc + length > limit and insns:
                break
            insn = Insn(addr, length, data[addr - pc:addr - pc + length], ops)
            classify(insn)
            if insn.invalid and insns:
                break
            insns.append(insn)
            if insn.invalid or is_terminator(insn) or (ops and ops[-1].opc in _BRANCHES) \
                    or any(p.opc in _BRANCHES for p in ops):
                break
            if len(insns) >= maxn:
                break
        if not insns:
            raw = data[:arch.min_insn]
            insns.append(Insn(pc, arch.min_insn, raw, [], invalid=True))
        return insns

    def _translate(self, pc: int, maxn: int = MAX_BLOCK) -> Block:
        """Decode, compile and cache the block at ``pc`` (at most ``maxn`` instructions)."""
        t = self.arch.fetch_check(pc)
        if t is not None:
            raise t
        data, pa0 = self._fetch(pc)
        limit = len(data)
        if self._until is not None and pc < self._until < pc + limit:
            limit = self._until - pc
        arch = self.arch
        if self._store is None:
            self._disk()
        shape = self._shape(pc, data, limit, maxn)
        pcs, end = shape[2], shape[3]
        code = data[:end - pc]
        key = pc if maxn == MAX_BLOCK else (pc, maxn)
        hooked = self._hooked(pc, end, pcs)
        cfg = CompileCfg(
            code_hook=hooked.__contains__ if hooked else None,
            block_hook=any(h.covers(pc) for h in self._block_hooks),
            pc_word=arch.pc_word,
        )
        ckey = (arch.lang, pc, code, hooked, cfg.block_hook, len(pcs))
        # compiled code from before (this engine, another, or the disk cache) runs at once;
        # otherwise a block starts in tier 0 until it has run hot_after times
        hit = self._cached(ckey)
        insns = shape[4]
        if insns is None and hit is None:  # shape known from the disk cache only
            insns = shape[4] = unpack_insns(shape[5])
        runs = _TIER0_RUNS.get(ckey) if hit is None else None
        if hit is None and self.hot_after > 0 and key not in self._hot and not hooked \
                and not cfg.block_hook and (runs is None or runs[0] < self.hot_after):
            if runs is None:
                if len(_TIER0_RUNS) > _CODE_CACHE_MAX:
                    _TIER0_RUNS.clear()
                runs = _TIER0_RUNS[ckey] = [0]
            fn = self._tier0(insns, key, runs)
            src = "# tier 0: P-code interpreted (.interp)\n"
        else:
            if hit is None:
                hit = compile_block(arch, insns, cfg)
                self._remember(ckey, hit)
            codeobj, src, fname, (lines, dirty) = hit
            fn = self._define(codeobj)[fname]
            if fn.__code__ not in _CODE_INFO:
                _CODE_INFO[fn.__code__] = (pcs, lines, dirty)
        pages = tuple(range(pa0 >> 12, ((pa0 + (end - pc) - 1) >> 12) + 1))
        b = Block(fn, len(pcs), pcs, pc, end, src)
        b.pa0 = pa0
        b.pages = pages
        self._blocks[key] = b
        for p in pages:
            self._add_code_page(p, key)
        return b

    # ------------------------------------------------------------------ running
    def emu_stop(self) -> None:
        self._stop = True
        self._chk = -1

    def stop_after_insn(self) -> None:
        """From a device callback: complete the executing instruction (each of its device
        accesses once) and stop before the next one, unlike ``emu_stop``, which leaves the
        access unretired to run again on resume."""
        self._finish = True
        self._chk = -1

    def emu_start(self, begin: int, until: int, timeout: int = 0, count: int = 0) -> None:
        arch = self.arch
        R = self._R
        R[arch.pc_word] = begin
        if until != self._until:
            self._until = until
            self._drop_containing(until)
        self._stop = self._finish = False
        self.halted = False
        self._start_vt = self._vt
        self._icount = 0
        self._count_end = self._vt + count if count else INF
        self._deadline = time.monotonic() + timeout / 1e6 if timeout else None
        self._chk = -1
        self._running = True
        try:
            self._loop(begin)
        finally:
            self._running = False
            self._icount = self._vt - self._start_vt

    def _drop_containing(self, addr: int) -> None:
        r, pa = self._resolve(addr)
        p = pa >> 12
        for key in list(self._code_pages.get(p, ())):
            b = self._blocks.get(key)
            if b is not None and b.start < addr < b.end:
                self._drop(key)

    def _loop(self, pc: int) -> None:
        R = self._R
        blocks = self._blocks
        pcw = self.arch.pc_word
        until = self._until
        vt = self._vt
        b: Block | None = None
        while True:
            try:
                while True:
                    if pc == until:
                        R[pcw] = pc
                        self._vt = vt
                        return
                    b = blocks.get(pc)
                    if b is None:
                        if pc.__class__ is tuple:  # the block returned a trap (a break)
                            pc = self._trap_returned(pc, vt)
                            vt = self._vt
                            if pc is None or self._stop:
                                return
                            continue
                        self._vt = vt
                        b = self._translate(pc)
                    if vt + b.n > self._chk:
                        self._vt = vt
                        R[pcw] = pc
                        act = self._slow(b.n)
                        vt = self._vt
                        if act == 0:  # stop
                            return
                        if act == 1:  # state changed (interrupt taken): new pc
                            pc = R[pcw]
                            continue
                        if act == 2:  # run fewer instructions than the block holds
                            m = self._trunc
                            b = blocks.get((pc, m)) or self._translate(pc, m)
                    pc = b.fn(R, vt)
                    vt += b.n
            except Trap as t:
                tb = t.__traceback__.tb_next if t.__traceback__ is not None and not t.wb else None
                if tb is not None:  # a compiled block's written registers are in its locals
                    info = _CODE_INFO.get(tb.tb_frame.f_code)
                    if info is not None and info[2]:
                        loc = tb.tb_frame.f_locals
                        for w in info[2]:
                            R[w] = loc[f"r{w}"]
                if t.idx >= 0:
                    assert b is not None
                    ipc = b.pcs[t.idx]
                    vt += t.idx + 1
                else:
                    ipc = pc
                R[pcw] = ipc
                self._vt = vt
                if t.idx >= 0 and t.kind not in self._retiring:
                    self._toff -= 1  # started (icount) but not retired: no virtual time
                if t.kind == T_STOP and self._finish:
                    self._finish_insn(ipc)
                    return
                self._trapped = True  # no block is running: _vt is exact (no stack walk)
                try:
                    npc = self._on_trap(t, ipc)
                finally:
                    self._trapped = False
                vt = self._vt
                if npc is None or self._stop:
                    return
                pc = npc
                # No blanket event check here: whatever a trap changes that the dispatcher must
                # look at (an exception entered, CSRs, timers, interrupt lines, the clock) calls
                # _resched itself, as it must from a device callback inside a block; so a probe
                # hit, handled in its hook, goes straight on.
            except Leave as lv:
                vt += lv.idx
                if lv.idx:  # a code hook stopped before its instruction: counted, not run
                    self._toff -= 1
                self._vt = vt
                if self._stop:
                    return
                pc = R[pcw]
                self._chk = -1

    def _trap_returned(self, trap: tuple[int, int, int, Any, Any, Any], vt: int) -> int | None:
        """A block ended with a trap it returned, ``(kind, idx, pc, a, b, c)`` (see
        ``BlockEmitter.trap_return``), rather than raised: the trapping instruction ended the
        block, so ``vt`` already counts it as started. As the Trap path of ``_loop``, without
        the exception; the next PC, or None to stop."""
        kind, idx, ipc, a, b, c = trap
        self._R[self._pcw] = ipc
        if kind not in self._retiring:
            self._toff -= 1  # started (icount) but not retired: no virtual time
        self._vt = vt
        self._trapped = True
        try:
            if kind == T_EXC:
                fast = self._fast_break
                if fast is not None and a == fast[0] and len(self._intr_hooks) == 1 \
                        and self._intr_hooks[0] is fast[1]:
                    self.last_exception = (a, b, c)
                    fast[2](ipc)
                    return self._R[self._pcw]
                return self.arch.on_exception_args(a, b, c, idx, ipc)
            return self._on_trap(Trap(kind, idx, a, b, c, True), ipc)
        finally:
            self._trapped = False

    def _slow(self, n: int) -> int:
        """Block-boundary events. 0 = stop, 1 = PC changed, 2 = run only ``self._trunc``
        instructions of the block (a count limit or a timer expiry falls inside it), 3 = run.

        Timer expiries are exact: the interrupt is taken before the instruction at which the
        timer reaches zero, however the code happens to be split into blocks or slices.
        """
        vt = self._vt
        if self._stop or self._finish:
            return 0
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return 0
        arch = self.arch
        ev = arch.next_event()
        if ev is not None and vt + self._toff >= ev:
            arch.tick(vt + self._toff)
            ev = arch.next_event()
        if not self.irq_hold and arch.irq_pending():
            arch.take_interrupt()
            self.interrupts_taken += 1
            self._chk = -1
            return 1
        if vt >= self._count_end:
            return 0
        hard = self._count_end
        if ev is not None:
            hard = min(hard, ev - self._toff)
        chk = hard
        if self._deadline is not None:
            chk = min(chk, vt + POLL)
        self._chk = chk
        if vt + n > hard:
            self._trunc = hard - vt
            return 2
        return 3

    def _on_trap(self, t: Trap, ipc: int) -> int | None:
        kind = t.kind
        arch = self.arch
        if kind == T_EXC:
            return arch.on_exception(t, ipc)
        if kind == T_MEM:
            return self._mem_fault(t, ipc)
        if kind == T_INVALID:
            return arch.on_invalid(t, ipc)
        if kind == T_IDLE:
            return arch.on_idle(t, ipc)
        if kind == T_UNIMPL:
            raise UnimplementedUserOp(f"{arch.name}: user-op {t.a} at {ipc:#x} is not implemented")
        if kind == T_ARCH:
            return arch.on_arch_trap(t, ipc)
        if kind == T_STOP:
            return None
        raise RuntimeError(f"unknown trap kind {kind}")

    def _mem_fault(self, t: Trap, ipc: int) -> int | None:
        access, addr = t.a, t.b
        size, value = t.c
        bit, err = _ACCESS[access]
        if t.idx < 0:  # fetch fault: nothing started
            pass
        fault = (ipc, access, addr)
        handled = False
        for h in list(self._mem_hooks):
            if h.htype & bit and h.covers(addr):
                if h.cb(self, access, addr, size, value, h.ud):
                    handled = True
        if handled and self._last_fault != fault:
            self._last_fault = fault
            if t.idx >= 0:
                self._vt -= 1  # the instruction restarts
            self._flush_tlb()
            return ipc
        self._last_fault = None
        raise UcError(err)

    # ------------------------------------------------------------------ misc
    def block_source(self, pc: int) -> str:
        """The generated Python source of the block at ``pc`` (for debugging)."""
        b = self._blocks.get(pc) or self._translate(pc)
        return b.src

    def raise_exception(self, ecode: int, esubcode: int = 0, badv: int | None = None) -> None:
        """Enter a guest exception architecturally (delegates to the arch model)."""
        self.arch.raise_exception(ecode, esubcode, badv)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<PcodeEngine {self.arch.name}>"

