"""Shared fixtures (paths live in fwpaths.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def run_cli(capsysbinary):
    """Run the CLI in-process: returns (status, stdout bytes, stderr text)."""
    from kprobesim.cli import main

    def run(*argv: str) -> tuple[int, bytes, str]:
        status = main(list(argv))
        out, err = capsysbinary.readouterr()
        return status, out, err.decode()

    return run
