"""kprobesim's verdicts on the verifier corpus's second part (tests/ebpf/verifier_corpus_btf.py):
fentry/fexit programs on Linux 6.12's functions and reads through BTF-typed pointers, verified
against that kernel's own BTF (Debian trixie riscv64, the kernel the oracle boots: riscv64's
pt_regs and strict alignment). Each verdict must be the one Linux gives
(tests/linux/test_verifier_oracle.py checks the corpus against Linux itself).

Cost: reading the kernel's BTF (~3 s of CPU, once per worker); the programs verify in ms.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from kprobesim.ebpf import absint, tracing
from kprobesim.ebpf.errors import VerifierError
from kprobesim.ebpf.helper_protos import PROTOS
from kprobesim.ebpf.verifier import verify
from linux import oracle

_HERE = Path(__file__).resolve().parents[1] / "ebpf"
for _name in ("verifier_corpus", "verifier_corpus_btf"):
    _spec = importlib.util.spec_from_file_location(_name, _HERE / f"{_name}.py")
    assert _spec and _spec.loader
    _mod = sys.modules.setdefault(_name, importlib.util.module_from_spec(_spec))
    if not hasattr(_mod, "CASES"):
        _spec.loader.exec_module(_mod)
corpus_btf = sys.modules["verifier_corpus_btf"]
RISCV64_PT_REGS = 288
RISCV64_ARG_REGS = 8


def kprobesim_verdict(case) -> str | None:
    btf = oracle.btf("riscv64")
    (case,) = [c for c in corpus_btf.resolved(btf) if c.name == case.name]
    insns = case.insns(btf)
    maps = [absint.MapInfo(f"m{i}", t, k, v, n, bool(flags & 0x80))
            for i, (t, k, v, n, flags, _x, _i) in enumerate(case.map_specs())]
    try:
        tctx = tracing.func_model(btf, case.func, case.kind, RISCV64_ARG_REGS) if case.kind != "kprobe" else None
        verify(insns, set(PROTOS) | set(range(1, 212)), lambda *a: 0)
        absint.verify_program(insns, maps, RISCV64_PT_REGS, case.license, frozenset(PROTOS), tracing=tctx,
                              kernel_btf=btf)
    except VerifierError as e:
        return e.reason
    return None


@pytest.mark.parametrize("case", corpus_btf.CASES, ids=lambda c: c.name)
def test_verdict_is_linuxs(case) -> None:
    got = kprobesim_verdict(case)
    if case.linux is None:
        assert got is None, f"{case.rule}: Linux accepts, kprobesim says {got!r}"
    else:
        assert got is not None and case.linux in got, f"{case.rule}: Linux says {case.linux!r}, kprobesim {got!r}"


def test_part_is_half_accepted() -> None:
    accepted = sum(c.linux is None for c in corpus_btf.CASES)
    assert 8 <= accepted and len(corpus_btf.CASES) - accepted >= 8
    assert not {c.name for c in corpus_btf.CASES} & {c.name for c in sys.modules["verifier_corpus"].CASES}
