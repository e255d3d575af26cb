"""Linux eBPF helper functions bound to a simulated machine.

A :class:`Runtime` holds what the helpers of one loaded object need: the machine (guest memory,
registers, symbols, virtual time), the object's maps and the VM memory its programs share, and
the probe hit being handled (:class:`Hit`).  :meth:`Runtime.helpers` is the helper table given
to the VM, so the verifier refuses any other helper id at load time.

Semantics follow Linux (``kernel/trace/bpf_trace.c``, ``kernel/bpf/helpers.c``):

- map values returned by ``bpf_map_lookup_elem`` are mapped into the VM memory *aliasing* the
  map's own storage (stores through the pointer update the map); they stay valid until the run
  ends, even after the element is deleted (as RCU keeps them in Linux);
- ``bpf_probe_read*`` read guest memory (or the VM's own memory, e.g. the program's stack); a
  fault returns ``-EFAULT`` with the destination zeroed, never a Python error;
- time is virtual: ``machine.now()``, one nanosecond per retired guest instruction;
- ``bpf_trace_printk`` parses the format like ``bpf_bprintf_prepare`` (``%d %i %u %x %X`` with
  ``l``/``ll``, ``%p %px %pK %pS %ps %pB %pks %pus %pI4 %pi4 %pI6 %pi6``, ``%s``, ``%c``,
  ``%%``, flags ``0+- `` and a width; at most 3 arguments) and emits an ftrace line;
  plain ``%p`` prints the raw pointer (no hashing: traces stay reproducible);
- ``bpf_get_stackid``/``bpf_get_stack`` walk the guest's frame-pointer chain (see
  :meth:`Runtime.stack`);
- ``bpf_override_return`` sets the return value and returns from the probed function at its
  entry (the pre-handler then reports "PC moved" so the probed instruction is not stepped).
"""

from __future__ import annotations

import errno
import random
import struct
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from unicorn import UcError

from kprobesim.task import CURRENT_SYMBOL, current_ids, current_task

from . import isa
from .errors import EbpfError, HelperError
from .helper_ids import NAMES
from .helpers_extra import ExtraHelpers
from .lookup import fast_lookup
from .maps import (
    BPF_F_SKIP_FIELD_MASK,
    BPF_F_USER_STACK,
    PERF_MAX_STACK_DEPTH,
    BpfMap,
    PerfEventArrayMap,
    RingBufMap,
    StackTraceMap,
)
from .maps_extra import BloomFilterMap, FdArrayMap, QueueStackMap
from .memory import Memory

if TYPE_CHECKING:
    from kprobesim.machine import Machine
    from kprobesim.probes.kprobe import Instance
    from kprobesim.probes.regs import Regs

    from .vm import VM

# Helper ids (enum bpf_func_id, include/uapi/linux/bpf.h)
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
PROBE_READ = 4
KTIME_GET_NS = 5
TRACE_PRINTK = 6
GET_PRANDOM_U32 = 7
GET_SMP_PROCESSOR_ID = 8
GET_CURRENT_PID_TGID = 14
GET_CURRENT_UID_GID = 15
GET_CURRENT_COMM = 16
PERF_EVENT_OUTPUT = 25
GET_STACKID = 27
GET_CURRENT_TASK = 35
GET_NUMA_NODE_ID = 42
PROBE_READ_STR = 45
OVERRIDE_RETURN = 58
GET_STACK = 67
PROBE_READ_USER = 112
PROBE_READ_KERNEL = 113
PROBE_READ_USER_STR = 114
PROBE_READ_KERNEL_STR = 115
JIFFIES64 = 118
KTIME_GET_BOOT_NS = 125
RINGBUF_OUTPUT = 130
RINGBUF_RESERVE = 131
RINGBUF_SUBMIT = 132
RINGBUF_DISCARD = 133
RINGBUF_QUERY = 134
GET_CURRENT_TASK_BTF = 158
GET_FUNC_ARG, GET_FUNC_RET, GET_FUNC_ARG_CNT = 183, 184, 185
KTIME_GET_COARSE_NS = 160
GET_FUNC_IP = 173
GET_ATTACH_COOKIE = 174
TRACE_VPRINTK = 177
TAIL_CALL = 12
CURRENT_TASK_UNDER_CGROUP = 37
MAP_PUSH_ELEM = 87
MAP_POP_ELEM = 88
MAP_PEEK_ELEM = 89
FOR_EACH_MAP_ELEM = 164
SNPRINTF = 165
LOOP = 181
STRNCMP = 182

HELPER_NAMES: dict[int, str] = {i + 1: n for i, n in enumerate(NAMES)}

