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

_spec = importlib.util.spec_from_file_location("verifier_corpus", Path(__file__).resolve().parent / "verifier_corpus.py")
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
