"""The Unicorn engine (riscv64, x86_64) with an exact executed-instruction counter.

Unicorn counts instructions for ``emu_start(count=N)`` in a C-level hook (``uc->emu_counter``),
which is far cheaper than any Python hook but not exposed by its API. We find that counter's
word inside the engine handle once per process by running a calibration program with known
counts, then read it with ctypes: exact virtual time with nothing hooked per instruction.

Registers are read and written straight through libunicorn's ``uc_reg_read``/``uc_reg_write``
with one preallocated buffer (the Python binding allocates and converts on every call: ~3x the
cost). A second calibration finds ``uc->invalid_error``, which Unicorn sets for a riscv
``ebreak`` *before* asking the INSN_INVALID hooks: clearing it lets a hook that handled the
break (and moved the PC) go on in the same ``emu_start`` instead of ending it.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
from collections.abc import Callable
from functools import cache

from unicorn import (
    UC_ARCH_RISCV,
    UC_ARCH_X86,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_MODE_RISCV64,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import x86_const as xc
from unicorn.riscv_const import UC_RISCV_REG_A0, UC_RISCV_REG_PC, UC_RISCV_REG_X1
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TB_REMOVE_CACHE, UC_ERR_EXCEPTION, UC_ERR_WRITE_UNMAPPED

_CAL_BASE = 0x10000
_NOP = bytes.fromhex("13000000")  # riscv addi x0, x0, 0
_EBREAK = bytes.fromhex("73001000")
_ADDI_A0 = bytes.fromhex("13051500")  # addi a0, a0, 1
_SCAN_WORDS = 4096
_ERROR_SEARCH = 16  # invalid_error sits a few words after emu_counter in struct uc_struct


def _words(uc: Uc) -> ctypes.Array:
    return ctypes.cast(uc._uch, ctypes.POINTER(ctypes.c_uint64 * _SCAN_WORDS)).contents


def _calibration_run(count: int) -> list[int]:
    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
    uc.mem_map(_CAL_BASE, 0x1000)
    uc.mem_write(_CAL_BASE, _NOP * 64)
    uc.emu_start(_CAL_BASE, _CAL_BASE + 64 * 4, count=count)
    assert uc.reg_read(UC_RISCV_REG_PC) == _CAL_BASE + 4 * count
    return list(_words(uc))


@cache
def counter_word() -> int:
    """Index of Unicorn's ``emu_counter`` in the engine handle (found by calibration)."""
    runs = {n: _calibration_run(n) for n in (7, 19, 42)}
    candidates = [
        i
        for i in range(_SCAN_WORDS - 1)
        if all(words[i] == n + 1 and words[i + 1] == n for n, words in runs.items())
    ]
    if len(candidates) != 1:
        raise RuntimeError("cannot locate Unicorn's instruction counter (unsupported unicorn build)")
    return candidates[0]


def _error_run(offset: int | None) -> tuple[list[int], int, bool]:
    """Run ``ebreak; addi a0, a0, 1`` with an INSN_INVALID hook that moves the PC past the
    ebreak. With ``offset`` None the hook snapshots the handle's words and lets Unicorn stop;
    otherwise it clears the int at ``offset`` (bytes) and asks Unicorn to go on.

    Returns (the snapshot, a0 at the end, whether emu_start raised)."""
    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
    uc.mem_map(_CAL_BASE, 0x1000)
    uc.mem_write(_CAL_BASE, _EBREAK + _ADDI_A0)
    snap: list[int] = []

    def hook(uc_: Uc, ud: object) -> bool:
        uc.reg_write(UC_RISCV_REG_PC, _CAL_BASE + 4)
        if offset is None:
            snap.extend(_words(uc))
            return False
        ctypes.c_int.from_address(uc._uch.value + offset).value = 0
        return True

    uc.hook_add(UC_HOOK_INSN_INVALID, hook)
    try:
        uc.emu_start(_CAL_BASE, _CAL_BASE + 8, count=10)
        raised = False
    except UcError:
        raised = True
    return snap, uc.reg_read(UC_RISCV_REG_A0), raised