#: Argument registers each helper dereferences (reads or writes memory through); the others are
#: values, map handles, or the context used only to find the live registers.
HELPER_MEMORY_ARGS: dict[int, frozenset[int]] = {
    MAP_LOOKUP_ELEM: frozenset({2}), MAP_UPDATE_ELEM: frozenset({2, 3}),
    MAP_DELETE_ELEM: frozenset({2}), PROBE_READ: frozenset({1, 3}),
    PROBE_READ_KERNEL: frozenset({1, 3}), PROBE_READ_USER: frozenset({1, 3}),
    PROBE_READ_STR: frozenset({1, 3}), PROBE_READ_KERNEL_STR: frozenset({1, 3}),
    PROBE_READ_USER_STR: frozenset({1, 3}), TRACE_PRINTK: frozenset({1, 3, 4, 5}),
    TRACE_VPRINTK: frozenset({1, 3}), GET_CURRENT_COMM: frozenset({1}),
    PERF_EVENT_OUTPUT: frozenset({4}), GET_STACK: frozenset({2}), RINGBUF_OUTPUT: frozenset({2}),
    RINGBUF_SUBMIT: frozenset({1}), RINGBUF_DISCARD: frozenset({1}), MAP_PUSH_ELEM: frozenset({2}),
    MAP_POP_ELEM: frozenset({2}), MAP_PEEK_ELEM: frozenset({2}), SNPRINTF: frozenset({1, 3, 4}),
    STRNCMP: frozenset({1, 3}),
    **{h: frozenset() for h in (KTIME_GET_NS, GET_PRANDOM_U32, GET_SMP_PROCESSOR_ID,
                                GET_CURRENT_PID_TGID, GET_CURRENT_UID_GID, GET_STACKID,
                                GET_CURRENT_TASK, GET_NUMA_NODE_ID, OVERRIDE_RETURN, JIFFIES64,
                                KTIME_GET_BOOT_NS, RINGBUF_RESERVE, RINGBUF_QUERY,
                                GET_CURRENT_TASK_BTF, KTIME_GET_COARSE_NS, GET_FUNC_IP,
                                GET_ATTACH_COOKIE, CURRENT_TASK_UNDER_CGROUP)},
}  # fmt: skip
MAX_BPRINTF_BUF = 512  # Linux: the formatted message, NUL included
MAX_TRACE_PRINTK_VARARGS = 3
MAX_BPRINTF_VARARGS = 12
PRANDOM_SEED = 0x6B70726F62657369  # "kprobesi"
#: struct task fields of the bundled firmware used for user stacks (flags, kstack_top).
TASK_FLAGS_OFFSET = 28
TASK_KSTACK_TOP_OFFSET = 40
TASK_FLAG_USER = 2
_PAGE = 0x1000
#: Maps whose elements programs cannot look up, update or delete by key.
_NO_KEYED_OPS = (QueueStackMap, BloomFilterMap, FdArrayMap)
#: Map classes that took keyed operations (``_map`` accepted one): checked once per class.
_KEYED_MAP_CLASSES: set[type] = set()
_M64 = isa.MASK64


class Output(Protocol):
    """Where helpers send what they print (implemented by :mod:`kprobesim.ebpf.output`)."""

    def printk(self, msg: str) -> None: ...

    def record(self, kind: str, m: BpfMap, data: bytes) -> None: ...


@dataclass(eq=False)
class Hit:
    """The probe hit a program runs for.

    ``kind``: ``kprobe`` or ``kretprobe``; ``ip``: the context's IP (the probe address, or the
    return address for a kretprobe); ``func_ip``: the probe address; ``entry``: the probe sits on
    the first instruction of a function (its frame is not set up yet).
    """

    regs: Regs
    kind: str
    ip: int
    func_ip: int
    entry: bool
    overridden: bool = False


_RNGS: weakref.WeakKeyDictionary[Any, random.Random] = weakref.WeakKeyDictionary()


def prandom(machine: Machine) -> random.Random:
    """The machine's deterministic generator for ``bpf_get_prandom_u32`` (one per machine)."""
    rng = _RNGS.get(machine)
    if rng is None:
        rng = _RNGS[machine] = random.Random(PRANDOM_SEED)
    return rng


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


