"""Shared fixtures (paths live in fwpaths.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _translation_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The P-code engine's disk cache lives in this session's temporary folder: the suite
    neither reads nor fills the user's cache, and starts cold like a fresh machine.
    Subprocesses (CLI tests) inherit the setting."""
    from kprobesim.engine.pcode import diskcache

    os.environ["KPROBESIM_CACHE_DIR"] = str(tmp_path_factory.mktemp("pcode-cache"))
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
