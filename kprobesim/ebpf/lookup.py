"""``bpf_map_lookup_elem`` for one map, without the generic helper's per-call work.

A probe's program looks up the same map on every hit. :func:`fast_lookup` builds, once per map,
a helper (``fn(vm, r1, ..., r5) -> address``) that reads the key, finds the element and maps its
value as :meth:`Runtime.map_lookup_elem <kprobesim.ebpf.helpers.Runtime.map_lookup_elem>` does:
a temporary region under the user key ``("elem", id(map), key)``, so that both paths hand out
the same region for the same element. What it saves is the generic path's per-call overhead:
the map is bound (no handle lookup, no class checks), the element is the map's own dict entry
(no method call), and the value's parked region is found in a per-map index keyed by the
element key (:meth:`Memory.element_cache <kprobesim.ebpf.memory.Memory.element_cache>`), not
by building the user key. Array and hash maps (plain, per-CPU: CPU 0's slot, LRU) only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .maps import ArrayMap, BpfMap, HashMap
from .memory import Memory, Region

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
Helper = Callable[..., int]


def fast_lookup(memory: Memory, m: BpfMap) -> Helper | None:
    """The lookup helper bound to ``m`` (None: ``m`` takes the generic path)."""
    cls = m.__class__
    if cls is HashMap:
        return _hash_lookup(memory, m)  # type: ignore[arg-type]
    if cls is ArrayMap:
        return _array_lookup(memory, m)  # type: ignore[arg-type]
    return None


def _again(held: Region, readable: dict, writable: dict, temporary: list, rw: bool) -> int:
    """The base of ``held``, the element's parked value region, if it can serve this lookup:
    mapped again when the last run's release parked it, as it is when this run looked it up
    before; 0 when its slot holds another region now."""
    k = held.key
    now = readable.get(k)
    if now is None:
        readable[k] = held
        if rw:
            writable[k] = held
        temporary.append(held)
        return held.base
    return held.base if now is held else 0


def _hash_lookup(mem: Memory, m: HashMap) -> Helper:
    readable, writable, temporary = mem.readable, mem.writable, mem._temporary
    cache = mem.element_cache()  # the key (as an integer when it is 4 or 8 bytes) -> its region
    elems = m._elems
    get, touch = elems.get, elems.move_to_end
    lru = m.lru
    ks = m.key_size
    as_int = {4: _U32.unpack_from, 8: _U64.unpack_from}.get(ks)
    rw = not m.rdonly_prog
    tag = id(m)
    name = f"{m.name} value"

    def lookup(vm: object, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        region = readable.get(r2 >> 32)  # the key, usually on the program's stack
        off = r2 & 0xFFFF_FFFF
        if region is not None and off + ks <= region.size:
            if as_int is not None:  # a parked region under this key: its user key holds the bytes
                (ik,) = as_int(region.buf, off)
                held = cache.get(ik)
                if held is not None:
                    key = held.user_key[2]  # type: ignore[index]
                    slots = get(key)
                    if slots is None:
                        return 0
                    if lru:
                        touch(key)
                    if held.buf is slots[0] and (again := _again(held, readable, writable, temporary, rw)):
                        return again
                    base = mem.map_region(slots[0], rw, name, key=("elem", tag, key), temporary=True)
                    cache[ik] = readable[base >> 32]
                    return base
            key = bytes(region.buf[off : off + ks])
        else:
            key = mem.read_bytes(r2, ks)
        slots = get(key)
        if slots is None:
            return 0
        if lru:
            touch(key)
        buf = slots[0]
        ck = key if as_int is None else as_int(key)[0]
        held = cache.get(ck)
        if held is not None and held.buf is buf and (again := _again(held, readable, writable, temporary, rw)):
            return again
        base = mem.map_region(buf, rw, name, key=("elem", tag, key), temporary=True)
        cache[ck] = readable[base >> 32]
        return base

    return lookup


def _array_lookup(mem: Memory, m: ArrayMap) -> Helper:
    readable, writable, temporary = mem.readable, mem.writable, mem._temporary
    cache = mem.element_cache()
    values = m._values
    entries = m.max_entries
    rw = not m.rdonly_prog
    tag = id(m)
    name = f"{m.name} value"
    unpack = _U32.unpack_from

    def lookup(vm: object, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        region = readable.get(r2 >> 32)
        off = r2 & 0xFFFF_FFFF
        if region is not None and off + 4 <= region.size:
            (i,) = unpack(region.buf, off)
        else:
            (i,) = _U32.unpack(mem.read_bytes(r2, 4))
        if i >= entries:
            return 0
        slots = values.get(i)
        if slots is None:
            slots = m._slots(i)
        buf = slots[0]
        held = cache.get(i)
        if held is not None and held.buf is buf and (again := _again(held, readable, writable, temporary, rw)):
            return again
        base = mem.map_region(buf, rw, name, key=("elem", tag, _U32.pack(i)), temporary=True)
        cache[i] = readable[base >> 32]
        return base

    return lookup
