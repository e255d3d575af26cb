"""Property tests: the interpreter and the translator agree on random valid programs, and no
input (random bytes, random fields) makes the verifier or an engine fail with anything but a
clean EbpfError."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprobesim.ebpf import isa
from kprobesim.ebpf.errors import EbpfError, StopProgram, VerifierError
from kprobesim.ebpf.isa import Insn
from kprobesim.ebpf.vm import VM

M64 = isa.MASK64
MEMLEN = 32
BUDGET = 3000
SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- helpers available to generated programs ------------------------------------------------------
def h_mix(vm, r1, r2, r3, r4, r5):
    return (r1 * 31 + r2 * 7 + (r3 ^ r4) - r5) & M64


def h_store(vm, r1, r2, r3, r4, r5):
    vm.memory.write(r1, 8, r3)  # may fault: the wrapper reports the call's pc
    return vm.memory.read(r1, 4)


def h_stop(vm, r1, r2, r3, r4, r5):
    if r1 & 7 == 0:
        raise StopProgram(r1 ^ 0x55)
    return r1


HELPERS = {1: h_mix, 2: h_store, 3: h_stop}

# --- program generator ------------------------------------------------------------------------------
# Strategies are built once and drawn many times: Hypothesis checks each new strategy object
# (validation, emptiness, labels) the first time it is drawn from, which cost far more than
# the draws themselves when the composites below built theirs afresh at every draw.
@cache
def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


@cache
def one_of_values(*values: int) -> st.SearchStrategy[int]:
    return st.sampled_from(values)


@cache
def either(a: st.SearchStrategy[int], b: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return st.one_of(a, b)


BOOLS = st.booleans()
MEM_BYTES = st.binary(min_size=MEMLEN, max_size=MEMLEN)

IMMS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 7, 8, 16, 31, 32, 33, 63, 64, 0xFF, 0x80, 0x8000,
                     0x7FFFFFFF, -0x80000000, -2, -3]),
    st.integers(-(1 << 31), (1 << 31) - 1))
WREG = st.integers(0, 8)  # r9 holds the mem pointer, r10 is the frame pointer
RREG = st.integers(0, 10)
ALU_BINOPS = [isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.MOD,
              isa.XOR, isa.MOV, isa.ARSH]
SIZES = [isa.B, isa.H, isa.W, isa.DW]

VALUES = st.one_of(st.integers(0, M64), st.integers(-300, 300).map(lambda v: v & M64),
                   st.integers(0, 64).map(lambda b: (1 << b) - 1 if b else 1 << 63),
                   st.integers(0, 63).map(lambda b: 1 << b), st.integers(0, 2**32 - 1))


# Items are lists of slots; jumps are ("jmp", insn, target_item) resolved at the end.


@cache
@st.composite
def alu_item(draw):
    cls = draw(one_of_values(isa.ALU, isa.ALU64))
    kind = draw(ints(0, 9))
    dst = draw(WREG)
    if kind == 0:
        return [Insn(cls | isa.NEG, dst)]
    if kind == 1:
        width = draw(one_of_values(16, 32, 64))
        if cls == isa.ALU64:
            return [Insn(isa.ALU64 | isa.END, dst, 0, 0, width)]
        return [Insn(isa.ALU | isa.END | draw(one_of_values(isa.TO_LE, isa.TO_BE)), dst, 0,
                     0, width)]
    if kind == 2:
        return isa.lddw(dst, draw(ints(0, M64)))
    op = draw(one_of_values(*ALU_BINOPS))
    off = 0
    if op in (isa.DIV, isa.MOD):
        off = draw(one_of_values(0, 1))
    if draw(BOOLS):
        if op == isa.MOV:
            off = draw(one_of_values(*([0, 8, 16, 32] if cls == isa.ALU64 else [0, 8, 16])))
        return [Insn(cls | op | isa.X, dst, draw(RREG), off, 0)]
    return [Insn(cls | op | isa.K, dst, 0, off, draw(IMMS))]


@cache
@st.composite
def mem_operand(draw, size: int):
    where = draw(ints(0, 39))
    if where < 20:  # the mem buffer, biased towards its edges
        edges = [-1, 0, MEMLEN - size, MEMLEN - size + 1]
        return 9, draw(either(ints(-1, MEMLEN + 1 - size), one_of_values(*edges)))
    if where < 39:  # the stack frame, biased towards its edges
        ss = isa.STACK_SIZE
        edges = [-ss - 1, -ss, -size, 1 - size, -8, -16]
        return 10, draw(either(ints(-ss - 1, 1 - size), one_of_values(*edges)))
    return draw(RREG), draw(ints(-8, 8))


@cache
@st.composite
def mem_item(draw):
    kind = draw(ints(0, 3))
    size = draw(one_of_values(*SIZES))
    nbytes = isa.SIZE_BYTES[size]
    base, off = draw(mem_operand(nbytes))
    if kind == 0:
        mode = isa.MEMSX if size != isa.DW and draw(BOOLS) else isa.MEM
        return [Insn(isa.LDX | mode | size, draw(WREG), base, off, 0)]
    if kind == 1:
        return [Insn(isa.ST | isa.MEM | size, base, 0, off, draw(IMMS))]
    if kind == 2:
        return [Insn(isa.STX | isa.MEM | size, base, draw(RREG), off, 0)]
    size = draw(one_of_values(isa.W, isa.DW))
    base, off = draw(mem_operand(isa.SIZE_BYTES[size]))
    op = draw(one_of_values(*sorted(isa.ATOMIC_OPS)))
    return [Insn(isa.STX | isa.ATOMIC | size, base, draw(WREG), off, op)]


@cache
@st.composite
def call_item(draw):
    kind = draw(ints(0, 3))
    if kind == 0:
        return [Insn(isa.CALL_OP, 0, 0, 0, 1)]
    if kind == 1:  # store through a pointer near mem (sometimes out of bounds)
        return [Insn(isa.ALU64 | isa.MOV | isa.X, 1, 9),
                Insn(isa.ALU64 | isa.ADD, 1, 0, 0, draw(ints(-4, MEMLEN))),
                Insn(isa.CALL_OP, 0, 0, 0, 2)]
    if kind == 2:
        return [Insn(isa.CALL_OP, 0, 0, 0, 3)]
    reg = draw(WREG)
    return [Insn(isa.ALU64 | isa.MOV, reg, 0, 0, draw(one_of_values(1, 2, 3, 4))),
            Insn(isa.CALLX_OP, reg)]


@cache
@st.composite
def jump_item(draw, index: int, count: int, backward: bool):
    """A jump at item ``index`` of a body of ``count`` items (target ``count`` = the exit)."""
    if backward and draw(ints(0, 4)) == 0:
        target = draw(ints(0, index))
    elif draw(ints(0, 3)) == 0:
        target = draw(ints(index + 1, count))
    else:
        target = draw(ints(index + 1, min(count, index + 4)))
    kind = draw(ints(0, 5))
    if kind == 0:
        return ("jmp", Insn(isa.JA_OP), target)
    if kind == 1:
        return ("jmp", Insn(isa.JA32_OP), target)
    cls = draw(one_of_values(isa.JMP, isa.JMP32))
    op = draw(one_of_values(*isa.COND_JMP_OPS))
    if draw(BOOLS):
        return ("jmp", Insn(cls | op | isa.X, draw(RREG), draw(RREG)), target)
    return ("jmp", Insn(cls | op | isa.K, draw(RREG), 0, 0, draw(IMMS)), target)


@cache
@st.composite
def body(draw, max_items: int, backward: bool, calls: bool):
    count = draw(ints(1, max_items))
    items = []
    for i in range(count):
        kind = draw(ints(0, 9))
        if kind < 4:
            items.append(draw(alu_item()))
        elif kind < 7:
            items.append(draw(mem_item()))
        elif kind < 9:
            items.append(draw(jump_item(i, count, backward)))
        else:
            items.append(draw(call_item()) if calls else draw(alu_item()))
    return items


def layout(items: list, base: int, epilogue: tuple[Insn, ...] = ()) -> list[Insn]:
    """Resolve item-level jump targets into slot offsets; append ``epilogue`` and the exit
    (jumps to the end land on the epilogue)."""
    starts, pc = [], base
    for it in items:
        starts.append(pc)
        pc += 1 if isinstance(it, tuple) else len(it)
    starts.append(pc)  # the exit
    out: list[Insn] = []
    for i, it in enumerate(items):
        if isinstance(it, tuple):
            insn, target = it[1], it[2]
            rel = starts[target] - starts[i] - 1
            out.append(insn._replace(imm=rel) if insn.opcode == isa.JA32_OP
                       else insn._replace(off=rel))
        else:
            out.extend(it)
    out.extend(epilogue)
    out.append(Insn(isa.EXIT_OP))
    return out


# Spill r0..r9 to the stack before the final exit: the compared stack then covers every register.
SPILL = tuple(Insn(isa.STX | isa.MEM | isa.DW, 10, r, -8 * (r + 1)) for r in range(10))


@st.composite
def programs(draw):
    backward = draw(BOOLS)
    prologue = [Insn(isa.ALU64 | isa.MOV | isa.X, 9, 1)]
    for reg in range(9):
        if reg != 1:
            prologue += isa.lddw(reg, draw(VALUES))
    main = draw(body(40, backward, True))
    with_sub = draw(BOOLS)
    if with_sub:
        main.insert(draw(ints(0, len(main))), [Insn(isa.CALL_OP, 0, 1, 0, 0)])
    insns = prologue + layout(main, len(prologue), SPILL)
    if with_sub:
        sub_entry = len(insns)
        for i, insn in enumerate(insns):  # patch the call to point at the subprogram
            if insn.opcode == isa.CALL_OP and insn.src == 1:
                insns[i] = insn._replace(imm=sub_entry - i - 1)
        insns += layout(draw(body(10, backward, False)), sub_entry)
    mem = draw(MEM_BYTES)
    return insns, mem


def outcome(insns, mem: bytes, engine: str):
    vm = VM(insns, HELPERS, engine=engine, budget=BUDGET)
    buf = bytearray(mem)
    addr = vm.memory.map_region(buf, True, "mem")
    try:
        r0 = vm.run(args=(addr, len(buf)))
        res = ("ok", r0, vm.last_count)
    except EbpfError as e:
        assert "internal error" not in str(e), str(e)
        res = ("error", type(e).__name__, str(e), e.pc)
    return res, bytes(buf), bytes(vm.frames[0][0])


@settings(max_examples=600, **SETTINGS)
@given(programs())
def test_engines_agree_on_valid_programs(case):
    insns, mem = case
    a = outcome(insns, mem, "interp")
    b = outcome(insns, mem, "translate")
    assert a == b


@st.composite
def single_op(draw):
    """Two random 64-bit operands in r1/r2, one ALU op or conditional jump, result in r0."""
    pre = isa.lddw(1, draw(VALUES)) + isa.lddw(2, draw(VALUES))
    if draw(st.integers(0, 2)) == 0:
        jmp = draw(jump_item(0, 2, False))[1]
        jmp = jmp._replace(dst=1, src=2 if jmp.opcode & isa.X else 0, off=1)
        if jmp.opcode in (isa.JA_OP, isa.JA32_OP):
            jmp = Insn(isa.JMP | isa.JSGT | isa.X, 1, 2, 1)
        return pre + [Insn(isa.ALU64 | isa.MOV, 0, 0, 0, 1), jmp,
                      Insn(isa.ALU64 | isa.MOV, 0, 0, 0, 2), Insn(isa.EXIT_OP)]
    op = draw(alu_item())
    if op[0].opcode & 0xF0 == isa.END or op[0].opcode == isa.LDDW:
        op[0] = op[0]._replace(dst=1)
    else:
        op = [op[0]._replace(dst=1, src=2 if op[0].opcode & isa.X else 0)]
    return pre + op + [Insn(isa.ALU64 | isa.MOV | isa.X, 0, 1), Insn(isa.EXIT_OP)]


@settings(max_examples=2000, **SETTINGS)
@given(single_op())
def test_engines_agree_on_single_ops(insns):
    a = outcome(insns, bytes(MEMLEN), "interp")
    b = outcome(insns, bytes(MEMLEN), "translate")
    assert a == b


def _kinds():
    """Every valid opcode byte (plus a few invalid ones)."""
    ops = [isa.LDDW, isa.CALL_OP, isa.CALLX_OP, isa.EXIT_OP, isa.JA_OP, isa.JA32_OP, 0x00, 0xFF]
    for cls in (isa.ALU, isa.ALU64):
        for op in isa.ALU_OPS:
            ops += [cls | op | isa.K, cls | op | isa.X]
    for cls in (isa.JMP, isa.JMP32):
        for op in isa.COND_JMP_OPS:
            ops += [cls | op | isa.K, cls | op | isa.X]
    for size in SIZES:
        ops += [isa.LDX | isa.MEM | size, isa.LDX | isa.MEMSX | size, isa.ST | isa.MEM | size,
                isa.STX | isa.MEM | size, isa.STX | isa.ATOMIC | size]
    return sorted(set(ops))


def _often_zero(strategy):
    return st.one_of(st.just(0), st.just(0), strategy)


FIELD_SLOT = st.builds(
    Insn, st.sampled_from(_kinds()), st.integers(0, 11), _often_zero(st.integers(0, 11)),
    _often_zero(st.one_of(st.sampled_from([1, 8, 16, 32, -1, -8, 2]), st.integers(-600, 600))),
    _often_zero(st.one_of(st.sampled_from(sorted(isa.ATOMIC_OPS) + [1, 2, 3, 16, 32, 64, -1]),
                          IMMS)))


def _robust(insns_or_bytes):
    results = []
    for engine in ("interp", "translate"):
        try:
            vm = VM(insns_or_bytes, HELPERS, engine=engine, budget=2000)
        except VerifierError as e:
            assert str(e).startswith("verifier: insn ")
            results.append(("verifier", str(e)))
            continue
        except EbpfError as e:
            results.append(("load", str(e)))
            continue
        mem = bytearray(MEMLEN)
        addr = vm.memory.map_region(mem, True, "mem")
        try:
            results.append(("ok", vm.run(bytes(16), args=(addr, MEMLEN)), bytes(mem)))
        except EbpfError as e:
            assert "internal error" not in str(e), str(e)
            results.append(("error", str(e), bytes(mem)))
    assert results[0] == results[1]


@settings(max_examples=400, **SETTINGS)
@given(st.binary(min_size=0, max_size=8 * 24))
def test_random_bytes_never_crash(data):
    _robust(bytes(data))


@settings(max_examples=500, **SETTINGS)
@given(st.lists(FIELD_SLOT, min_size=1, max_size=20).map(lambda s: s + [Insn(isa.EXIT_OP)]))
def test_random_fields_never_crash(slots):
    _robust(slots)


@pytest.mark.parametrize("kind", ["load", "store"])
@pytest.mark.parametrize("size", [1, 8])
@pytest.mark.parametrize("move", [0, -1, MEMLEN - 1, MEMLEN, (1 << 32) - 4, -(1 << 32), 1 << 40])
@pytest.mark.parametrize("off", [0, -8, 4, MEMLEN - 1, 0x7FFF, -0x8000])
def test_engines_agree_on_accesses_off_a_region(kind, size, move, off):
    """One load or store at ``mem + move + off`` (a pointer moved by a scalar, then one access
    with a constant offset: the translator's check for a pointer it does not hold), in and out
    of the region and across its 4 GiB slot's ends, faults alike (same message and pc) or gives
    the same result in the interpreter and the translated code."""
    mode = {1: isa.B, 8: isa.DW}[size]
    access = (Insn(isa.LDX | isa.MEM | mode, 0, 1, off) if kind == "load"
              else Insn(isa.STX | isa.MEM | mode, 1, 2, off))
    insns = [*isa.lddw(2, move & isa.MASK64), Insn(isa.ALU64 | isa.ADD | isa.X, 1, 2), access,
             Insn(isa.EXIT_OP)]
    mem = bytes(range(MEMLEN))
    assert outcome(insns, mem, "interp") == outcome(insns, mem, "translate")
