"""Paths of the bundled firmware for the tests (a module of its own: several folders of the
suite have a conftest.py, so ``from conftest import`` would be ambiguous)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
UNICORN_ARCHES = ("riscv64", "x86_64")
ALL_ARCHES = ("riscv64", "x86_64", "loongarch64")


def firmware(arch: str, name: str = "kernel.elf") -> Path:
    """Path of a bundled firmware file."""
    return FIRMWARE / arch / name
