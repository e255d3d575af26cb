"""ISA semantics, assembler/disassembler round trips and memory safety, in both engines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobesim.ebpf import isa
from kprobesim.ebpf.asm import assemble
from kprobesim.ebpf.disasm import disasm_insn, disassemble
from kprobesim.ebpf.errors import (
    AsmError,
    BudgetExhausted,
    EbpfError,
    HelperError,
    MemoryFault,
    StopProgram,
)
from kprobesim.ebpf.isa import Insn
from kprobesim.ebpf.vm import VM

ENGINES = ("interp", "translate")
M64 = (1 << 64) - 1


def run(text: str, mem: bytes | None = None, helpers=None, ctx=None, ctx_writable=False,
        budget: int = 100_000) -> int:
    """Run in both engines; they must agree (r0 and memory, or the same error)."""
    outcomes = []
    for engine in ENGINES:
        vm = VM(text, helpers, engine=engine, budget=budget)
        buf = bytearray(mem) if mem is not None else None
        args = ()
        if buf is not None:
            args = (vm.memory.map_region(buf, True, "mem"), len(buf))
        try:
            r0 = vm.run(ctx, ctx_writable=ctx_writable, args=args)
            outcomes.append(("ok", r0, bytes(buf or b"")))
        except EbpfError as e:
            outcomes.append(("err", type(e).__name__, str(e)))
    assert outcomes[0] == outcomes[1], outcomes
    if outcomes[0][0] == "err":
        raise _Err(outcomes[0][1], outcomes[0][2])
    return outcomes[0][1]


class _Err(Exception):
    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind


def err(text: str, **kw) -> _Err:
    with pytest.raises(_Err) as ei:
        run(text, **kw)
    return ei.value


# --- encoding --------------------------------------------------------------------------------
def test_insn_encoding():
    i = Insn(0xB7, 1, 0, 0, -1)
    assert i.encode() == bytes([0xB7, 0x01, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
    assert Insn.decode(i.encode()) == i
    assert Insn.from_word(0x5566778800000018) == Insn(0x18, 0, 0, 0, 0x55667788)
    assert isa.decode(isa.encode([i, i])) == [i, i]
    with pytest.raises(ValueError):
        isa.decode(b"\x00" * 7)


def test_assembler_forms():
    p = assemble("""
        mov %r0, 1         # comment
    top: add32 %r0, -1
        lddw %r1, 0x1122334455667788
        ldxsw %r2, [%r10-4]
        lock fetch add32 [%r10-8], %r3
        lock cmpxchg [%r1+0x10], %r4
        call local top
        call %r2
        call 7
        ja32 top
        be16 %r3
        bswap64 %r3
        movsx1632 %r4, %r3
        sdiv %r4, -3
        exit
    """)
    assert p[0] == Insn(0xB7, 0, 0, 0, 1)
    assert p[1] == Insn(0x04, 0, 0, 0, -1)
    assert p[2:4] == isa.lddw(1, 0x1122334455667788)
    assert p[4] == Insn(0x81, 2, 10, -4, 0)
    assert p[5] == Insn(0xC3, 10, 3, -8, isa.ADD | isa.FETCH)
    assert p[6] == Insn(0xDB, 1, 4, 16, isa.CMPXCHG)
    assert p[7] == Insn(0x85, 0, 1, 0, 1 - 7 - 1)
    assert p[8] == Insn(0x8D, 2, 0, 0, 0)
    assert p[9] == Insn(0x85, 0, 0, 0, 7)
    assert p[10] == Insn(0x06, 0, 0, 0, 1 - 10 - 1)
    assert p[11] == Insn(0xDC, 3, 0, 0, 16)
    assert p[12] == Insn(0xD7, 3, 0, 0, 64)
    assert p[13] == Insn(0xBC, 4, 3, 16, 0)
    assert p[14] == Insn(0x37, 4, 0, 1, -3)
    assert p[15] == Insn(0x95)


def test_assembler_pseudo_lddw_and_raw():
    p = assemble("lddw %r1, map_fd[3]\nlddw %r2, map_value[4]+8\nraw 0x0000000000000095\n")
    assert p[0] == Insn(0x18, 1, isa.PSEUDO_MAP_FD, 0, 3) and p[1] == Insn(0)
    assert p[2] == Insn(0x18, 2, isa.PSEUDO_MAP_VALUE, 0, 4) and p[3] == Insn(0, 0, 0, 0, 8)
    assert p[4] == Insn(0x95)
    assert assemble(disassemble(p)) == p


@pytest.mark.parametrize("bad", ["mov %r0", "foo %r1, 2", "mov %r16, 1", "ja nowhere",
                                 "mov %r0, 0x100000000", "ldxw %r0, %r1", "x:\nx:\nexit",
                                 "lock nand [%r1], %r2", "ja +40000"])
def test_assembler_errors(bad):
    with pytest.raises(AsmError) as ei:
        assemble(bad)
    assert str(ei.value).startswith("line ")


def test_exit_label_is_first_exit():
    p = assemble("jeq %r1, 0, exit\nmov %r0, 1\nexit\nmov %r0, 2\nexit\n")
    assert p[0].off == 1


_slot = st.builds(Insn, st.integers(0, 255), st.integers(0, 15), st.integers(0, 15),
                  st.integers(-(1 << 15), (1 << 15) - 1), st.integers(-(1 << 31), (1 << 31) - 1))


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.lists(_slot, min_size=1, max_size=12))
def test_disassembler_round_trip_random(slots):
    assert assemble(disassemble(slots)) == slots
    assert assemble(disassemble(slots, labels=False)) == slots


def test_disasm_text():
    assert disasm_insn(Insn(0x61, 0, 1, 4, 0)) == ("ldxw %r0, [%r1+4]", 1)
    assert disasm_insn(Insn(0x7B, 10, 1, -8, 0)) == ("stxdw [%r10-8], %r1", 1)
    assert disasm_insn(Insn(0xDB, 10, 1, -8, 1)) == ("lock fetch add [%r10-8], %r1", 1)
    assert disasm_insn(Insn(0xB7, 0, 3, 0, 0))[0].startswith("raw ")  # reserved src field
    text = disassemble(assemble("mov %r0, 0\nl: add %r0, 1\njlt %r0, 10, l\nexit"))
    assert "L1:" in text and "jlt %r0, 10, L1" in text


# --- ALU semantics ------------------------------------------------------------------------------
@pytest.mark.parametrize("prog, expect", [
    ("mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1", 0),                           # div by zero
    ("mov %r0, 7\nmov %r1, 0\nmod %r0, %r1", 7),                           # mod by zero keeps
    ("lddw %r0, 0x100000007\nmov %r1, 0\nmod32 %r0, %r1", 7),              # ...zero-extends
    ("lddw %r0, 0x100000007\nmov %r1, 0\ndiv32 %r0, %r1", 0),
    ("mov %r0, -13\nsmod %r0, 3", (-1) & M64),                             # C remainder
    ("mov %r0, -13\nsdiv %r0, 3", (-4) & M64),                             # truncation
    ("mov %r0, 13\nsmod %r0, -3", 1),
    ("mov32 %r0, -13\nsmod32 %r0, 3", 0xFFFFFFFF),
    ("lddw %r0, 0x8000000000000000\nsdiv %r0, -1", 0x8000000000000000),     # INT_MIN / -1
    ("lddw %r0, 0x8000000000000000\nsmod %r0, -1", 0),
    ("mov32 %r0, 0x80000000\nsdiv32 %r0, -1", 0x80000000),
    ("mov32 %r0, 0x80000000\nsmod32 %r0, -1", 0),
    ("mov %r0, 5\nmov %r1, 0\nsdiv %r0, %r1", 0),
    ("mov %r0, 5\nmov %r1, 0\nsmod %r0, %r1", 5),
    ("mov %r0, -1\nadd32 %r0, 1", 0),                                       # 32-bit wrap
    ("mov %r0, -1\nmov32 %r0, %r0", 0xFFFFFFFF),                            # zero-extension
    ("mov %r0, 1\nlsh %r0, 65", 2),                                         # shift masking
    ("mov %r0, 1\nlsh32 %r0, 33", 2),
    ("mov %r0, -16\narsh32 %r0, 2", 0xFFFFFFFC),
    ("mov %r0, -16\narsh %r0, 2", (-4) & M64),
    ("mov %r0, 3\nneg32 %r0", 0xFFFFFFFD),
    ("mov %r0, -1\ndiv %r0, -1", 1),                                        # imm sign-extended
    ("mov %r1, 0x80\nmovsx864 %r0, %r1", (-128) & M64),
    ("mov %r1, 0x8000\nmovsx1632 %r0, %r1", 0xFFFF8000),
    ("lddw %r1, 0x80000000\nmovsx3264 %r0, %r1", 0xFFFFFFFF80000000),
    ("lddw %r0, 0x1122334455667788\nbe16 %r0", 0x8877),
    ("lddw %r0, 0x1122334455667788\nle32 %r0", 0x55667788),
    ("lddw %r0, 0x1122334455667788\nbswap64 %r0", 0x8877665544332211),
    ("lddw %r0, 0x1122334455667788\nbswap32 %r0", 0x88776655),
])
def test_alu(prog, expect):
    assert run(prog + "\nexit") == expect


def test_jumps_signed_and_32bit():
    assert run("mov %r0, 0\nmov %r1, -1\njsgt %r1, 0, +1\nmov %r0, 1\nexit") == 1
    assert run("mov %r0, 0\nlddw %r1, 0x1ffffffff\njeq32 %r1, -1, +1\nmov %r0, 1\nexit") == 0
    assert run("mov %r0, 0\nmov32 %r1, 0x80000000\njslt32 %r1, 0, +1\nmov %r0, 1\nexit") == 0
    assert run("mov %r0, 0\nmov %r1, 6\njset %r1, 2, +1\nmov %r0, 1\nexit") == 0
    assert run("mov %r0, 0\nja32 +1\nmov %r0, 1\nexit") == 0


# --- atomics --------------------------------------------------------------------------------------
def test_atomics():
    base = "stdw [%r10-8], 10\nmov %r1, 3\n"
    assert run(base + "lock fetch add [%r10-8], %r1\nmov %r0, %r1\nexit") == 10
    assert run(base + "lock fetch add [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit") == 13
    assert run(base + "lock add [%r10-8], %r1\nmov %r0, %r1\nexit") == 3
    assert run(base + "lock xchg [%r10-8], %r1\nmov %r0, %r1\nexit") == 10
    assert run(base + "lock xchg [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit") == 3
    # cmpxchg: compare with r0, old value into r0
    assert run(base + "mov %r0, 10\nlock cmpxchg [%r10-8], %r1\nldxdw %r2, [%r10-8]\n"
               "lsh %r0, 8\nor %r0, %r2\nexit") == (10 << 8) | 3
    assert run(base + "mov %r0, 9\nlock cmpxchg [%r10-8], %r1\nldxdw %r2, [%r10-8]\n"
               "lsh %r0, 8\nor %r0, %r2\nexit") == (10 << 8) | 10
    assert run("stdw [%r10-8], -1\nmov %r1, 1\nlock fetch add32 [%r10-8], %r1\n"
               "ldxdw %r0, [%r10-8]\nexit") == 0xFFFFFFFF00000000
    assert run("stdw [%r10-8], -1\nmov %r1, 1\nlock fetch add32 [%r10-8], %r1\n"
               "mov %r0, %r1\nexit") == 0xFFFFFFFF


# --- calls -------------------------------------------------------------------------------------
def test_local_call_preserves_registers_and_frames():
    prog = """
        mov %r6, 6
        stdw [%r10-8], 42
        mov %r1, 5
        call local f
        ldxdw %r2, [%r10-8]
        add %r0, %r2
        add %r0, %r6
        add %r0, %r1
        exit
    f:  stdw [%r10-8], 1000
        mov %r6, 0
        mov %r0, %r1
        mul %r0, 100
        mov %r1, 0
        exit
    """
    assert run(prog) == 500 + 42 + 6 + 5


def test_helpers_and_callx():
    seen = []

    def h1(vm, r1, r2, r3, r4, r5):
        seen.append((r1, r2, r3, r4, r5))
        return r1 + r2

    def stop(vm, *args):
        raise StopProgram(77)

    def boom(vm, *args):
        raise RuntimeError("bad")

    helpers = {1: h1, 2: stop, 3: boom, 4: lambda vm, *a: "x"}
    assert run("mov %r1, 2\nmov %r2, 3\ncall 1\nexit", helpers=helpers) == 5
    assert run("mov %r3, 1\ncall %r3\nexit", helpers=helpers) == 0
    assert run("call 2\nmov %r0, 1\nexit", helpers=helpers) == 77
    e = err("mov %r0, 0\ncall 3\nexit", helpers=helpers)
    assert e.kind == "HelperError" and str(e).startswith("pc 1: helper 3 failed")
    assert err("call 4\nexit", helpers=helpers).kind == "HelperError"
    e = err("mov %r3, 99\ncall %r3\nexit", helpers=helpers)
    assert str(e) == "pc 1: callx to unknown helper id 99"


def test_helper_errors_name_the_call_pc():
    """The translator calls helpers directly and works out the pc of a failing call from the
    traceback: each failure must read as the interpreter's (run() compares the two)."""
    from kprobesim.ebpf.errors import HelperError

    def no_pc(vm, *args):
        raise HelperError("refused")

    def nested(vm, r1, r2, r3, r4, r5, invoke):
        return invoke(r2)

    helpers = {1: no_pc, 3: lambda vm, *a: 1 // 0, 4: lambda vm, *a: None, 181: nested}
    assert str(err("mov %r0, 0\nmov %r1, 1\ncall 1\nexit", helpers=helpers)) == "pc 2: refused"
    assert str(err("call 4\nexit", helpers=helpers)) == "pc 0: helper 4 returned NoneType, not an int"
    # a helper failing inside a callback (a subprogram run by a helper) names the inner call
    prog = "mov %r1, 1\nlddw %r2, func[+3]\ncall 181\nexit\nmov %r0, 0\ncall 3\nexit"
    e = err(prog, helpers=helpers)
    assert str(e).startswith("pc 6: helper 3 failed: ZeroDivisionError")
    # and one in a bpf-to-bpf subprogram
    e = err("call local sub\nexit\nsub: mov %r0, 0\ncall 3\nexit", helpers=helpers)
    assert str(e).startswith("pc 3: helper 3 failed: ZeroDivisionError")


def test_pointer_reused_as_a_base_checks_every_access():
    """Accesses through one base register share its region in the translation: each is still
    checked, including a base outside its region with offsets that land inside it, a store into
    a read-only region, and an access running off the end (run() compares both engines)."""
    walk = """
        mov %r2, %r1
        add %r2, -8
        ldxdw %r0, [%r2+8]
        ldxdw %r3, [%r2+16]
        add %r0, %r3
        ldxb %r3, [%r2+23]
        add %r0, %r3
        ldxdw %r3, [%r2+{last}]
        exit
    """
    ctx = bytes(range(16))
    assert run(walk.format(last=8), ctx=ctx) == 2 * int.from_bytes(ctx[:8], "little") + \
        int.from_bytes(ctx[8:], "little") + 15 - int.from_bytes(ctx[:8], "little")
    e = err(walk.format(last=17), ctx=ctx)
    assert e.kind == "MemoryFault" and str(e).startswith("pc 7: invalid read of 8 bytes")
    e = err(walk.format(last=0), ctx=ctx)
    assert e.kind == "MemoryFault" and str(e).startswith("pc 7: invalid read of 8 bytes")
    stores = """
        ldxdw %r0, [%r1+0]
        stxdw [%r1+8], %r0
        exit
    """
    assert run(stores, ctx=bytearray(16), ctx_writable=True) == 0
    e = err(stores, ctx=bytes(16))
    assert e.kind == "MemoryFault" and "pc 1: invalid write" in str(e) and "read-only" in str(e)
    loop = """
        mov %r0, 0
        mov %r2, %r1
    l:  ldxb %r3, [%r2+0]
        add %r0, %r3
        stb [%r2+0], 1
        add %r2, 1
        jlt %r0, 1000, l
        exit
    """
    e = err(loop, ctx=bytearray(range(1, 9)), ctx_writable=True)
    assert e.kind == "MemoryFault" and str(e).startswith("pc 2: invalid read of 1 byte")


def test_helper_memory_access():
    def fill(vm, r1, r2, *_):
        vm.memory.write_bytes(r1, b"abcd"[:r2])
        return vm.memory.read(r1, 2)

    prog = "mov %r1, %r10\nadd %r1, -8\nmov %r2, 4\ncall 1\nldxw %r1, [%r10-8]\nlsh %r0, 32\n" \
           "or %r0, %r1\nexit"
    assert run(prog, helpers={1: fill}) == (0x6261 << 32) | 0x64636261
    e = err("mov %r1, 0\nmov %r2, 4\ncall 1\nexit", helpers={1: fill})
    assert e.kind == "MemoryFault" and str(e).startswith("pc 2: invalid write of 4 bytes at 0x0")


def test_ctx_and_lddw_resolver():
    ctx = bytearray(range(16))
    vm = VM("ldxdw %r0, [%r1+8]\nexit")
    assert vm.run(ctx) == int.from_bytes(ctx[8:16], "little")
    assert vm.run(bytes(16)) == 0

    value = bytearray(8)

    def resolver(vm, src, imm, nxt):
        assert src == isa.PSEUDO_MAP_VALUE and imm == 3
        return vm.memory.map_region(value, True, "global", key=("global", imm)) + nxt

    for engine in ENGINES:
        vm = VM("lddw %r1, map_value[3]+4\nstw [%r1], 0x1234\nmov %r0, 0\nexit",
                resolver=resolver, engine=engine)
        assert vm.run() == 0
        assert value[4:8] == (0x1234).to_bytes(4, "little")
        value[:] = bytes(8)


def test_budget_is_identical():
    e = err("mov %r0, 0\nl: add %r0, 1\nja l", budget=1000)
    assert e.kind == "BudgetExhausted" and "budget of 1000" in str(e)
    vm = VM("mov %r0, 0\nmov %r1, 0\nl: add %r1, 1\njlt %r1, 10, l\nexit")
    assert vm.run() == 0 and vm.last_count == 2 + 2 * 10 + 1
    vm.run(engine="interp")
    assert vm.last_count == 23
    with pytest.raises(BudgetExhausted) as ei:
        vm.run(budget=10)
    assert ei.value.pc == 2


# --- memory safety ---------------------------------------------------------------------------------
@pytest.mark.parametrize("prog, kind, size, pc", [
    ("ldxdw %r0, [%r10-520]", "read", 8, 0),          # below the stack frame
    ("ldxw %r0, [%r10+0]", "read", 4, 0),             # above it
    ("stxdw [%r10-516], %r1", "write", 8, 0),
    ("stb [%r10+1], 1", "write", 1, 0),
    ("mov %r2, %r10\nldxdw %r0, [%r2+4]", "read", 8, 1),
    ("mov %r2, %r10\nlock add [%r2-4], %r1", "atomic", 8, 1),
    ("mov %r2, %r10\nlock fetch add [%r2+0], %r1", "atomic", 8, 1),
    ("ldxb %r0, [%r1+16]", "read", 1, 0),              # past mem
    ("ldxh %r0, [%r1-1]", "read", 2, 0),               # before mem
    ("stxw [%r1+13], %r1", "write", 4, 0),
    ("lock cmpxchg32 [%r1+14], %r1", "atomic", 4, 0),
    ("mov %r1, 0\nldxdw %r0, [%r1+0]", "read", 8, 1),  # null
    ("mov %r1, 0\nstdw [%r1+8], 0", "write", 8, 1),
    ("lddw %r1, 0xffffffff81000000\nldxdw %r0, [%r1]", "read", 8, 2),  # a guest pointer
])
def test_memory_faults(prog, kind, size, pc):
    e = err(prog + "\nexit", mem=bytes(16))
    assert e.kind == "MemoryFault"
    assert str(e).startswith(f"pc {pc}: invalid {kind} of {size} bytes at 0x")


def test_null_and_readonly_messages():
    e = err("mov %r1, 0\nldxdw %r0, [%r1+8]\nexit")
    assert str(e) == "pc 1: invalid read of 8 bytes at 0x8 (null pointer dereference)"
    e = err("stw [%r1+0], 1\nexit", ctx=bytes(8))
    assert "read-only" in str(e) and str(e).startswith("pc 0: invalid write of 4 bytes")
    e = err("mov %r2, 1\nlock add32 [%r1+0], %r2\nexit", ctx=bytes(8))
    assert "read-only" in str(e) and str(e).startswith("pc 1: invalid atomic of 4 bytes")
    assert run("stw [%r1+0], 1\nldxw %r0, [%r1+0]\nexit", ctx=bytearray(8),
               ctx_writable=True) == 1


def test_ctx_outside_run_is_unmapped():
    leaked = []

    def grab(vm, r1, *_):
        leaked.append(r1)
        return 0

    vm = VM("call 1\nexit", {1: grab})
    vm.run(bytearray(8))
    with pytest.raises(MemoryFault):
        vm.memory.read(leaked[0], 1)


def test_region_api():
    from kprobesim.ebpf.memory import Memory

    mem = Memory()
    store = bytearray(32)
    view = memoryview(store)[8:16]
    a = mem.map_region(view, True, "map value", key=("m", 1))
    assert mem.map_region(view, True, "map value", key=("m", 1)) == a
    mem.write(a + 4, 4, 0xDEADBEEF)
    assert store[12:16] == bytes.fromhex("efbeadde")
    assert mem.read(a, 8) == 0xDEADBEEF << 32
    with pytest.raises(MemoryFault):
        mem.write(a + 6, 4, 0)
    ro = mem.map_region(b"hello\0world", False, "ro")
    assert mem.read_cstr(ro, 64) == b"hello"
    with pytest.raises(MemoryFault) as ei:
        mem.write(ro, 1, 0)
    assert "read-only" in str(ei.value)
    mem.unmap(a)
    with pytest.raises(MemoryFault):
        mem.read(a, 1)
    t = mem.map_region(bytearray(4), True, "tmp", temporary=True)
    mem.release_temporary()
    assert mem.region_at(t) is None


def test_engines_report_same_error_objects():
    for engine in ENGINES:
        vm = VM("mov %r0, 1\nldxdw %r0, [%r10+8]\nexit", engine=engine)
        with pytest.raises(MemoryFault) as ei:
            vm.run()
        assert ei.value.pc == 1 and ei.value.size == 8 and ei.value.kind == "read"
        assert ei.value.addr == vm.frames[0][1] + 8


def test_helper_error_class():
    assert issubclass(HelperError, EbpfError) and issubclass(MemoryFault, EbpfError)


def test_map_value_region_aliases_storage():
    """Stores and atomics through a pointer to a memoryview slice update the backing storage."""
    prog = """
        mov %r1, 0
        call 1
        jne %r0, 0, +2
        mov %r0, 1
        exit
        stb [%r0+0], 0x11
        sth [%r0+2], 0x2233
        stw [%r0+4], 0x44556677
        mov %r2, 5
        lock add [%r0+8], %r2
        ldxdw %r3, [%r0+0]
        mov %r0, %r3
        exit
    """
    for engine in ENGINES:
        storage = bytearray(64)
        storage[24:32] = (100).to_bytes(8, "little")

        def lookup(vm, *_, storage=storage):
            return vm.memory.map_region(memoryview(storage)[16:32], True, "map value",
                                        key=("map", 0))

        vm = VM(prog, {1: lookup}, engine=engine)
        r0 = vm.run()
        assert r0 == int.from_bytes(storage[16:24], "little")
        assert storage[16] == 0x11 and storage[18:20] == b"\x33\x22"
        assert storage[20:24] == bytes.fromhex("77665544")
        assert int.from_bytes(storage[24:32], "little") == 105
        with pytest.raises(MemoryFault):
            VM("mov %r1, 0\ncall 1\nstdw [%r0+16], 1\nexit", {1: lookup}, engine=engine).run()
