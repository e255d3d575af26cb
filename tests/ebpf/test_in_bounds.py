"""Loads and stores the verifier proves to stay inside a map value (``Result.in_bounds``) are
translated without their bounds checks; the interpreter keeps checking every access.

A program looks up a hash map value and reads, reads at a variable offset and writes it, the
offset masked to ``mask``; the value is ``size`` bytes. Whenever the verifier accepts the
program, both engines run it for offsets at the edges of the masked range: were the proof
wrong, the interpreter would fault where the translator read or wrote past the value (or
elsewhere), and the results or the value's bytes would differ.
"""

from __future__ import annotations

import struct

import pytest
from fwpaths import firmware
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobesim.ebpf import absint
from kprobesim.ebpf import maps as M
from kprobesim.ebpf.errors import EbpfError, VerifierError
from kprobesim.ebpf.helpers import Runtime
from kprobesim.ebpf.memory import Memory
from kprobesim.ebpf.vm import VM
from kprobesim.machine import Machine

CTX = 16
PROGRAM = """
    mov %r6, %r1
    stw [%r10-4], 1
    lddw %r1, map_idx[0]
    mov %r2, %r10
    add %r2, -4
    call 1
    jeq %r0, 0, out
    ldxdw %r3, [%r6+0]
    and %r3, {mask}
    ldx{w} %r7, [%r0+{last}]
    add %r0, %r3
    ldxb %r8, [%r0+0]
    stb [%r0+0], 0x5a
    mov %r0, %r8
    lsh %r0, 32
    add %r0, %r7
out:
    exit
"""
#: the pcs of the three value accesses in PROGRAM (lddw takes two slots)
VALUE_PCS = {10, 12, 13}


class _Out:
    def printk(self, msg: str) -> None: ...

    def record(self, kind: str, m: object, data: bytes) -> None: ...


@pytest.fixture(scope="module")
def machine() -> Machine:
    return Machine.load(firmware("riscv64"))


def _build(machine: Machine, size: int, mask: int, width: int) -> tuple[list[VM], list[M.BpfMap], frozenset[int]]:
    """The program in both engines (each with its own map), and the verifier's in-bounds pcs."""
    text = PROGRAM.format(mask=mask, w={1: "b", 2: "h", 4: "w", 8: "dw"}[width], last=size - width)
    vms, maps, proven = [], [], frozenset()
    for engine in ("translate", "interp"):
        m = M.create_map(M.BPF_MAP_TYPE_HASH, 4, size, 2, name="v")
        m.update(struct.pack("<I", 1), bytes(range(7, 7 + size)))
        rt = Runtime(machine, Memory(), [m], _Out())
        vm = VM(text, rt.helpers(), resolver=rt.resolve, memory=rt.memory, engine="interp", binders=rt.binders())
        res = absint.verify_program(vm.program.insns, [absint.MapInfo("v", m.map_type, 4, size, 2)], CTX, "GPL",
                                    frozenset(rt.helpers()), strict_alignment=False)  # (x86_64's rule)
        proven = res.in_bounds
        vm.use(engine, res.probe_mem, res.in_bounds)
        vms.append(vm)
        maps.append(m)
    return vms, maps, proven


def _run(vm: VM, index: int) -> object:
    try:
        return vm.run(bytearray(struct.pack("<QQ", index, 0)))
    except EbpfError as e:
        return f"{type(e).__name__}: {e}"


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(size=st.integers(1, 40), mask=st.sampled_from((0, 1, 3, 7, 15, 31, 63)), width=st.sampled_from((1, 2, 4, 8)))
def test_proven_accesses_agree_at_the_edges(machine: Machine, size: int, mask: int, width: int) -> None:
    if width > size:
        return
    try:
        (translated, interpreted), maps, proven = _build(machine, size, mask, width)
    except VerifierError:
        assert mask >= size  # refused: an offset up to mask may pass the value's end
        return
    assert mask < size and proven == VALUE_PCS
    assert "LD(" not in translated.source and "ST(" not in translated.source  # no checked fallbacks
    for index in sorted({0, 1, mask - 1, mask, mask + 1, size - 1, size, 1 << 40} - {-1}):
        assert _run(translated, index) == _run(interpreted, index), index
        assert maps[0].items() == maps[1].items()


def test_an_access_not_always_to_a_map_value_is_not_proven(machine: Machine) -> None:
    """A pointer that is a map value on one path and the stack on the other: that load keeps
    its checks; so does a context load."""
    m = M.create_map(M.BPF_MAP_TYPE_HASH, 4, 8, 2, name="v")
    rt = Runtime(machine, Memory(), [m], _Out())
    text = """
        ldxdw %r6, [%r1+0]
        stdw [%r10-8], 3
        stw [%r10-12], 1
        lddw %r1, map_idx[0]
        mov %r2, %r10
        add %r2, -12
        call 1
        jne %r0, 0, have
        mov %r0, %r10
        add %r0, -8
    have:
        ldxdw %r0, [%r0+0]
        exit
    """
    vm = VM(text, rt.helpers(), resolver=rt.resolve, memory=rt.memory, engine="interp")
    res = absint.verify_program(vm.program.insns, [absint.MapInfo("v", m.map_type, 4, 8, 2)], CTX, "GPL",
                                frozenset(rt.helpers()))
    assert res.in_bounds == frozenset()
    vm.use("translate", res.probe_mem, res.in_bounds)
    assert vm.run(bytearray(CTX)) == 3
    m.update(struct.pack("<I", 1), struct.pack("<Q", 99))
    assert vm.run(bytearray(CTX)) == 99
