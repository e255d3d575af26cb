"""The translator's lazy reduction of 64-bit results (see :mod:`kprobesim.ebpf.translate`)
against the interpreter, which reduces after every instruction.

Runs of add, sub, mul, lsh, and, or, xor, neg and mov (the operations left unreduced) on
operands at the edges of the 64-bit range, broken by instructions that need exact operands
(shift right, division, a compare and branch, a 32-bit operation, a store, a helper call) at
random places; every register is stored to the stack at the end, so each one's final value is
compared, not only r0. Copies of r10 moved by immediates (left unreduced as long as they stay
within 2**31 of it) are among the operations. Chains of multiplications check the bound on an
unreduced value's bits.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kprobesim.ebpf import isa
from kprobesim.ebpf.errors import EbpfError
from kprobesim.ebpf.isa import Insn
from kprobesim.ebpf.translate import LAZY_BITS
from kprobesim.ebpf.vm import VM

M64 = isa.MASK64
EDGES = (0, 1, 2, 31, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32, (1 << 63) - 1, 1 << 63, M64 - 1, M64)
VALUES = st.one_of(st.sampled_from(EDGES), st.integers(0, M64))
IMMS = st.one_of(st.sampled_from((0, 1, -1, 31, 63, 64, -0x8000_0000, 0x7FFF_FFFF)),
                 st.integers(-(1 << 31), (1 << 31) - 1))
REG = st.integers(0, 5)
LAZY = (isa.ADD, isa.SUB, isa.MUL, isa.LSH, isa.OR, isa.AND, isa.XOR, isa.NEG, isa.MOV)
EXACT = (isa.RSH, isa.ARSH, isa.DIV, isa.MOD)


def helper(vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    assert all(0 <= r <= M64 for r in (r1, r2, r3, r4, r5)), "a helper got an unreduced argument"
    return (r1 * 3 + r2) & M64


@st.composite
def lazy_op(draw: st.DrawFn) -> list[Insn]:
    code = draw(st.sampled_from(LAZY))
    dst = draw(REG)
    if draw(st.integers(0, 7)) == 0:  # a frame pointer copy: then r10 plus offsets (exact up to 2**31)
        return [Insn(isa.ALU64 | isa.MOV | isa.X, dst, 10)]
    if code == isa.NEG:
        return [Insn(isa.ALU64 | isa.NEG, dst)]
    if draw(st.booleans()):
        return [Insn(isa.ALU64 | code | isa.X, dst, draw(REG))]
    return [Insn(isa.ALU64 | code, dst, 0, 0, draw(IMMS))]


@st.composite
def exact_op(draw: st.DrawFn) -> list[Insn]:
    kind = draw(st.integers(0, 5))
    dst, src = draw(REG), draw(REG)
    if kind == 0:
        return [Insn(isa.ALU64 | draw(st.sampled_from(EXACT)) | isa.X, dst, src)]
    if kind == 1:  # a compare and branch over one instruction
        return [Insn(isa.JMP | isa.JGT | isa.X, dst, src, 1), Insn(isa.ALU64 | isa.ADD, dst, 0, 0, 7)]
    if kind == 2:
        return [Insn(isa.ALU | draw(st.sampled_from((isa.ADD, isa.MUL, isa.RSH, isa.XOR))) | isa.X, dst, src)]
    if kind == 3:
        return [Insn(isa.STX | isa.MEM | isa.DW, 10, src, -96)]
    if kind == 4:
        return [Insn(isa.CALL_OP, 0, 0, 0, 1)]
    return [Insn(isa.ALU64 | isa.MOV | isa.X, dst, src), Insn(isa.ALU64 | isa.END, dst, 0, 0, 64)]


@st.composite
def programs(draw: st.DrawFn) -> list[Insn]:
    insns: list[Insn] = []
    for reg in range(6):
        insns += isa.lddw(reg, draw(VALUES))
    for _ in range(draw(st.integers(1, 40))):
        insns += draw(exact_op()) if draw(st.integers(0, 5)) == 0 else draw(lazy_op())
    insns += [Insn(isa.STX | isa.MEM | isa.DW, 10, r, -8 * (r + 1)) for r in range(10)]
    return insns + [Insn(isa.EXIT_OP)]


def outcome(insns: list[Insn], engine: str) -> tuple:
    vm = VM(insns, {1: helper}, engine=engine)
    try:
        res: tuple = ("ok", vm.run(), vm.last_count)
    except EbpfError as e:
        res = ("error", str(e))
    return res, bytes(vm.frames[0][0])


SQUARES = [*isa.lddw(1, M64 - 12345), *[Insn(isa.ALU64 | isa.MUL | isa.X, 1, 1)] * 40,
           Insn(isa.ALU64 | isa.MOV | isa.X, 0, 1), Insn(isa.EXIT_OP)]


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
@example(SQUARES)
def test_lazy_reduction_equals_the_interpreter(insns: list[Insn]) -> None:
    assert outcome(insns, "translate") == outcome(insns, "interp")


def test_lazy_reduction_bounds_the_bits() -> None:
    """40 multiplications by 31 leave a few reductions (when the next product could pass the
    bound), 40 squarings one each (a square of an unreduced value always could); both exact."""
    times31 = [*isa.lddw(1, M64 - 12345), *[Insn(isa.ALU64 | isa.MUL, 1, 0, 0, 31)] * 40,
               Insn(isa.ALU64 | isa.MOV | isa.X, 0, 1), Insn(isa.EXIT_OP)]
    for insns, step, most in ((times31, lambda v: v * 31, 6), (SQUARES, lambda v: v * v, 41)):
        vm = VM(insns, {}, engine="translate")
        want = M64 - 12345
        for _ in range(40):
            want = step(want) & M64
        assert vm.run() == want
        assert 0 < vm.source.count("& 0xffffffffffffffff") <= most, vm.source
    assert 2 * 64 <= LAZY_BITS < 4 * 64