@cache
def error_offset() -> int | None:
    """Byte offset of Unicorn's ``invalid_error`` in the engine handle, or None when it cannot
    be found and proven (then breaks are handled after ``emu_start`` returns, as before)."""
    base = counter_word()
    snap, _, raised = _error_run(None)
    if not raised or not snap:
        return None
    found = [
        8 * i + half
        for i in range(base + 1, base + _ERROR_SEARCH)
        for half in (0, 4)
        if (snap[i] >> (8 * half)) & 0xFFFF_FFFF == UC_ERR_EXCEPTION
    ]
    for offset in found:
        _, a0, raised = _error_run(offset)
        if not raised and a0 == 1:
            return offset
    return None


class UnicornEngine(Uc):
    """Placeholder for typing: engines are plain ``Uc`` objects with ``icount`` attached."""

    def icount(self) -> int:  # pragma: no cover - replaced per instance
        raise NotImplementedError

    def stop_after_insn(self) -> None:  # pragma: no cover - replaced per instance
        raise NotImplementedError


@cache
def _raw_lib() -> ctypes.CDLL:
    """libunicorn's functions without argument conversion (the binding's copy declares them),
    called with the GIL held (``PyDLL``): nothing runs beside the engine, and releasing and
    taking the GIL back cost more than a register read itself. Hooks called from inside
    ``uc_emu_start`` then find the GIL already theirs."""
    from unicorn.unicorn_py3.unicorn import uclib

    return ctypes.PyDLL(uclib._name)


def new_unicorn(arch: int, mode: int) -> Uc:
    """A Unicorn engine with ``icount()`` (instructions started by the last ``emu_start``),
    fast ``reg_read``/``reg_write`` for 64-bit registers and ``continue_after_trap()``.

    Always pass ``count > 0`` to ``emu_start``: Unicorn only counts in blocks translated
    while a count was active.
    """
    uc = Uc(arch, mode)
    index = counter_word()
    words = _words(uc)
    state: dict[str, int | None] = {"count": 0, "cut": None}
    start = type(_raw_lib().uc_emu_start)(("uc_emu_start", _raw_lib()))
    start.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_size_t)
    start.restype = ctypes.c_int
    handle = uc._uch.value

    def emu_start(begin: int, until: int, timeout: int = 0, count: int = 0) -> None:
        """The binding's ``emu_start``, with the GIL held throughout (see ``_raw_lib``)."""
        state["count"], state["cut"] = count, None
        words[index] = 0
        uc._hook_exception = None
        status = start(handle, begin, until, timeout, count)
        pending = uc._hook_exception
        if pending is not None:
            # A hook that raised stops the engine, and a riscv trap hook that could not finish
            # then leaves an error status: report the cause, not the status.
            pending.__suppress_context__ = True  # keep its own __cause__, hide the status
            raise pending
        if status:
            raise UcError(status)

    def icount() -> int:
        if state["cut"] is not None:
            return state["cut"]
        started = words[index]
        count = state["count"]
        # A stop because `count` was reached leaves the counter one past it.
        return count if count and started == count + 1 else started

    def stop_after_insn() -> None:
        """From a device callback: let the running instruction complete (all of its accesses,
        each once) and stop before the next one. ``emu_stop`` would instead leave an MMIO
        access unretired, to run again, device side effects and all, on resume."""
        if state["cut"] is None and state["count"]:
            state["cut"] = words[index]  # started so far, the running instruction included
            words[index] = words[index + 1]  # the count check before the next one stops there

    uc.emu_start = emu_start  # type: ignore[method-assign]
    uc.icount = icount  # type: ignore[attr-defined]
    _fast_registers(uc, arch, mode)
    _fast_memory(uc)
    uc.hook_direct = lambda htype, fn, raw=False: _hook_direct(uc, htype, fn, raw)  # type: ignore[attr-defined]
    offset = error_offset() if arch == UC_ARCH_RISCV else None
    error = ctypes.c_int.from_address(uc._uch.value + offset) if offset is not None else None

    def continue_after_trap() -> bool:
        """A trap hook handled the trap and set the PC: let this ``emu_start`` go on (Unicorn
        marks a riscv ebreak as an error before asking the hooks). False if it cannot."""
        if error is None:
            return arch != UC_ARCH_RISCV
        error.value = 0
        return True

    def run_without_stop_address() -> None:
        """From now on ``emu_start`` ignores ``until``: a run ends by its count, ``emu_stop``
        or a hook (as the machine's runs do; their ``until`` is never reached).

        As each ``emu_start`` returns, Unicorn drops the translation at ``until - 1`` (its
        ``resume_all_vcpus``), finding it by translating that address as a fetch would. Under a
        guest's paging the address is unmapped, and the translation records a page fault: on
        x86 CR2 becomes 0xffffffffffffffef at every run's end, which a guest page-fault
        handler between its entry and its CR2 read takes for its own fault's address. With
        Unicorn's exit list on and empty there is no stop address, and nothing is translated."""
        uc.ctl_exits_enabled(True)
        uc.ctl_set_exits([])

    uc.continue_after_trap = continue_after_trap  # type: ignore[attr-defined]
    uc.stop_after_insn = stop_after_insn  # type: ignore[attr-defined]
    uc.run_without_stop_address = run_without_stop_address  # type: ignore[attr-defined]
    _host_backed(uc)
    return uc


