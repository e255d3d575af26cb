"""Shared fixtures (paths live in fwpaths.py)."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode of the project's modules written and compiled once for all workers and
    subprocesses (``bytecode.py``). The pytest-xdist controller collects nothing: only the
    processes that run tests compile. A worker leaves without the interpreter's teardown."""
    if config.getoption("dist", "no") != "no" and not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import bytecode

    bytecode.share(config)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        atexit.register(_leave_without_teardown)  # registered first: the last handler to run


def _leave_without_teardown() -> None:
    """A pytest-xdist worker's end, once its results are sent and the other exit handlers have
    run: skip the final garbage collection over everything the worker's tests left (booted
    Linux machines, translation caches), which held a whole run's end up by ~10 s."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def translation_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test run's P-code cache folder. Under pytest-xdist every worker is a session of its own
    with its own temporary folder below the run's: the workers share one cache in the run's folder
    (the cache file is replaced atomically, so concurrent writers are safe), and one run's
    translations help its other worker."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "pcode-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _translation_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The P-code engine's disk cache lives in this run's temporary folder: the suite neither
    reads nor fills the user's cache, and starts cold like a fresh machine. Subprocesses (CLI
    tests) inherit the setting. At the session's end a worker does not write what it learnt
    (a merge of ~15 MB at exit, seconds of a run's end that no later process reads)."""
    from kprobesim.engine.pcode import diskcache

    os.environ["KPROBESIM_CACHE_DIR"] = str(translation_cache_dir(tmp_path_factory))
    diskcache.reset()
    yield
    diskcache.forget()


@pytest.fixture
def run_cli(capsysbinary):
    """Run the CLI in-process: returns (status, stdout bytes, stderr text)."""
    from kprobesim.cli import main

    def run(*argv: str) -> tuple[int, bytes, str]:
        status = main(list(argv))
        out, err = capsysbinary.readouterr()
        return status, out, err.decode()

    return run


@pytest.fixture(scope="session")
def riscv_linux():
    """Debian's Linux riscv64 on ``virt``, booted once per worker and snapshotted at ``/init``'s
    first instruction (``linux/rvguest.py``; ~15 s of CPU the first time). Modules using it carry
    ``pytest.mark.xdist_group(rvguest.XDIST_GROUP)`` so one worker runs them all from one boot."""
    from linux import rvguest

    return rvguest.booted()


@pytest.fixture(scope="session")
def pc_linux():
    """Debian's Linux x86_64 on ``pc``, booted once per worker and snapshotted at ``/init``'s
    first instruction (``linux/pclinux.py``; ~25-30 s of CPU the first time). Modules using it carry
    ``pytest.mark.xdist_group(pclinux.XDIST_GROUP)`` so one worker runs them all from one boot."""
    from linux import pclinux

    return pclinux.booted()


#: Tests (node-id prefixes) that cost the most CPU, costliest first, measured on the 2-core
#: machine: they are handed to the pytest-xdist workers first, so that no long test starts
#: near the end of a run and stretches it (longest-first scheduling). pytest-xdist's
#: ``loadgroup`` hands out the xdist groups first (most tests first; a group goes to one
#: worker whole: the Linux boots, and modules whose module-scoped fixture is costly, so that
#: it is built once per run, not once per worker), then the other tests in this order. A stale
#: entry only loses its place in the queue; tests that are not listed keep their order.
HEAVY_FIRST = (
    "tests/engine/test_la_conformance.py::",
    "tests/test_virt_sbi.py::test_debian_linux_runs_init_under_the_builtin_sbi",
    "tests/test_synth_fuzz.py::test_campaign",
    "tests/test_fuzz.py::test_fixed_seed_campaign_is_clean",
    "tests/test_fuzz.py::test_planted_simulator_bug_is_found_and_shrunk",
    "tests/test_boost.py::test_transparent_with_slices_ending_everywhere",
    "tests/ebpf/test_properties.py::",
    "tests/test_fuzz.py::test_user_program_campaign_is_clean",
    "tests/test_fuzz.py::test_internal_error_in_a_placement_is_a_finding",
    "tests/test_hostile_properties.py::",
    "tests/test_kprobes.py::test_transparency_every_boundary_of_every_target",
    "tests/test_kprobes.py::test_all_targets_probed_at_once",
    "tests/test_synth_fuzz.py::test_riscv_crosscheck_against_pcode_engine",
    "tests/test_synth_fuzz.py::test_loongarch_crosscheck_against_qemu",
    "tests/test_fuzz.py::test_same_seed_same_placements_any_jobs",
    "tests/test_fuzz.py::test_internal_error_is_shrunk_to_a_replay_line_on_the_command_line",
    "tests/engine/test_pcode_tiers.py::",
    "tests/test_install.py::",
    "tests/linux/test_guest_btf.py::",
    "tests/linux/test_pc_symbols.py::",
    "tests/test_hostile.py::test_big_and_bad_system_maps",
    "tests/test_synth_fuzz.py::test_planted_loongarch_pcalau12i_bug_is_found",
    "tests/ebpf/test_isa.py::test_disassembler_round_trip_random",
)


def heavy_rank(nodeid: str) -> int:
    """The position of ``nodeid`` in HEAVY_FIRST (len(HEAVY_FIRST) when not listed)."""
    return next((i for i, prefix in enumerate(HEAVY_FIRST) if nodeid.startswith(prefix)), len(HEAVY_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Costliest tests first (a stable sort: the rest keep pytest's order). pytest-xdist's
    ``--dist loadgroup`` hands out work in this order (after the xdist groups, biggest first)."""
    items.sort(key=lambda item: heavy_rank(item.nodeid))
