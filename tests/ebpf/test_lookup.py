"""The bound map lookups (:mod:`kprobesim.ebpf.lookup`) against the generic helper.

Two runtimes over equal maps and memories take the same random sequence of lookups, updates,
deletes, stores through returned pointers and run ends (which release and park the value
regions); one looks up through the bound helpers, the other through
``Runtime.lookup_generic``. Both must return the same addresses (or the same fault) and leave
the same regions mapped with the same bytes, and the maps must hold the same elements. The
parked-region limit is lowered and the address space cut to a few free slots, so that
forgetting parked regions and handing their slots to other regions are exercised too.
"""

from __future__ import annotations

import struct

import pytest
from fwpaths import firmware
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kprobesim.ebpf import maps as M
from kprobesim.ebpf import memory as memory_module
from kprobesim.ebpf.errors import EbpfError
from kprobesim.ebpf.helpers import MAP_LOOKUP_ELEM, Runtime
from kprobesim.ebpf.memory import Memory
from kprobesim.ebpf.vm import VM
from kprobesim.machine import Machine

MAPS = (  # (type, key size, value size, entries, flags)
    (M.BPF_MAP_TYPE_HASH, 4, 8, 3, 0),
    (M.BPF_MAP_TYPE_LRU_HASH, 4, 8, 2, 0),
    (M.BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 3, 0),
    (M.BPF_MAP_TYPE_HASH, 12, 4, 3, 0),  # a key wider than a register
    (M.BPF_MAP_TYPE_LRU_HASH, 8, 8, 2, M.BPF_F_RDONLY_PROG),  # 8-byte keys, read-only values
    (M.BPF_MAP_TYPE_ARRAY, 4, 8, 3, 0),
    (M.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 3, 0),
    (M.BPF_MAP_TYPE_ARRAY, 4, 8, 2, M.BPF_F_RDONLY_PROG),
)
STACK = 32


class _Out:
    def printk(self, msg: str) -> None: ...

    def record(self, kind: str, m: object, data: bytes) -> None: ...


@pytest.fixture(scope="module")
def machine() -> Machine:
    return Machine.load(firmware("riscv64"))


def _side(machine: Machine) -> tuple[Runtime, list[M.BpfMap], list[int], int]:
    maps = [M.create_map(t, k, v, n, flags=f, name=f"m{i}", ncpus=2) for i, (t, k, v, n, f) in enumerate(MAPS)]
    mem = Memory()
    rt = Runtime(machine, mem, maps, _Out())
    handles = [rt.map_handle(i) for i in range(len(maps))]
    stack = mem.map_region(bytearray(STACK), True, "stack")
    return rt, maps, handles, stack


def _state(rt: Runtime, maps: list[M.BpfMap]) -> tuple:
    regions = tuple((r.key, r.name, r.size, r.writable, bytes(r.buf)) for r in rt.memory.regions())
    return regions, tuple(tuple(m.items()) for m in maps)


def _do(rt: Runtime, maps: list[M.BpfMap], handles: list[int], stack: int, op: tuple, fast: bool) -> object:
    kind, i, key, arg = op
    mem = rt.memory
    m = maps[i]
    raw = key.to_bytes(4, "little") * 3
    try:
        if kind == "lookup":
            mem.write_bytes(stack, raw[: m.key_size])
            at = stack + arg  # arg > 0: the key runs over the stack's end (a fault)
            if fast:
                return rt.map_lookup_elem(None, handles[i], at, 0, 0, 0)  # type: ignore[arg-type]
            return rt.lookup_generic(handles[i], at)
        if kind == "update":
            return m.update(raw[: m.key_size], bytes([key]) * m.value_size, arg % 3)
        if kind == "delete":
            return m.delete(raw[: m.key_size])
        if kind == "store":  # through the last value pointer this run, if it still maps
            for region in list(mem._temporary)[-1:]:
                mem.store(None, region.base + arg % region.size, 1, key)
            return None
        mem.release_temporary()  # the run's end
        return None
    except EbpfError as e:
        return f"{type(e).__name__}: {e}"


OPS = st.tuples(
    st.sampled_from(("lookup", "lookup", "lookup", "update", "delete", "store", "end", "end")),
    st.integers(0, 3),
    st.sampled_from((0, 0, 0, 0, 1, STACK - 2)),
    st.sampled_from((False, False, True)),  # on the first hash map instead (two maps' regions mix)
)


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, len(MAPS) - 1), ops=st.lists(OPS, max_size=40))
@example(which=7, ops=[("lookup", 1, 0), ("end", 0, 0), ("lookup", 1, 0), ("store", 5, 0)])  # rdonly
@example(which=1, ops=[("update", 1, 0), ("update", 2, 0), ("lookup", 1, 0), ("update", 3, 0)])  # LRU
@example(which=1, ops=[("update", 1, 0), ("update", 2, 0), ("lookup", 1, 0), ("lookup", 2, 0), ("lookup", 1, 0),
                       ("update", 3, 0)])  # LRU, the second lookup of a key