def _host_backed(uc: Uc) -> None:
    """Add ``map_host_backed(address, size, perms)``: memory the guest sees with ``perms`` and
    the host writes straight into (``mem_write`` there ignores the guest's permissions, also
    once memory snapshots are on, where Unicorn's own write path refuses non-writable pages).

    This is how simulator-owned pages stay execute-only to the guest without memory hooks:
    any ``UC_HOOK_MEM_READ``/``WRITE`` hook, whatever its range, sends every load and store
    of the guest through TCG's slow path. Host writes must be followed by
    ``ctl_remove_cache`` over the written code, as anywhere else.
    """
    regions: list[tuple[int, int, ctypes.Array]] = []
    slow_write = uc.mem_write

    def map_host_backed(address: int, size: int, perms: int) -> None:
        buf = (ctypes.c_char * size)()  # zeroed, kept alive with the engine
        uc.mem_map_ptr(address, size, perms, ctypes.addressof(buf))
        regions.append((address, address + size, buf))

    def mem_write(address: int, data: bytes) -> None:
        for lo, hi, buf in regions:
            if lo <= address < hi:
                if address + len(data) > hi:
                    raise UcError(UC_ERR_WRITE_UNMAPPED)
                ctypes.memmove(ctypes.addressof(buf) + address - lo, bytes(data), len(data))
                return
        slow_write(address, data)

    regions_ram: list[mmap.mmap] = []

    def map_ram(address: int, size: int) -> mmap.mmap:
        """Map read/write/execute memory from an anonymous host mapping (zero pages until
        touched) and return that mapping: its bytes *are* the guest's memory there (slices read
        and store them). Only while no memory snapshot is taken: Unicorn's copy-on-write then
        moves stored pages elsewhere."""
        host = mmap.mmap(-1, size)
        uc.mem_map_ptr(address, size, UC_PROT_ALL, ctypes.addressof(ctypes.c_char.from_buffer(host)))
        regions_ram.append(host)  # kept alive with the engine
        return host

    uc.map_host_backed = map_host_backed  # type: ignore[attr-defined]
    uc.map_ram = map_ram  # type: ignore[attr-defined]
    uc.mem_write = mem_write  # type: ignore[method-assign]


