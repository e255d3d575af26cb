"""Load-time verifier: each rejection is one line ``verifier: insn N: reason``."""

from __future__ import annotations

import pytest

from kprobesim.ebpf import isa
from kprobesim.ebpf.asm import assemble
from kprobesim.ebpf.errors import EbpfError, VerifierError
from kprobesim.ebpf.isa import Insn
from kprobesim.ebpf.verifier import verify
from kprobesim.ebpf.vm import VM


def reject(prog, helpers=(), **kw) -> str:
    insns = assemble(prog) if isinstance(prog, str) else prog
    with pytest.raises(VerifierError) as ei:
        verify(insns, helpers, **kw)
    msg = str(ei.value)
    assert msg.startswith("verifier: insn ") and "\n" not in msg
    return msg


@pytest.mark.parametrize("prog, expect", [
    ("mov %r0, 0\nexit\nexit\nmov %r0, 1", "insn 3: last insn of the program is not an exit"),
    ("mov %r0, 0", "insn 0: last insn of the program is not an exit or jump"),
    ("mov %r10, 0\nexit", "insn 0: frame pointer r10 is read only"),
    ("ldxdw %r10, [%r1]\nexit", "insn 0: frame pointer r10 is read only"),
    ("lddw %r10, 1\nexit", "insn 0: frame pointer r10 is read only"),
    ("lock fetch add [%r1], %r10\nexit", "insn 0: frame pointer r10 is read only"),
    ("mov %r11, 0\nexit", "insn 0: invalid dst register r11"),
    ("mov %r0, %r12\nexit", "insn 0: invalid src register r12"),
    ("jeq %r0, %r13, +0\nexit", "insn 0: invalid src register r13"),
    ("ja +5\nexit", "insn 0: jump out of range from insn 0 to 6"),
    ("ja -2\nexit", "insn 0: jump out of range from insn 0 to -1"),
    ("jeq %r1, 0, +1\nlddw %r0, 1\nexit", "insn 0: jump from insn 0 into the middle of lddw"),
    ("call 9\nexit", "insn 0: unknown func bpf_skb_store_bytes#9: helper not implemented by kprobesim"),
    ("call 212\nexit", "insn 0: invalid func unknown#212"),
    ("mov %r0, 0\ncall runtime 3\nexit", "insn 1: kernel function calls (kfunc)"),
    ("call local f\nexit\nf: call local f\nexit", "insn 2: recursive bpf-to-bpf call"),
    ("call local f\nexit\nf: ja g\ng: exit\nmov %r0, 1", "insn 4: last insn of the program"),
    ("call local f\nexit\nf: mov %r0, 1\ncall local g\ng: exit",
     "insn 3: last insn of subprogram at insn 2 is not an exit or jump"),
    ("call local f\nexit\nf: ja -3\nexit", "insn 2: jump from insn 2 to 0 leaves its subprogram"),
    ("lddw %r1, map_fd[1]\nexit", "insn 0: lddw map_fd placeholder needs a loader"),
    ("lddw %r1, func[+5]\nexit", "insn 0: callback target 6 out of range"),
    ("lddw %r1, func[-2]\nexit", "insn 0: callback target -1 out of range"),
    ("lddw %r1, func[-1]\nexit", "insn 0: callback at insn 0 may call itself (recursion)"),
])
def test_rejections(prog, expect):
    assert expect in reject(prog)


