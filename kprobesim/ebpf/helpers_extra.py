"""Helpers for control flow, special maps and strings (mixed into :class:`.helpers.Runtime`).

Semantics follow Linux (``kernel/bpf/helpers.c``, ``bpf_iter.c``, ``queue_stack_maps.c``,
``bloom_filter.c``, ``arraymap.c``):

- ``bpf_loop(nr, cb, ctx, flags)`` calls ``cb(i, ctx)`` for i = 0.. until it returns non-zero;
  returns the number of calls (-EINVAL for flags, -E2BIG past 2^23 iterations);
- ``bpf_for_each_map_elem(map, cb, ctx, flags)`` calls ``cb(map, &key, &value, ctx)`` on each
  element of a hash or array map (the value aliases the map's storage) until it returns
  non-zero; returns the number of calls;
- ``bpf_tail_call(ctx, prog_array, index)`` ends the program and runs the one in the slot with
  the same context; an empty or out-of-range slot, or more than 33 tail calls in one run, make
  it return (Linux leaves r0 unreadable then; here it is -ENOENT) and the program goes on;
- ``bpf_map_push_elem``/``pop``/``peek`` on queues, stacks and bloom filters;
- ``bpf_snprintf`` formats like ``bpf_trace_printk`` (up to 12 arguments from an array) into a
  buffer, truncated and NUL-terminated, and returns the length the whole text needs, NUL included;
- ``bpf_strncmp(s1, n, s2)`` compares like the kernel's ``strncmp`` (-1, 0 or 1);
- ``bpf_current_task_under_cgroup(map, i)``: the machine has no cgroups, so a slot is never
  filled: -E2BIG past the array, -EAGAIN otherwise.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import HelperError, TailCall
from .maps import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_HASH,
    BPF_MAP_TYPE_LRU_HASH,
    BPF_MAP_TYPE_LRU_PERCPU_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_MAP_TYPE_PERCPU_HASH,
    BpfMap,
)
from .maps_extra import BloomFilterMap, CgroupArrayMap, ProgArrayMap, QueueStackMap

if TYPE_CHECKING:
    from .memory import Memory
    from .vm import VM

Invoke = Callable[..., int]

BPF_MAX_LOOPS = 1 << 23
MAX_TAIL_CALL_CNT = 33
_ITERABLE = (BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
             BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH)


class ExtraHelpers:
    """The helpers of this module; expects :class:`.helpers.Runtime`'s attributes."""

    memory: Memory
    tail_calls: int
    _map: Callable[..., BpfMap]
    _handles: dict[int, BpfMap]
    read_str_any: Callable[[int, int], bytes | None]
    map_handle: Callable[[int], int]

    # -- callbacks --------------------------------------------------------------------------
    def loop(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int, invoke: Invoke) -> int:
        nr = r1 & 0xFFFF_FFFF
        if r4:
            return -errno.EINVAL
        if nr > BPF_MAX_LOOPS:
            return -errno.E2BIG
        for i in range(nr):
            if invoke(r2, i, r3):
                return i + 1
        return nr

    def for_each_map_elem(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int, invoke: Invoke) -> int:
        m = self._map(r1, 164)
        if m.map_type not in _ITERABLE:
            raise HelperError(f"bpf_for_each_map_elem: map {m.name!r} is a {m.type_name} map (hash and array "
                              f"maps only)")
        if r4:
            return -errno.EINVAL
        if m.map_type in (BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY):
            keys = [struct.pack("<I", i) for i in range(m.max_entries)]
        else:
            keys = list(m.keys())
        done = 0
        mem = self.memory
        for key in keys:
            value = m.lookup(key)
            if value is None:  # deleted by an earlier callback
                continue
            kaddr = mem.map_region(bytearray(key), False, f"{m.name} key", temporary=True)
            vaddr = mem.map_region(value, not m.rdonly_prog, f"{m.name} value", key=("elem", id(m), key),
                                   temporary=True)
            done += 1
            if invoke(r2, r1, kaddr, vaddr, r3):
                break
        return done

    # -- tail calls ---------------------------------------------------------------------------
    def tail_call(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m = self._map(r2, 12, (ProgArrayMap,), reg=2)
        index = r3 & 0xFFFF_FFFF
        if index >= m.max_entries or self.tail_calls >= MAX_TAIL_CALL_CNT:
            return -errno.ENOENT
        target: Any = m.target(index)
        if target is None:
            return -errno.ENOENT
        self.tail_calls += 1
        raise TailCall(target)

    # -- queues, stacks, bloom filters ---------------------------------------------------------
    def map_push_elem(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        m: Any = self._map(r1, 87, (QueueStackMap, BloomFilterMap))
        if m.rdonly_prog:
            return -errno.EPERM
        return m.push(self.memory.read_bytes(r2, m.value_size), r3)

    def _get(self, r1: int, r2: int, hid: int, delete: bool) -> int:
        m: Any = self._map(r1, hid, (QueueStackMap, BloomFilterMap) if not delete else (QueueStackMap,))
        if isinstance(m, BloomFilterMap):  # peek: the value is the question, not an output
            return 0 if m.contains(self.memory.read_bytes(r2, m.value_size)) else -errno.ENOENT
        dst = self.memory.view(r2, m.value_size, writable=True)
        value = m.pop() if delete else m.peek()
        if value is None:
            dst[:] = bytes(m.value_size)
            return -errno.ENOENT
        dst[:] = value
        return 0

    def map_pop_elem(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        return self._get(r1, r2, 88, True)

    def map_peek_elem(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        return self._get(r1, r2, 89, False)

    # -- strings --------------------------------------------------------------------------------
    def snprintf(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        from .helpers import MAX_BPRINTF_VARARGS, bprintf

        size = r2 & 0xFFFF_FFFF
        n = r5 & 0xFFFF_FFFF
        if n % 8 or n > 8 * MAX_BPRINTF_VARARGS or (n and not r4):
            return -errno.EINVAL
        args = struct.unpack(f"<{n // 8}Q", self.memory.read_bytes(r4, n)) if n else ()
        fmt = self.read_str_any(r3, 1 << 16)
        if fmt is None:
            raise HelperError(f"bpf_snprintf: format at {r3:#x} is not readable")
        try:
            text = bprintf(fmt, args, self.read_str_any, self.symbolize, self.read_any).encode("latin-1", "replace")
        except ValueError:
            return -errno.EINVAL
        if size:
            dst = self.memory.view(r1, size, writable=True)
            out = text[: size - 1] + b"\0"
            dst[: len(out)] = out
        return len(text) + 1

    def strncmp(self, vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        n = r2 & 0xFFFF_FFFF
        s1 = self.memory.read_bytes(r1, n) if n else b""
        s2 = self.read_str_any(r3, n + 1)
        if s2 is None:
            raise HelperError(f"bpf_strncmp: string at {r3:#x} is not readable")
        s2 = s2 + b"\0"
        for i in range(n):
            c1, c2 = s1[i], s2[i] if i < len(s2) else 0
            if c1 != c2:
                return -1 if c1 < c2 else 1
            if not c1:
                break
        return 0

    # -- cgroups ----------------------------------------------------------------------------------
    def current_task_under_cgroup(self, vm: VM, r1: int, r2: int, *_: int) -> int:
        m = self._map(r1, 37, (CgroupArrayMap,))
        if (r2 & 0xFFFF_FFFF) >= m.max_entries:
            return -errno.E2BIG
        return -errno.EAGAIN  # no cgroup in the slot: this kernel has none

    symbolize: Callable[[int, bool], str]
    read_any: Callable[[int, int], bytes | None]