@example(which=4, ops=[("update", 1, 0), ("lookup", 1, 0), ("end", 0, 0), ("lookup", 1, 0), ("store", 5, 0)])
@example(which=0, ops=[("update", 1, 0), ("lookup", 1, 0), ("end", 0, 0), ("delete", 1, 0), ("update", 1, 0),
                       ("lookup", 1, 0), ("store", 9, 0)])  # a new element under an old key
@example(which=0, ops=[("update", 1, 0), ("lookup", 1, 0), ("end", 0, 0), ("delete", 1, 0), ("update", 1, 0),
                       ("lookup", 1, 0), ("end", 0, 0), ("update", 2, 0), ("lookup", 2, 0), ("end", 0, 0),
                       ("update", 3, 0), ("lookup", 3, 0), ("end", 0, 0), ("delete", 3, 0), ("update", 3, 0),
                       ("lookup", 3, 0), ("lookup", 1, 0), ("store", 7, 1)])  # a parked region's slot reused
@example(which=5, ops=[("lookup", 1, 0), ("end", 0, 0), ("update", 1, 0, True), ("lookup", 1, 0, True),
                       ("end", 0, 0), ("delete", 1, 0, True), ("update", 1, 0, True), ("lookup", 1, 0, True),
                       ("end", 0, 0), ("delete", 1, 0, True), ("update", 1, 0, True), ("lookup", 1, 0, True),
                       ("lookup", 1, 0), ("store", 7, 1)])  # an array value's parked slot reused
def test_bound_lookup_equals_the_generic_helper(machine: Machine, which: int, ops: list[tuple]) -> None:
    limit, slots = memory_module.PARKED_LIMIT, memory_module.KEY_LIMIT
    memory_module.PARKED_LIMIT = 5  # forget parked regions often
    # the maps' and the stack's slots, and 3 more: parked regions' slots are soon handed out again
    memory_module.KEY_LIMIT = memory_module.KEY_BASE + (len(MAPS) + 3) * memory_module.KEY_STRIDE
    try:
        fast, slow = _side(machine), _side(machine)
        assert len(fast[0]._lookups) == len(MAPS)  # every map above has a bound lookup
        for kind, key, arg, *on_hash in ops:
            op = (kind, 0 if on_hash and on_hash[0] else which, key, arg)
            got = _do(*fast, op, fast=True)
            want = _do(*slow, op, fast=False)
            assert got == want, op
            assert _state(fast[0], fast[1]) == _state(slow[0], slow[1]), op
    finally:
        memory_module.PARKED_LIMIT, memory_module.KEY_LIMIT = limit, slots


def test_translator_calls_the_bound_lookup(machine: Machine) -> None:
    """A lookup whose r1 is an ``lddw`` of the map goes to the map's bound helper; one whose r1
    comes from elsewhere calls the generic helper, and both find the same element."""
    maps = [M.create_map(M.BPF_MAP_TYPE_HASH, 4, 8, 4, name="h")]
    mem = Memory()
    rt = Runtime(machine, mem, maps, _Out())
    maps[0].update(struct.pack("<I", 7), struct.pack("<Q", 0x1122334455667788))
    program = """
        mov %r6, %r1
        stw [%r10-4], 7
        lddw %r1, map_idx[0]
        mov %r2, %r10
        add %r2, -4
        call 1
        jeq %r0, 0, +7
        ldxdw %r7, [%r0+0]
        mov %r1, %r6
        mov %r2, %r10
        add %r2, -4
        call 1
        ldxdw %r0, [%r0+0]
        add %r0, %r7
        exit
    """

    def resolve(vm: VM, src: int, imm: int, nxt: int) -> int:
        return rt.resolve(vm, src, imm, nxt)

    helpers = rt.helpers()
    handle = rt.map_handle(0)
    for engine in ("translate", "interp"):
        vm = VM(program, helpers, resolver=resolve, memory=mem, engine=engine, binders=rt.binders())
        assert vm.run(args=[handle]) == 2 * 0x1122334455667788 % (1 << 64)
    bound = [line for line in vm.source.splitlines() if "(VM, r1" in line]
    assert len(bound) == 2 and bound[0].lstrip().startswith("r0 = S") and " H1(" in bound[1], bound
    assert vm._engine("translate") is not None
    assert MAP_LOOKUP_ELEM in rt.binders()