#: Registers Unicorn keeps as one plain u64 in the CPU state, read and written there with no
#: side effect beyond the store (the PC's write also restarts translation: see ``write_pc``).
_FILE_REGS: dict[int, tuple[tuple[int, ...], int]] = {
    UC_ARCH_RISCV: (tuple(range(UC_RISCV_REG_X1, UC_RISCV_REG_X1 + 31)), UC_RISCV_REG_PC),
    UC_ARCH_X86: (
        (xc.UC_X86_REG_RAX, xc.UC_X86_REG_RBX, xc.UC_X86_REG_RCX, xc.UC_X86_REG_RDX, xc.UC_X86_REG_RSI,
         xc.UC_X86_REG_RDI, xc.UC_X86_REG_RBP, xc.UC_X86_REG_RSP, xc.UC_X86_REG_R8, xc.UC_X86_REG_R9,
         xc.UC_X86_REG_R10, xc.UC_X86_REG_R11, xc.UC_X86_REG_R12, xc.UC_X86_REG_R13, xc.UC_X86_REG_R14,
         xc.UC_X86_REG_R15),
        xc.UC_X86_REG_RIP,
    ),
}  # fmt: skip
_MARK = 0x6B70_7369_6D00_0000  # "kpsim" in the high bytes: values no reset state holds
_FILE_SPAN = 0x40000  # how far past a pointer of the engine handle the CPU state is looked for


def _readable() -> list[tuple[int, int]]:
    """This process's readable anonymous memory ranges (the heap and mmap'd blocks, where the
    engine's CPU state lives; never a file mapping, whose bytes past the file's end fault)."""
    spans = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if fields[1][0] == "r" and (len(fields) < 6 or fields[5] == "[heap]"):
                lo, hi = fields[0].split("-")
                spans.append((int(lo, 16), int(hi, 16)))
    return sorted(spans)


def _span_of(spans: list[tuple[int, int]], addr: int) -> tuple[int, int] | None:
    at = bisect.bisect_right(spans, (addr, 1 << 64)) - 1
    return spans[at] if at >= 0 and spans[at][0] <= addr < spans[at][1] else None


def _mark_registers(uc: Uc, rids: tuple[int, ...]) -> dict[int, int]:
    values = {rid: _MARK + 0x1_0001 * (i + 1) for i, rid in enumerate(rids)}
    for rid, value in values.items():
        uc.reg_write(rid, value)
    return values


def _file_at(uc: Uc, word: int, offsets: tuple[int, ...], rids: tuple[int, ...]) -> int | None:
    """The register file's address in this engine when ``offsets`` from the pointer in handle
    word ``word`` hold ``rids`` (checked by writing each through the API and reading it back
    from memory, the old values put back); None otherwise."""
    saved = [uc.reg_read(rid) for rid in rids]  # also makes the engine set its CPU up
    base = _words(uc)[word]
    span = _span_of(_readable(), base) if base and not base % 8 else None
    if span is None or base + max(offsets) + 8 > span[1]:
        return None
    try:
        for mark in (_MARK + 0x55, _MARK + 0xAA):
            for i, rid in enumerate(rids):
                uc.reg_write(rid, mark + i)
            if any(ctypes.c_uint64.from_address(base + off).value != mark + i for i, off in enumerate(offsets)):
                return None
    finally:
        for rid, value in zip(rids, saved, strict=True):
            uc.reg_write(rid, value)
    return base


@cache
def _file_layout(arch: int, mode: int) -> tuple[int, tuple[int, ...]] | None:
    """(handle word holding a pointer, offsets from it of the file registers and the PC) of
    this Unicorn build: found by writing marked values through the API and looking for them
    in memory behind the handle's pointers (only readable ranges), proven on a second engine."""
    regs, pc = _FILE_REGS[arch]
    rids = (*regs, pc)
    uc = Uc(arch, mode)
    values = _mark_registers(uc, rids)
    spans = _readable()
    words = _words(uc)
    first = values[rids[0]].to_bytes(8, "little")
    for word in range(_SCAN_WORDS):
        ptr = words[word]
        span = _span_of(spans, ptr) if ptr and not ptr % 8 else None
        if span is None:
            continue
        blob = ctypes.string_at(ptr, min(span[1], ptr + _FILE_SPAN) - ptr)
        if blob.find(first) < 0:
            continue
        found = [blob.find(values[rid].to_bytes(8, "little")) for rid in rids]
        if any(at < 0 or at % 8 for at in found):
            continue
        offsets = tuple(found)
        if _file_at(Uc(arch, mode), word, offsets, rids) is not None:
            return word, offsets
    return None