@pytest.mark.parametrize("insns, expect", [
    ([], "insn 0: empty program"),
    ([Insn(0x18, 0, 0, 0, 1)], "insn 0: lddw is missing its second slot"),
    ([Insn(0x18, 0, 0, 0, 1), Insn(0x95), Insn(0x95)], "insn 1: invalid second slot of lddw"),
    ([Insn(0x00), Insn(0x95)], "insn 0: invalid opcode 0x00"),
    ([Insn(0x20), Insn(0x95)], "insn 0: legacy packet access"),
    ([Insn(0xB7, 0, 1, 0, 0), Insn(0x95)], "insn 0: mov uses reserved field src"),
    ([Insn(0xBF, 0, 1, 0, 5), Insn(0x95)], "insn 0: mov uses reserved field imm"),
    ([Insn(0x07, 0, 0, 1, 1), Insn(0x95)], "insn 0: add uses reserved field off"),
    ([Insn(0x37, 0, 0, 2, 1), Insn(0x95)], "insn 0: invalid offset 2 for div/mod"),
    ([Insn(0xBC, 0, 1, 32, 0), Insn(0x95)], "insn 0: invalid sign-extension width 32"),
    ([Insn(0xD4, 0, 0, 0, 8), Insn(0x95)], "insn 0: invalid byte swap"),
    ([Insn(0xDF, 0, 0, 0, 16), Insn(0x95)], "insn 0: invalid opcode 0xdf"),
    ([Insn(0x87, 0, 0, 0, 1), Insn(0x95)], "insn 0: neg uses reserved fields"),
    ([Insn(0x95, 0, 0, 0, 1)], "insn 0: exit uses reserved fields"),
    ([Insn(0x96), Insn(0x95)], "insn 0: invalid opcode 0x96"),
    ([Insn(0xE5), Insn(0x95)], "insn 0: invalid opcode 0xe5"),
    ([Insn(0x99, 0, 1, 0, 0), Insn(0x95)], "insn 0: invalid opcode 0x99"),  # ldxsdw
    ([Insn(0xC3, 1, 2, 0, 0x02), Insn(0x95)], "insn 0: invalid atomic operation 0x2"),
    ([Insn(0xD3, 1, 2, 0, 0x00), Insn(0x95)], "insn 0: invalid atomic operand size"),
    ([Insn(0x8D, 1, 0, 0, 1), Insn(0x95)], "insn 0: callx uses reserved fields"),
    ([Insn(0x85, 0, 3, 0, 1), Insn(0x95)], "insn 0: invalid call kind src=3"),
    ([Insn(0x61, 0, 1, 0, 1), Insn(0x95)], "insn 0: ldx uses reserved field imm"),
    ([Insn(0x62, 1, 2, 0, 1), Insn(0x95)], "insn 0: st uses reserved field src"),
    ([Insn(0x05, 0, 0, 0, 1), Insn(0x95)], "insn 0: ja uses reserved fields"),
    ([Insn(0x06, 0, 0, 1, 0), Insn(0x95)], "insn 0: ja uses reserved fields"),
])
def test_rejections_raw(insns, expect):
    assert expect in reject(insns)


def test_unknown_helper_names_instruction():
    prog = "mov %r0, 0\nmov %r1, 1\ncall 1\ncall 2\nexit"
    assert reject(prog, helpers={1: None}) == ("verifier: insn 3: unknown func bpf_map_update_elem#2: "
                                               "helper not implemented by kprobesim")
    with pytest.raises(VerifierError):
        VM(prog, {1: lambda vm, *a: 0})
    VM(prog, {1: lambda vm, *a: 0, 2: lambda vm, *a: 0})


def test_call_depth_limit():
    def chain(n: int) -> str:
        lines = ["call local f1", "exit"]
        for i in range(1, n):
            lines += [f"f{i}: call local f{i + 1}", "exit"]
        lines += [f"f{n}: mov %r0, {n}", "exit"]
        return "\n".join(lines)

    prog = verify(assemble(chain(7)))  # 8 frames
    assert prog.max_frames == 8
    assert VM(chain(7)).run() == 7
    msg = reject(chain(8))
    assert "call stack of 9 frames is too deep (max 8)" in msg
    msg = reject(chain(300))  # long chains fail fast, no Python recursion blow-up
    assert "too deep" in msg


def test_program_size_limit():
    prog = [Insn(0xB7)] * 99 + [Insn(0x95)]
    verify(prog, max_insns=100)
    assert "program too large (101 insns, limit 100)" in reject(prog + [Insn(0x95)],
                                                                 max_insns=100)


def test_resolver_errors_are_verifier_errors():
    def bad(src, imm, nxt):
        raise KeyError(imm)

    msg = reject("lddw %r1, map_fd[7]\nexit", resolver=bad)
    assert msg.startswith("verifier: insn 0: cannot resolve lddw map_fd[7]")
    prog = verify(assemble("lddw %r1, map_idx[2]\nexit"), resolver=lambda s, i, n: 0x1000 + i)
    assert prog.imm64[0] == 0x1002


def test_accepts_conformance_shapes():
    prog = verify(assemble("mov %r0, 1\nlsh %r0, 68\narsh32 %r0, 48\nmov %r1, 5\ncall %r1\n"
                           "div %r0, 0\nmod32 %r0, 0\nexit"))
    assert prog.ninsns == 8
    assert prog.subprogs == [0]


def test_block_costs():
    prog = verify(assemble("mov %r0, 0\nl: add %r0, 1\njlt %r0, 3, l\nlddw %r1, 5\nexit"))
    assert prog.block_cost == {0: 1, 1: 2, 3: 2}


def test_verifier_error_is_ebpf_error():
    assert issubclass(VerifierError, EbpfError)
    e = VerifierError(4, "boom")
    assert str(e) == "verifier: insn 4: boom" and e.insn == 4
    assert isa.MAX_CALL_FRAMES == 8 and isa.STACK_SIZE == 512
