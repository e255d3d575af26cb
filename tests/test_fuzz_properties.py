"""Hypothesis drives the fuzzers' own machinery with a small budget: any placement of probes
on accepted instructions, and any synthetic sequence probed anywhere, changes nothing."""

from __future__ import annotations

import functools

from fwpaths import firmware
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprobesim.fuzz.placement import Placement, PlacementFuzzer
from kprobesim.fuzz.synth import run_synthetic

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@functools.cache
def _fuzzer(arch: str, variant: str | None) -> PlacementFuzzer:
    return PlacementFuzzer(firmware(arch), variant=variant)


def _placements(arch: str, variant: str | None) -> st.SearchStrategy[Placement]:
    fz = _fuzzer(arch, variant)
    return st.builds(
        Placement,
        st.lists(st.sampled_from(fz.candidates), min_size=1, max_size=6).map(tuple),
        st.lists(st.sampled_from(fz.functions), max_size=2, unique=True).map(tuple),
    )


@SETTINGS
@given(data=st.data())
def test_any_placement_is_transparent_riscv64(data):
    p = data.draw(_placements("riscv64", None))
    assert _fuzzer("riscv64", None).check(p) is None, p.text()


@SETTINGS
@given(data=st.data(), variant=st.sampled_from(["tf", "int3"]))
def test_any_placement_is_transparent_x86_64(data, variant):
    p = data.draw(_placements("x86_64", variant))
    assert _fuzzer("x86_64", variant).check(p) is None, p.text()


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), arch=st.sampled_from(["riscv64", "x86_64"]))
def test_any_synthetic_sequence_probed_anywhere_matches(seed, arch):
    report = run_synthetic(arch, seed, 2, length=10)
    assert not report.failures, report.failures[0]
