"""Shared fixtures (paths live in fwpaths.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
def _translation_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The P-code engine's disk cache lives in this run's temporary folder: the suite neither
    reads nor fills the user's cache, and starts cold like a fresh machine. Subprocesses (CLI
    tests) inherit the setting."""
    from kprobesim.engine.pcode import diskcache

    os.environ["KPROBESIM_CACHE_DIR"] = str(translation_cache_dir(tmp_path_factory))
    diskcache.reset()


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
    first instruction (``linux/rvguest.py``; ~50 s of CPU the first time). Modules using it carry
    ``pytest.mark.xdist_group(rvguest.XDIST_GROUP)`` so one worker runs them all from one boot."""
    from linux import rvguest

    return rvguest.booted()