#: Registers (or some of their bits) Unicorn keeps as a plain u64 elsewhere in the CPU state,
#: read (never written) there: (register, bits to set in turn to find the word, the bits the
#: word holds exactly). x86's CR0 whole (its paging bit is asked at every probe hit's first
#: guest access) and RFLAGS' TF and IF (the rest is computed from lazy condition codes; a
#: boosted hit asks for TF).
_ALL = 0xFFFF_FFFF_FFFF_FFFF
_MIRRORED: dict[int, tuple[tuple[int, tuple[int, ...], int], ...]] = {
    UC_ARCH_X86: (
        (xc.UC_X86_REG_CR0, (0x2, 0x8 | 0x20, 0x2 | 0x20 | 0x40000), _ALL),  # MP, TS, NE, AM: no mode change
        (xc.UC_X86_REG_RFLAGS, (0x100, 0x200, 0x300), 0x300),  # TF, IF
    )
}


def _file_base(uc: Uc, arch: int, mode: int) -> int | None:
    """Where this engine's register file starts (see :func:`_file_layout`), or None."""
    layout = _file_layout(arch, mode)
    if layout is None:
        return None
    regs, pc = _FILE_REGS[arch]
    word, offsets = layout
    base = _file_at(uc, word, offsets, (*regs, pc))
    return None if base is None else base + min(offsets)


@cache
def _mirror_offset(arch: int, mode: int, rid: int, settings: tuple[int, ...]) -> int | None:
    """Offset from the register file of the u64 that holds ``rid``: on a fresh engine, the
    only word that follows the register through its reset value ORed with each of
    ``settings`` (written by the API), proven on a second engine; None if there is no such word."""
    found: list[int] | None = None
    for proof in (False, True):
        uc = Uc(arch, mode)
        base = _file_base(uc, arch, mode)
        if base is None:
            return None
        span = _span_of(_readable(), base)
        if span is None:
            return None
        size = min(span[1], base + _FILE_SPAN) - base
        original = uc.reg_read(rid)
        hits: set[int] | None = None
        for bits in settings:
            uc.reg_write(rid, original | bits)
            value = uc.reg_read(rid).to_bytes(8, "little")
            blob = ctypes.string_at(base, size)
            if proof:
                if found is None or blob[found[0] : found[0] + 8] != value:
                    return None
                continue
            at, words = blob.find(value), set()
            while at >= 0:
                if at % 8 == 0:
                    words.add(at)
                at = blob.find(value, at + 1)
            hits = words if hits is None else hits & words
        if not proof:
            if not hits or len(hits) != 1:
                return None
            found = sorted(hits)
    return found[0] if found else None


