"""The verifier by abstract interpretation (kprobesim.ebpf.absint) against Linux's verdicts.

The corpus (verifier_corpus.py) records, for each program, the verdict and message Linux 6.12
gives (checked against Linux itself under QEMU by tests/linux/test_verifier_oracle.py); here
kprobesim's verifier must reach the same verdict with the same message, for riscv64's
strict-alignment rules and its struct pt_regs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kprobesim.ebpf import absint
from kprobesim.ebpf.errors import VerifierError
from kprobesim.ebpf.helper_protos import PROTOS
from kprobesim.ebpf.verifier import verify

_spec = importlib.util.spec_from_file_location("verifier_corpus",
                                               Path(__file__).resolve().parent / "verifier_corpus.py")
assert _spec and _spec.loader
corpus = sys.modules.setdefault("verifier_corpus", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(corpus)

RISCV64_PT_REGS = 288


def _maps(case) -> list[absint.MapInfo]:
    return [absint.MapInfo(f"m{i}", t, k, v, n, bool(flags & 0x80)) for i, (t, k, v, n, flags, _x, _init)
            in enumerate(case.map_specs)]


def kprobesim_verdict(case) -> str | None:
    insns = case.insns
    try:
        verify(insns, set(PROTOS) | set(range(1, 212)), lambda *a: 0)
        absint.verify_program(insns, _maps(case), RISCV64_PT_REGS, case.license, frozenset(PROTOS))
    except VerifierError as e:
        return e.reason
    return None


def test_corpus_is_half_accepted_half_refused() -> None:
    accepted = sum(1 for c in corpus.CASES if c.linux is None)
    assert accepted >= 30 and len(corpus.CASES) - accepted >= 30
    assert len({c.name for c in corpus.CASES}) == len(corpus.CASES)


@pytest.mark.parametrize("case", corpus.CASES, ids=lambda c: c.name)
def test_verdict_is_linuxs(case) -> None:
    got = kprobesim_verdict(case)
    if case.linux is None:
        assert got is None, f"{case.rule}: Linux accepts, kprobesim says {got!r}"
    else:
        assert got is not None and case.linux in got, f"{case.rule}: Linux says {case.linux!r}, kprobesim {got!r}"


# -- kprobesim verify ------------------------------------------------------------------------------------

VERIFY_SRC = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct {
    __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4); __type(key, u64); __type(value, u64);
} h SEC(".maps");
SEC("kprobe/do_work") int good(void *ctx)
{
    u64 k = 1, *v = bpf_map_lookup_elem(&h, &k);
    return v ? *v : 0;
}
SEC("kprobe/do_work") int bad(void *ctx)
{
    u64 k = 1, *v = bpf_map_lookup_elem(&h, &k);
    return *v;	/* no null check */
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_verify_command(tmp_path: Path, run_cli) -> None:
    (tmp_path / "p.c").write_text(VERIFY_SRC)
    obj = corpus_compile(tmp_path / "p.c", tmp_path / "p.o")
    status, out, err = run_cli("verify", str(obj))
    lines = out.decode().splitlines()
    assert status == 1 and err == ""
    assert lines[0].startswith("good (kprobe/do_work): accepted (")
    assert lines[1] == "bad (kprobe/do_work): refused: verifier: insn 7: R0 invalid mem access 'map_value_or_null'"
    status, out, _ = run_cli("verify", "--log", "--arch", "riscv64", str(obj))
    text = out.decode()
    assert status == 1 and "6: call 1 ; R0=map_value_or_null(off=0,map=h)" in text and "R10" not in text


def corpus_compile(src: Path, out: Path) -> Path:
    import shutil
    import subprocess

    cc = shutil.which("clang")
    assert cc, "Debian's clang is missing (apt-get install clang)"
    res = subprocess.run([cc, "-target", "bpf", "-O2", "-g", "-c", f"-I{corpus.INCLUDE}", "-I/usr/include",
                          "-D__TARGET_ARCH_x86", str(src), "-o", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


# -- the abstract scalars are sound: every concrete result lies in the computed range ----------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kprobesim.ebpf import alu, isa  # noqa: E402
from kprobesim.ebpf.scalar import Scalar, alu32, alu64  # noqa: E402

_VALUES = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 300), st.integers(2**64 - 300, 2**64 - 1),
                    st.integers(2**31 - 5, 2**32 + 5))
_OPS = [isa.ADD, isa.SUB, isa.MUL, isa.AND, isa.OR, isa.XOR, isa.LSH, isa.RSH, isa.ARSH, isa.DIV, isa.MOD]


def _abstract(values: list[int]) -> Scalar:
    """A scalar covering ``values``: bounded by them, as a range check would make it."""
    lo, hi = min(values), max(values)
    s = Scalar.bounded(lo, hi)
    assert all(s.r64.umin <= v <= s.r64.umax for v in values)
    return s


def _holds(s: Scalar, v: int) -> bool:
    r, r32, low = s.r64, s.r32, v & 0xFFFFFFFF
    return (r.umin <= v <= r.umax and r.smin <= alu.signed(v, 64) <= r.smax and (v & ~r.mask) == r.value
            and r32.umin <= low <= r32.umax and r32.smin <= alu.signed(low, 32) <= r32.smax
            and (low & ~r32.mask) == r32.value)


@settings(max_examples=300, deadline=None)
@given(st.lists(_VALUES, min_size=1, max_size=4), st.lists(_VALUES, min_size=1, max_size=4),
       st.sampled_from(_OPS), st.booleans())
def test_scalar_operations_are_sound(xs: list[int], ys: list[int], op: int, wide: bool) -> None:
    a, b = _abstract(xs), _abstract(ys)
    if op in (isa.LSH, isa.RSH, isa.ARSH):
        ys = ys[:1]
        b = Scalar.const(ys[0])
    bits = 64 if wide else 32
    res = (alu64 if wide else alu32)(op, a, b)
    for x in xs:
        for y in ys:
            v = alu.alu(op, x, y & ((1 << bits) - 1), 0, bits)
            assert _holds(res, v), (op, bits, x, y, v, res)
