"""Shared fixtures: paths of the bundled firmware."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
UNICORN_ARCHES = ("riscv64", "x86_64")


def firmware(arch: str, name: str = "kernel.elf") -> Path:
    """Path of a bundled firmware file."""
    return FIRMWARE / arch / name


@pytest.fixture
def run_cli(capsysbinary):
    """Run the CLI in-process: returns (status, stdout bytes, stderr text)."""
    from kprobesim.cli import main

    def run(*argv: str) -> tuple[int, bytes, str]:
        status = main(list(argv))
        out, err = capsysbinary.readouterr()
        return status, out, err.decode()

    return run