def _fast_registers(uc: Uc, arch: int, mode: int) -> None:
    """Replace ``reg_read``/``reg_write`` by direct libunicorn calls for the registers the
    binding itself passes as one u64 (all but x86's MSR, descriptor-table and vector ones);
    the general registers and the PC are read (and the general registers written) straight
    in the CPU state, where a calibration finds them (a hundred times cheaper than a call).

    ``write_pc(value)`` stores the PC there too: only for a trap hook that handled its trap
    (the engine resumes from the stored PC) or outside ``emu_start``; elsewhere (a code
    hook, mid-block) use ``reg_write``, which also makes the engine leave the block."""
    lib = _raw_lib()
    read, write = lib.uc_reg_read, lib.uc_reg_write
    handle = ctypes.c_void_p(uc._uch.value)
    buf = ctypes.c_uint64()
    ref = ctypes.byref(buf)
    slow_read, slow_write = uc.reg_read, uc.reg_write
    select = type(uc)._select_reg_class
    plain: dict[int, bool] = {}

    def is_plain(rid: int) -> bool:
        known = plain.get(rid)
        if known is None:
            known = plain[rid] = select(rid) is ctypes.c_uint64
        return known

    slot: dict[int, int] = {}  # register id -> index in ``regfile``
    regfile: ctypes.Array | None = None
    layout = _file_layout(arch, mode) if arch in _FILE_REGS else None
    if layout is not None:
        word, offsets = layout
        regs, pc = _FILE_REGS[arch]
        base = _file_at(uc, word, offsets, (*regs, pc))
        if base is not None:
            lo = min(offsets)
            regfile = (ctypes.c_uint64 * ((max(offsets) - lo) // 8 + 1)).from_address(base + lo)
            slot = {rid: (off - lo) // 8 for rid, off in zip((*regs, pc), offsets, strict=True)}
    mirror: dict[int, ctypes.c_uint64] = {}  # read-only registers kept elsewhere in the CPU state
    exact: dict[int, tuple[ctypes.c_uint64, int]] = {}  # ... and registers some of whose bits are
    if regfile is not None:
        start = ctypes.addressof(regfile)
        for rid, settings, bits in _MIRRORED.get(arch, ()):
            offset = _mirror_offset(arch, mode, rid, settings)
            if offset is not None:
                word = ctypes.c_uint64.from_address(start + offset)
                if (word.value ^ slow_read(rid)) & bits == 0:
                    exact[rid] = (word, bits)
                    if bits == _ALL:
                        mirror[rid] = word
    written = {rid: i for rid, i in slot.items() if rid != _FILE_REGS.get(arch, ((), -1))[1]}
    pc_id = _FILE_REGS[arch][1] if arch in _FILE_REGS else None

    def reg_read(rid: int, aux: object = None) -> object:
        at = slot.get(rid)
        if at is not None and aux is None:
            return regfile[at]  # type: ignore[index]
        word = mirror.get(rid)
        if word is not None and aux is None:
            return word.value
        if aux is None and (plain.get(rid) or is_plain(rid)):
            buf.value = 0  # some registers fill fewer bytes (x86 selectors)
            err = read(handle, rid, ref)
            if err:
                raise UcError(err)
            return buf.value
        return slow_read(rid, aux)

    def reg_write(rid: int, value: object) -> None:
        at = written.get(rid)
        if at is not None and value.__class__ is int:
            regfile[at] = value & 0xFFFF_FFFF_FFFF_FFFF  # type: ignore[index]
            return
        if isinstance(value, int) and (plain.get(rid) or is_plain(rid)):
            buf.value = value & 0xFFFF_FFFF_FFFF_FFFF
            err = write(handle, rid, ref)
            if err:
                raise UcError(err)
            return
        slow_write(rid, value)

    if regfile is not None and pc_id is not None:
        pc_at = slot[pc_id]

        def write_pc(value: int) -> None:
            regfile[pc_at] = value & 0xFFFF_FFFF_FFFF_FFFF  # type: ignore[index]
    else:

        def write_pc(value: int) -> None:
            reg_write(pc_id, value)  # type: ignore[arg-type]

    uc.reg_read = reg_read  # type: ignore[method-assign]
    uc.reg_write = reg_write  # type: ignore[method-assign]
    uc.write_pc = write_pc  # type: ignore[attr-defined]
    #: register id -> (a word of the CPU state, the bits of the register it holds exactly)
    uc.exact_bits = exact  # type: ignore[attr-defined]
    #: (the register file, register id -> its index) for a trap hook's direct use, or None
    uc.direct_registers = (regfile, dict(slot)) if regfile is not None else None  # type: ignore[attr-defined]


_SMALL = 64  # reads up to this many bytes go through one preallocated buffer


def _fast_memory(uc: Uc) -> None:
    """Replace small ``mem_read``s and ``mem_write``s and ``ctl_remove_cache`` by direct
    libunicorn calls (probe hits read and write stack words, placing a probe reads and patches
    a few bytes)."""
    lib = _raw_lib()
    ctl = lib.uc_ctl
    # A private prototype that converts plain ints itself (no ctypes objects built per call).
    read = type(lib.uc_mem_read)(("uc_mem_read", lib))
    read.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t)
    read.restype = ctypes.c_int
    handle = uc._uch.value
    buf = ctypes.create_string_buffer(_SMALL)
    slow_read = uc.mem_read
    u64 = ctypes.c_uint64
    remove = (UC_CTL_IO_WRITE << 30) | (2 << 26) | UC_CTL_TB_REMOVE_CACHE  # a write, two arguments

    def mem_read(address: int, size: int) -> bytearray:
        if 0 < size <= _SMALL and 0 <= address <= 0xFFFF_FFFF_FFFF_FFFF:
            err = read(handle, address, buf, size)
            if err:
                raise UcError(err)
            return bytearray(buf[:size])
        return slow_read(address, size)

    write = type(lib.uc_mem_write)(("uc_mem_write", lib))
    write.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_int
    slow_write = uc.mem_write

    def mem_write(address: int, data: bytes) -> None:
        size = len(data)
        if 0 < size <= _SMALL and 0 <= address <= 0xFFFF_FFFF_FFFF_FFFF:
            err = write(handle, address, data if data.__class__ is bytes else bytes(data), size)
            if err:
                raise UcError(err)
            return
        slow_write(address, data)

    # uc_ctl is variadic: no argument types declared, the arguments passed as preallocated
    # ctypes objects (converting plain ints through declared types costs more than the call).
    remove_cache = type(ctl)(("uc_ctl", lib))
    remove_cache.restype = ctypes.c_int
    args = (ctypes.c_void_p(handle), ctypes.c_int(remove), u64(), u64())
    lo, hi = args[2], args[3]

    def ctl_remove_cache(lbound: int, ubound: int) -> None:
        lo.value, hi.value = lbound, ubound
        err = remove_cache(*args)
        if err:
            raise UcError(err)

    uc.mem_read = mem_read  # type: ignore[method-assign]
    uc.mem_write = mem_write  # type: ignore[method-assign]
    uc.ctl_remove_cache = ctl_remove_cache  # type: ignore[method-assign]


_DIRECT_TYPES = {
    UC_HOOK_INTR: ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p),
    UC_HOOK_INSN_INVALID: ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p),
}


