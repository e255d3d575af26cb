"""The bpf_conformance suite for the tests: read from outside the repository (third-party text).

It lives in ``../shared/ebpf-conformance`` beside the repository root (present beside every CI
checkout) or in ``$KPROBESIM_CONFORMANCE_DIR``. When it is missing, a test that needs it fails
under ``CI=true`` and is skipped with the reason otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kprobesim.ebpf.conformance import conformance_dir

SUITE_SIZE = 313  # .data files in the suite's tests/ folder at the pinned commit


def suite_files() -> list[Path]:
    """The suite's ``.data`` files, sorted (empty when the folder is missing)."""
    folder = conformance_dir()
    return sorted(folder.glob("*.data")) if folder.is_dir() else []


def require_suite() -> Path:
    """The suite's folder; fails (CI) or skips (elsewhere) the calling test when it is missing."""
    folder = conformance_dir()
    if suite_files():
        return folder
    reason = f"bpf_conformance suite not found at {folder} (set KPROBESIM_CONFORMANCE_DIR to its tests/ folder)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