class Runtime(ExtraHelpers):
    """The helpers of one loaded object, bound to its machine, maps and shared VM memory."""

    def __init__(self, machine: Machine, memory: Memory, maps: Sequence[BpfMap], out: Output) -> None:
        self.m = machine
        self.memory = memory
        self.maps = list(maps)
        self.out = out
        self.spec: Any = machine.arch.module("regs")
        self.hit: Hit | None = None
        self._handles: dict[int, BpfMap] = {}
        self._map_addr: dict[int, int] = {}
        self._lookups: dict[int, Callable[..., int]] = {}  # map address -> its bound lookup
        self.reserved: dict[int, tuple[RingBufMap, int]] = {}  # ring buffer records this run holds
        self.unsubmitted = 0  # ring buffer records a run left reserved (discarded at its end)
        self.tail_calls = 0  # tail calls made by the current run
        self.rng = prandom(machine)
        memory.guest_read = self._guest_read  # loads through BTF-typed pointers
        # Frame layout: return address and caller's frame pointer relative to the frame pointer.
        # With a link register (riscv, loongarch): ra at fp-8, previous fp at fp-16; with the
        # return address on the stack (x86_64): return address at rbp+8, previous rbp at rbp.
        self._has_ra = self.spec.RA_REG is not None
        self._frame = (-8, -16) if self._has_ra else (8, 0)
        self._current_addr: int | None = None  # of the firmware's current_task (0: none)

    # -- load time ----------------------------------------------------------------------------
    def helpers(self) -> dict[int, Callable[..., int]]:
        """Helper id -> implementation (every id the verifier accepts)."""
        return {
            MAP_LOOKUP_ELEM: self.map_lookup_elem,
            MAP_UPDATE_ELEM: self.map_update_elem,
            MAP_DELETE_ELEM: self.map_delete_elem,
            PROBE_READ: self.probe_read,
            PROBE_READ_KERNEL: self.probe_read,
            PROBE_READ_USER: self.probe_read,
            PROBE_READ_STR: self.probe_read_str,
            PROBE_READ_KERNEL_STR: self.probe_read_str,
            PROBE_READ_USER_STR: self.probe_read_str,
            KTIME_GET_NS: self.ktime_get_ns,
            KTIME_GET_BOOT_NS: self.ktime_get_ns,
            KTIME_GET_COARSE_NS: self.ktime_get_ns,
            JIFFIES64: self.jiffies64,
            TRACE_PRINTK: self.trace_printk,
            TRACE_VPRINTK: self.trace_vprintk,
            GET_PRANDOM_U32: self.get_prandom_u32,
            GET_SMP_PROCESSOR_ID: self.zero,
            GET_NUMA_NODE_ID: self.zero,
            GET_CURRENT_UID_GID: self.zero,
            GET_ATTACH_COOKIE: self.zero,
            GET_CURRENT_PID_TGID: self.get_current_pid_tgid,
            GET_CURRENT_COMM: self.get_current_comm,
            GET_CURRENT_TASK: self.get_current_task,
            GET_CURRENT_TASK_BTF: self.get_current_task,
            PERF_EVENT_OUTPUT: self.perf_event_output,
            GET_STACKID: self.get_stackid,
            GET_STACK: self.get_stack,
            GET_FUNC_IP: self.get_func_ip,
            OVERRIDE_RETURN: self.override_return,
            RINGBUF_OUTPUT: self.ringbuf_output,
            RINGBUF_RESERVE: self.ringbuf_reserve,
            RINGBUF_SUBMIT: self.ringbuf_submit,
            RINGBUF_DISCARD: self.ringbuf_discard,
            RINGBUF_QUERY: self.ringbuf_query,
            TAIL_CALL: self.tail_call,
            LOOP: self.loop,
            FOR_EACH_MAP_ELEM: self.for_each_map_elem,
            MAP_PUSH_ELEM: self.map_push_elem,
            MAP_POP_ELEM: self.map_pop_elem,
            MAP_PEEK_ELEM: self.map_peek_elem,
            SNPRINTF: self.snprintf,
            STRNCMP: self.strncmp,
            CURRENT_TASK_UNDER_CGROUP: self.current_task_under_cgroup,
            GET_FUNC_ARG: self.get_func_arg,
            GET_FUNC_RET: self.get_func_ret,
            GET_FUNC_ARG_CNT: self.get_func_arg_cnt,
        }

    # -- fentry/fexit: the context holds the arguments (vm.data["tracing"]: .nargs, .kind) -------
    def get_func_arg(self, vm: VM, r1: int, r2: int, r3: int, *_: int) -> int:
        tr = vm.data["tracing"]
        if r2 & 0xFFFF_FFFF >= tr.nargs:
            return -errno.EINVAL
        self.memory.write(r3, 8, self.memory.read(r1 + 8 * (r2 & 0xFFFF_FFFF), 8))
        return 0

    def get_func_ret(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        tr = vm.data["tracing"]
        if tr.kind != "fexit":
            return -errno.EOPNOTSUPP  # what Linux's inlined helper gives an fentry program
        self.memory.write(r2, 8, self.memory.read(r1 + 8 * tr.nargs, 8))
        return 0

    def get_func_arg_cnt(self, vm: VM, *_: int) -> int:
        return vm.data["tracing"].nargs

    def map_handle(self, index: int) -> int:
        """The address a program holds for map ``index`` (an empty, unreadable region)."""
        addr = self._map_addr.get(index)
        if addr is None:
            if not 0 <= index < len(self.maps):
                raise EbpfError(f"no map with index {index}")
            m = self.maps[index]
            addr = self.memory.map_region(b"", False, f"map {m.name}", key=("map", index))
            self._map_addr[index] = addr
            self._handles[addr] = m
            fast = fast_lookup(self.memory, m)
            if fast is not None:
                self._lookups[addr] = fast
        return addr

    def binders(self) -> dict[int, Callable[[int], Callable[..., int] | None]]:
        """Helper id -> ``bind(r1)``: the helper specialised for calls whose r1 is known at
        load (a map's address), or None (the translator then calls the generic one)."""
        return {MAP_LOOKUP_ELEM: self._lookups.get}

    def map_value(self, index: int, offset: int) -> int:
        """The address of byte ``offset`` of a global-data map's value (``.rodata``/``.data``)."""
        if not 0 <= index < len(self.maps):
            raise EbpfError(f"no map with index {index}")
        m = self.maps[index]
        buf = m.lookup(b"\0\0\0\0")
        if buf is None:
            raise EbpfError(f"map {m.name!r} has no value to address")
        if not 0 <= offset <= len(buf):
            raise EbpfError(f"offset {offset} outside the value of {m.name!r}")
        return self.memory.map_region(buf, not m.rdonly_prog, m.name, key=("value", index)) + offset

    def resolve(self, vm: VM, src: int, imm: int, next_imm: int) -> int:
        """The VM's ``lddw`` resolver: map references and global-data addresses."""
        if src in (isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_IDX):
            return self.map_handle(imm)
        if src in (isa.PSEUDO_MAP_VALUE, isa.PSEUDO_MAP_IDX_VALUE):
            return self.map_value(imm, next_imm)
        raise EbpfError(f"unsupported lddw source {isa.PSEUDO_NAMES.get(src, src)}")

    # -- run bracket ----------------------------------------------------------------------------
    def end_run(self) -> int:
        """After a run: discard records it left reserved; returns how many there were."""
        if not self.reserved:  # the usual case
            self.hit = None
            self.tail_calls = 0
            return 0
        left = len(self.reserved)
        for m, pos in self.reserved.values():
            m.discard(pos)
            self.out_ringbuf(m)
        self.reserved.clear()
        self.unsubmitted += left
        self.hit = None
        self.tail_calls = 0
        return left

    # -- plumbing -------------------------------------------------------------------------------
    def _map(self, addr: int, hid: int, kinds: tuple[type, ...] | None = None, reg: int = 1) -> BpfMap:
        m = self._handles.get(addr)
        if m is None:
            raise HelperError(f"{HELPER_NAMES[hid]}: r{reg} ({addr:#x}) is not a map")
        if kinds is not None and not isinstance(m, kinds):
            raise HelperError(f"{HELPER_NAMES[hid]}: map {m.name!r} is a {m.type_name} map")
        if kinds is None and isinstance(m, _NO_KEYED_OPS):  # Linux's verifier refuses these
            raise HelperError(f"cannot pass map_type {m.map_type} ({m.type_name} {m.name!r}) into func "
                              f"bpf_{HELPER_NAMES[hid]}#{hid}")
        return m

    def _hit(self, hid: int) -> Hit:
        if self.hit is None:
            raise HelperError(f"{HELPER_NAMES[hid]} called outside a probe hit")
        return self.hit

    def read_any(self, addr: int, n: int) -> bytes | None:
        """``n`` bytes at ``addr``: VM memory if a region is there, else guest memory; None on fault."""
        addr &= _M64
        if n <= 0:
            return b""
        region = self.memory.region_at(addr)
        if region is not None:
            off = addr & 0xFFFF_FFFF
            return bytes(region.buf[off : off + n]) if off + n <= region.size else None
        try:
            return self.m.read(addr, n)
        except (UcError, OverflowError, ValueError):
            return None

    def _guest_read(self, addr: int, n: int) -> bytes | None:
        """``n`` bytes of guest memory at ``addr`` (through the guest's page tables); None on a fault."""
        try:
            return self.m.read(addr, n)
        except (UcError, OverflowError, ValueError):
            return None

    def read_str_any(self, addr: int, max_len: int) -> bytes | None:
        """A NUL-terminated string (without its NUL) of at most ``max_len`` bytes; None on fault."""
        addr &= _M64
        out = bytearray()
        while len(out) < max_len:
            chunk_len = min(max_len - len(out), _PAGE - ((addr + len(out)) & (_PAGE - 1)))
            chunk = self.read_any(addr + len(out), chunk_len)
            if chunk is None:
                # a region of VM memory may end inside the page: retry byte by byte there
                b = self.read_any(addr + len(out), 1)
                if b is None:
                    return None
                chunk = b
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                return bytes(out)
            out += chunk
        return bytes(out)

    def _write_ptr(self, addr: int, size: int) -> memoryview:
        """A writable view on ``size`` bytes the program passed (faults like a store)."""
        return self.memory.view(addr, size, writable=True)

    # -- maps -----------------------------------------------------------------------------------
    def map_lookup_elem(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        fast = self._lookups.get(r1)
        if fast is not None:  # an array or hash map: its own lookup (the same regions)
            return fast(vm, r1, r2, r3, r4, r5)
        return self.lookup_generic(r1, r2)

    def lookup_generic(self, r1: int, r2: int) -> int:
        """``map_lookup_elem`` for any map (what :mod:`.lookup`'s bound lookups must equal)."""
        m = self._handles.get(r1)
        if m is None or m.__class__ not in _KEYED_MAP_CLASSES:  # the checks, and their errors
            m = self._map(r1, MAP_LOOKUP_ELEM)
            _KEYED_MAP_CLASSES.add(m.__class__)
        region = self.memory.readable.get(r2 >> 32)  # the key, usually on the program's stack
        off = r2 & 0xFFFF_FFFF
        if region is not None and off + m.key_size <= region.size:
            key = bytes(region.buf[off : off + m.key_size])
        else:
            key = self.memory.read_bytes(r2, m.key_size)
        buf = m.lookup(key)
        if buf is None:
            return 0
        mem = self.memory
        ukey = ("elem", id(m), key)
        old = mem._by_user_key.get(ukey)
        if old is not None and old.buf is buf and old.temporary and mem.readable.get(old.key) is None \
                and old.writable == (not m.rdonly_prog):  # parked by the last run: map it again, in short
            mem.readable[old.key] = old
            if old.writable:
                mem.writable[old.key] = old
            mem._temporary.append(old)
            return old.base
        return mem.map_region(buf, not m.rdonly_prog, f"{m.name} value", key=ukey, temporary=True)

    def map_update_elem(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, MAP_UPDATE_ELEM)
        if m.rdonly_prog:
            return -errno.EPERM
        key = self.memory.read_bytes(r2, m.key_size)
        value = self.memory.read_bytes(r3, m.value_size)
        return m.update(key, value, r4)

    def map_delete_elem(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, MAP_DELETE_ELEM)
        key = self.memory.read_bytes(r2, m.key_size)
        return m.delete(key)

    # -- memory ---------------------------------------------------------------------------------
    def probe_read(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        size = r2 & 0xFFFF_FFFF
        if size == 0:
            return 0
        dst = self._write_ptr(r1, size)
        data = self.read_any(r3, size)
        if data is None:
            dst[:] = bytes(size)
            return -errno.EFAULT
        dst[:] = data
        return 0

    def probe_read_str(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        size = r2 & 0xFFFF_FFFF
        if size == 0:
            return 0
        dst = self._write_ptr(r1, size)
        s = self.read_str_any(r3, size - 1)
        if s is None:
            dst[:] = bytes(size)
            return -errno.EFAULT
        dst[: len(s) + 1] = s + b"\0"
        return len(s) + 1

    # -- time, ids, task ------------------------------------------------------------------------
    def ktime_get_ns(self, vm: VM, *_: int) -> int:
        return self.m.now()

    def jiffies64(self, vm: VM, *_: int) -> int:
        image = self.m.image
        if not image.has_symbol("jiffies"):
            return 0
        data = self.read_any(image.symbol("jiffies").addr, 8)
        return int.from_bytes(data, "little") if data else 0

    def zero(self, vm: VM, *_: int) -> int:
        return 0

    def get_prandom_u32(self, vm: VM, *_: int) -> int:
        return self.rng.getrandbits(32)

    def get_current_pid_tgid(self, vm: VM, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0) -> int:
        m = self.m
        if m.task_source is None:  # the firmware's layout: the two reads of current_ids, in one call
            cur = self._current_addr
            if cur is None:
                sym = m.image.find_symbol(CURRENT_SYMBOL)
                cur = self._current_addr = sym.addr if sym is not None else 0
            if not cur:
                return 0
            try:
                # u32 pid at 0, u32 tgid at 4: read as one little-endian u64, tgid << 32 | pid
                return m.read_u64_at(cur)
            except UcError:
                return 0
        _, pid, tgid = current_ids(m)
        return (tgid << 32) | pid

    def get_current_task(self, vm: VM, *_: int) -> int:
        return current_ids(self.m)[0]

    def get_current_comm(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        size = r2 & 0xFFFF_FFFF
        if size == 0:
            return -errno.EINVAL
        dst = self._write_ptr(r1, size)
        t = current_task(self.m)
        comm = t.comm.encode("ascii", "replace")[: size - 1] if t.addr else b""
        dst[:] = comm + bytes(size - len(comm))
        return 0

    # -- printing -------------------------------------------------------------------------------
    def _printk(self, fmt_addr: int, fmt_size: int, args: Sequence[int], max_args: int) -> int:
        fmt = self.memory.read_bytes(fmt_addr, fmt_size & 0xFFFF_FFFF)
        nul = fmt.find(b"\0")
        if nul < 0:
            return -errno.EINVAL
        try:
            msg = bprintf(fmt[:nul], args[:max_args], self.read_str_any, self.symbolize, self.read_any)
        except ValueError:
            return -errno.EINVAL
        self.out.printk(msg)
        return len(msg.encode("latin-1", "replace"))

    def trace_printk(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        return self._printk(r1, r2, (r3, r4, r5), MAX_TRACE_PRINTK_VARARGS)

    def trace_vprintk(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        n = r4 & 0xFFFF_FFFF
        if n % 8 or n > 8 * MAX_BPRINTF_VARARGS or (n and not r3):
            return -errno.EINVAL
        raw = self.memory.read_bytes(r3, n) if n else b""
        return self._printk(r1, r2, struct.unpack(f"<{n // 8}Q", raw), n // 8)

    def symbolize(self, addr: int, with_offset: bool) -> str:
        """``sym+0xoff/0xsize`` (``%pS``) or ``sym`` (``%ps``); the hex address if unknown."""
        found = self.m.image.lookup(addr)
        if found is None:
            return f"{addr:#x}"
        sym, off = found
        return f"{sym.name}+{off:#x}/{sym.size:#x}" if with_offset else sym.name

    # -- output maps ----------------------------------------------------------------------------
    def perf_event_output(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r2, PERF_EVENT_OUTPUT, (PerfEventArrayMap,))
        data = self.memory.read_bytes(r4, r5 & 0xFFFF_FFFF)
        rc = m.output(0, data, r3)  # type: ignore[attr-defined]
        if rc == 0:
            for rec in m.drain():  # type: ignore[attr-defined]
                self.out.record("bpf_perf_output", m, rec)
        return rc

    def out_ringbuf(self, m: RingBufMap) -> None:
        for rec in m.drain():
            self.out.record("bpf_ringbuf", m, rec)

    def ringbuf_output(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, RINGBUF_OUTPUT, (RingBufMap,))
        data = self.memory.read_bytes(r2, r3 & 0xFFFF_FFFF)
        rc = m.output(data, r4)  # type: ignore[attr-defined]
        self.out_ringbuf(m)  # type: ignore[arg-type]
        return rc

    def ringbuf_reserve(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r1, RINGBUF_RESERVE, (RingBufMap,))
        got = m.reserve(r2, r3)  # type: ignore[attr-defined]
        if got is None:
            return 0
        pos, buf = got
        addr = self.memory.map_region(buf, True, f"{m.name} record", temporary=True)
        self.reserved[addr] = (m, pos)  # type: ignore[assignment]
        return addr

    def _commit(self, hid: int, addr: int, discard: bool) -> int:
        got = self.reserved.pop(addr & _M64, None)
        if got is None:
            raise HelperError(f"{HELPER_NAMES[hid]}: {addr:#x} is not a reserved ring buffer record")
        m, pos = got
        if discard:
            m.discard(pos)
        else:
            m.submit(pos)
        self.memory.unmap(addr)
        self.out_ringbuf(m)
        return 0

    def ringbuf_submit(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        return self._commit(RINGBUF_SUBMIT, r1, False)

    def ringbuf_discard(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        return self._commit(RINGBUF_DISCARD, r1, True)

    def ringbuf_query(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        m = self._map(r1, RINGBUF_QUERY, (RingBufMap,))
        return m.query(r2)  # type: ignore[attr-defined]

    # -- stacks, probe context ------------------------------------------------------------------
    def get_func_ip(self, vm: VM, *_: int) -> int:
        return self._hit(GET_FUNC_IP).func_ip

    def override_return(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        """Set the return value and return from the probed function (a kprobe at its entry)."""
        hit = self._hit(OVERRIDE_RETURN)
        if hit.kind != "kprobe" or not hit.entry:
            raise HelperError("override_return needs a kprobe at a function's entry")
        regs = hit.regs
        regs.retval = r2
        if not hit.overridden:
            if self._has_ra:
                regs.pc = regs[self.spec.RA_REG]
            else:
                sp = regs.sp
                regs.pc = int.from_bytes(regs.read_mem(sp, 8), "little")
                regs[self.spec.SP_REG] = sp + 8
            hit.overridden = True
        return 0

    def _text(self, addr: int) -> bool:
        found = self.m.image.lookup(addr)
        return found is not None and found[0].is_func

    def _word(self, addr: int) -> int | None:
        data = self.read_any(addr, 8)
        return None if data is None or len(data) < 8 else int.from_bytes(data, "little")

    def _trampoline_target(self, ret: int, frame_sp: int) -> int:
        """A return address a kretprobe replaced with its trampoline, put back (as Linux's
        unwinder does). Kretprobes stacked on one function chain through the trampoline: the
        oldest instance of the frame holds the real address."""
        registry = self.m.probes
        trampoline = registry.trampoline
        if trampoline is None or ret != trampoline:
            return ret
        for inst in reversed(registry.instances):
            if inst.return_sp == frame_sp and inst.ret_addr != trampoline:
                return inst.ret_addr
        return ret

    def return_address(self, inst: Instance) -> int:
        """Where a kretprobe's function really returns to (Linux's ``correct_ret_addr``)."""
        return self._trampoline_target(inst.ret_addr, inst.return_sp)

    def _walk(self, ips: list[int], fp: int, limit: int) -> None:
        ra_off, fp_off = self._frame
        while len(ips) < limit and fp and not fp & 7:
            ret = self._word(fp + ra_off)
            prev = self._word(fp + fp_off)
            if ret is None or prev is None:
                return
            # the stack pointer the frame's function returns with (a kretprobe instance's key)
            ret = self._trampoline_target(ret, fp if self._has_ra else fp + 16)
            if not ret or not self._text(ret):
                return
            ips.append(ret)
            if prev <= fp:
                return  # callers' frames lie at higher addresses: anything else is a loop
            fp = prev

    def _user_regs(self) -> tuple[int, int] | None:
        """(pc, fp) saved at the kernel-stack top of the current task, if it is a user task."""
        task = current_task(self.m)
        if not task.addr:
            return None
        flags = self.read_any(task.addr + TASK_FLAGS_OFFSET, 4)
        top = self._word(task.addr + TASK_KSTACK_TOP_OFFSET)
        if not flags or top is None or not int.from_bytes(flags, "little") & TASK_FLAG_USER:
            return None
        frame = self.read_any(top - self.spec.PT_REGS_SIZE, self.spec.PT_REGS_SIZE)
        if frame is None:
            return None
        offs = self.spec.PT_REGS_OFFSETS
        pc = int.from_bytes(frame[offs[self.spec.PC_REG] :][:8], "little")
        fp = int.from_bytes(frame[offs[self.spec.FP_REG] :][:8], "little")
        return pc, fp

    def stack(self, flags: int, limit: int = PERF_MAX_STACK_DEPTH) -> list[int] | None:
        """Instruction pointers from the probe outwards, or None (no user context).

        Kernel stacks start with the context's IP (the probe address; a kretprobe's return
        address), then, for a probe on a function's first instruction whose frame does not exist
        yet, the return address (``ra``, or ``[sp]`` on x86_64); then the frame-pointer chain.
        ``BPF_F_USER_STACK`` walks the user registers the current task saved at its kernel-stack
        top when it entered the kernel (a user task of the bundled firmware; none for kthreads).
        The walk stops at an unreadable or zero frame, a return address outside the image's
        functions, or a frame pointer that does not grow. Kretprobe trampolines are resolved.
        """
        hit = self._hit(GET_STACKID)
        limit += flags & BPF_F_SKIP_FIELD_MASK
        if flags & BPF_F_USER_STACK:
            user = self._user_regs()
            if user is None:
                return None
            pc, fp = user
            ips = [pc]
        else:
            regs = hit.regs
            ips = [hit.ip]
            fp = regs[self.spec.FP_REG]
            if hit.entry and hit.kind == "kprobe":
                if self._has_ra:
                    ret = regs[self.spec.RA_REG]
                    ret = self._trampoline_target(ret, regs.sp)
                else:
                    ret = self._word(regs.sp) or 0
                    ret = self._trampoline_target(ret, regs.sp + 8)
                if self._text(ret):
                    ips.append(ret)
        self._walk(ips, fp, limit)
        return ips[:limit]

    def get_stackid(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r2, GET_STACKID, (StackTraceMap,))
        ips = self.stack(r3)
        if ips is None:
            return -errno.EFAULT
        return m.get_stackid(ips, r3)  # type: ignore[attr-defined]

    def get_stack(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        """``bpf_get_stack(ctx, buf, size, flags)``: bytes of instruction pointers written."""
        size = r3 & 0xFFFF_FFFF
        if size == 0:
            return -errno.EINVAL
        dst = self._write_ptr(r2, size)
        dst[:] = bytes(size)
        if size % 8 or r4 & ~(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK):
            return -errno.EINVAL
        ips = self.stack(r4)
        if ips is None:
            return -errno.EFAULT
        ips = ips[r4 & BPF_F_SKIP_FIELD_MASK :][: size // 8]
        dst[: 8 * len(ips)] = struct.pack(f"<{len(ips)}Q", *ips)
        return 8 * len(ips)


# ----------------------------------------------------------------------------------------------
# bpf_trace_printk formatting
# ----------------------------------------------------------------------------------------------

_PRINTABLE = frozenset(range(0x20, 0x7F)) | frozenset(b" \t\n\v\f\r")
_PUNCT = frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_SPACE = frozenset(b" \t\n\v\f\r")


def _pad(text: str, flags: str, width: int, numeric: bool = False) -> str:
    if len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if numeric and "0" in flags:
        sign = text[0] if text[:1] in ("-", "+", " ") else ""
        return sign + text[len(sign) :].rjust(width - len(sign), "0")
    return text.rjust(width)


def _ip4(raw: bytes, leading_zeros: bool) -> str:
    return ".".join(f"{b:03d}" if leading_zeros else str(b) for b in raw)


def _ip6(raw: bytes, colons: bool) -> str:
    words = [raw[i : i + 2].hex() for i in range(0, 16, 2)]
    return ":".join(words) if colons else "".join(words)

# Linux's vsprintf keeps a field width in 24 signed bits (FIELD_WIDTH_MAX); a wider one is an error.
FIELD_WIDTH_MAX = (1 << 23) - 1


def bprintf(
    fmt: bytes,
    args: Sequence[int],
    read_str: Callable[[int, int], bytes | None],
    symbolize: Callable[[int, bool], str],
    read_bytes: Callable[[int, int], bytes | None] | None = None,
) -> str:
    """Format like Linux's ``bpf_trace_printk``; ValueError where Linux returns -EINVAL.

    ``fmt`` is the format without its NUL; ``args`` the u64 arguments available;
    ``read_str(addr, max_len)`` reads a string (None on a fault: printed empty, as Linux does);
    ``symbolize(addr, with_offset)`` renders ``%pS``/``%ps``; ``read_bytes(addr, n)`` reads the
    addresses ``%pI4``/``%pI6`` point at.
    """
    out: list[str] = []
    used = 0
    i, n = 0, len(fmt)

    def at(j: int) -> int:
        return fmt[j] if j < n else 0

    while i < n:
        c = fmt[i]
        if c not in _PRINTABLE:
            raise ValueError(f"non-printable character {c:#x} in the format")
        if c != 0x25:  # '%'
            out.append(chr(c))
            i += 1
            continue
        if at(i + 1) == 0x25:
            out.append("%")
            i += 2
            continue
        if used >= len(args):
            raise ValueError("more conversions than arguments")
        arg = args[used] & _M64
        used += 1
        i += 1
        start = i
        while at(i) in b"0+- " and at(i):
            i += 1
        flags = fmt[start:i].decode()
        width = 0
        if 0x31 <= at(i) <= 0x39:
            j = i
            while 0x30 <= at(i) <= 0x39:
                i += 1
            if i - j > 7 or int(fmt[j:i]) > FIELD_WIDTH_MAX:
                raise ValueError(f"field width {fmt[j:i].decode()} is larger than {FIELD_WIDTH_MAX}")
            # The message never exceeds the buffer: padding past it would only be cut off again.
            width = min(int(fmt[j:i]), MAX_BPRINTF_BUF)
        conv = at(i)
        if conv == ord("p"):
            nxt = at(i + 1)
            if nxt in (ord("k"), ord("u")) and at(i + 2) == ord("s"):
                s = read_str(arg, MAX_BPRINTF_BUF - 1)
                out.append(_pad((s or b"").decode("latin-1"), flags, width))
                i += 3
                continue
            if nxt in (ord("S"), ord("B")):
                out.append(_pad(symbolize(arg, True), flags, width))
                i += 2
                continue
            if nxt == ord("s"):
                out.append(_pad(symbolize(arg, False), flags, width))
                i += 2
                continue
            if nxt in (ord("i"), ord("I")) and at(i + 2) in (ord("4"), ord("6")):
                v4 = at(i + 2) == ord("4")
                raw = read_bytes(arg, 4 if v4 else 16) if read_bytes else None
                if raw is None:
                    text = ""
                else:
                    text = _ip4(raw, nxt == ord("i")) if v4 else _ip6(raw, nxt == ord("I"))
                out.append(_pad(text, flags, width))
                i += 3
                continue
            if nxt == 0 or nxt in _SPACE or nxt in _PUNCT or nxt in (ord("K"), ord("x")):
                # plain, %pK and %px: the raw pointer as 16 hex digits (no hashing)
                out.append(_pad(f"{arg:016x}", flags, width))
                i += 2 if nxt in (ord("K"), ord("x")) else 1
                continue
            raise ValueError("unsupported %p modifier")
        if conv == ord("s"):
            s = read_str(arg, MAX_BPRINTF_BUF - 1)
            out.append(_pad((s or b"").decode("latin-1"), flags, width))
            i += 1
            continue
        if conv == ord("c"):
            out.append(_pad(chr(arg & 0xFF), flags, width))
            i += 1
            continue
        bits = 32
        if conv == ord("l"):
            bits = 64
            i += 1
            if at(i) == ord("l"):
                i += 1
        conv = at(i)
        if conv in (ord("d"), ord("i")):
            v = _signed(arg, bits)
            sign = "+" if "+" in flags else (" " if " " in flags else "-")
            text = format(v, sign + "d")
        elif conv == ord("u"):
            text = str(arg & ((1 << bits) - 1))
        elif conv in (ord("x"), ord("X")):
            text = format(arg & ((1 << bits) - 1), "x" if conv == ord("x") else "X")
        else:
            raise ValueError("unsupported conversion")
        out.append(_pad(text, flags, width, numeric=True))
        i += 1
    msg = "".join(out)
    return msg[: MAX_BPRINTF_BUF - 1]