def _hook_direct(uc: Uc, htype: int, fn: Callable[..., object], raw: bool = False) -> int:
    """Hook a trap with ``fn(intno)`` (INTR) or ``fn() -> handled`` (INSN_INVALID), called
    straight from libunicorn: no binding wrappers, engine or user-data arguments on the trap
    path. As with ``hook_add``, an exception stops the engine and ``emu_start`` raises it.

    ``raw``: an INTR hook ``fn(handle, intno, user_data)`` that libunicorn calls itself (one
    Python frame less a trap); it must catch every exception and pass it to
    ``uc.hook_failed(e)``, which does the same."""
    stop = uc.emu_stop

    def failed(e: BaseException) -> None:
        if uc._hook_exception is None:
            uc._hook_exception = e
        stop()

    uc.hook_failed = failed  # type: ignore[attr-defined]
    if raw:
        if htype != UC_HOOK_INTR:
            raise ValueError(f"no raw direct hook for hook type {htype}")
        cb = fn
    elif htype == UC_HOOK_INTR:

        def cb(handle: int, intno: int, ud: int) -> None:
            try:
                fn(intno)
            except BaseException as e:
                failed(e)

    elif htype == UC_HOOK_INSN_INVALID:

        def cb(handle: int, ud: int) -> bool:  # type: ignore[misc]
            try:
                return bool(fn())
            except BaseException as e:
                failed(e)
                return False

    else:
        raise ValueError(f"no direct hook for hook type {htype}")
    fptr = _DIRECT_TYPES[htype](cb)
    handle = ctypes.c_size_t()
    err = _raw_lib().uc_hook_add(
        ctypes.c_void_p(uc._uch.value), ctypes.byref(handle), ctypes.c_int(htype), fptr, None,
        ctypes.c_uint64(1), ctypes.c_uint64(0),
    )  # fmt: skip
    if err:
        raise UcError(err)
    uc._callbacks[handle.value] = fptr  # kept alive (and deleted) like the binding's own hooks
    return handle.value


__all__ = ["UcError", "new_unicorn", "counter_word", "error_offset"]
