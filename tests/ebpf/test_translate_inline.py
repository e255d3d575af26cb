"""The translator's inlining of short runs at jumps (see ``_Gen._leave`` in
:mod:`kprobesim.ebpf.translate`) against the interpreter: chains of diamonds long enough to
exhaust the inlining budget and depth, a loop (never inlined into itself), and a held map
value region carried into an inlined run."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobesim.ebpf import isa
from kprobesim.ebpf.isa import Insn
from kprobesim.ebpf.translate import INLINE_BUDGET, INLINE_DEPTH
from kprobesim.ebpf.vm import VM

M64 = isa.MASK64


def diamonds(count: int) -> list[Insn]:
    """r0 = r1; then ``count`` times: if a bit of r1 is set, r0 = r0 * 3 + i, else r0 ^= i."""
    insns = [Insn(isa.ALU64 | isa.MOV | isa.X, 0, 1)]
    for i in range(count):
        insns += [
            Insn(isa.JMP | isa.JSET, 1, 0, 2, 1 << (i % 31)),
            Insn(isa.ALU64 | isa.XOR, 0, 0, 0, i),
            Insn(isa.JA_OP, 0, 0, 2),
            Insn(isa.ALU64 | isa.MUL, 0, 0, 0, 3),
            Insn(isa.ALU64 | isa.ADD, 0, 0, 0, i),
        ]
    return insns + [Insn(isa.EXIT_OP)]


def expected(count: int, r1: int) -> int:
    r0 = r1
    for i in range(count):
        r0 = (r0 * 3 + i) & M64 if r1 >> (i % 31) & 1 else r0 ^ i
    return r0


@functools.cache
def machines(count: int) -> tuple[VM, VM]:
    return VM(diamonds(count), {}, engine="translate"), VM(diamonds(count), {}, engine="interp")


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(r1=st.integers(0, M64))
@pytest.mark.parametrize("count", [3, 40, 400])
def test_diamond_chains_agree(count: int, r1: int) -> None:
    want = expected(count, r1)
    for vm in machines(count):
        assert vm.run(args=[r1]) == want


def test_inlining_is_bounded() -> None:
    """400 diamonds: the runs after the first jumps are inlined, the rest go through the
    dispatch loop; the code stays within the budget and nesting limits and compiles."""
    vm = machines(400)[0]
    lines = vm.source.splitlines()
    deepest = max((len(ln) - len(ln.lstrip())) // 4 for ln in lines if ln.strip())
    assert deepest <= INLINE_DEPTH + 6
    assert sum("*" in ln for ln in lines) <= 400 + INLINE_BUDGET
    assert any(ln.strip().startswith("b = ") for ln in lines)  # not everything was inlined


def test_loop_with_a_held_region_agrees() -> None:
    """A counted loop (its back edge is never inlined) whose body reads and writes a value
    through a held region, then jumps to a short exit run that reads it again."""
    program = """
        mov %r6, %r1
        mov %r2, 0
    loop:
        ldxdw %r3, [%r6+0]
        add %r3, %r2
        stxdw [%r6+0], %r3
        ldxdw %r4, [%r6+8]
        xor %r4, %r3
        stxdw [%r6+8], %r4
        add %r2, 1
        jlt %r2, 10, loop
        jeq %r4, 0, zero
        ldxdw %r0, [%r6+8]
        exit
    zero:
        mov %r0, 77
        exit
    """
    results = []
    for engine in ("translate", "interp"):
        vm = VM(program, {}, engine=engine)
        buf = bytearray(range(16))
        addr = vm.memory.map_region(buf, True, "value")
        results.append((vm.run(args=[addr]), bytes(buf)))
    assert results[0] == results[1]


@pytest.mark.parametrize("r2", [0, 1])
def test_a_branch_inlined_keeps_its_knowledge_to_itself(r2: int) -> None:
    """The taken branch's run, inlined, holds r6's region; the fall-through path, emitted
    after it, must set that region up itself."""
    program = """
        mov %r6, %r1
        jeq %r2, 0, other
        ldxdw %r0, [%r6+0]
        ldxdw %r3, [%r6+8]
        add %r0, %r3
        exit
    other:
        ldxdw %r3, [%r6+0]
        ldxdw %r4, [%r6+8]
        xor %r3, %r4
        mov %r0, %r3
        exit
    """
    results = []
    for engine in ("translate", "interp"):
        vm = VM(program, {}, engine=engine)
        buf = bytearray(range(1, 17))
        results.append(vm.run(args=[vm.memory.map_region(buf, True, "value"), r2]))
    assert results[0] == results[1]
    assert "b6 = g.buf" in vm._engine("translate").source
