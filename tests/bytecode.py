"""Bytecode of the project's modules, written for the suite even under ``PYTHONDONTWRITEBYTECODE``.

CI's environment (and this machine's) sets ``PYTHONDONTWRITEBYTECODE=1``: then every pytest-xdist
worker compiles the project's modules and rewrites every test module's asserts anew (~6 s of CPU
per worker, most of its collection), and so does every CLI subprocess a test starts (~0.1-0.5 s
each). The suite instead writes the ``__pycache__`` files (ignored by git) as Python does by
default, and shares the work: each worker compiles the project's files starting at its own share
of the list and skips those another worker has already compiled (Python and pytest write
``.pyc`` files atomically and check them against the source's mtime and size), so two fresh
workers compile half each; subprocesses read the files (their environment still forbids writing).
"""

from __future__ import annotations

import compileall
import fnmatch
import importlib.util
import os
import sys
from pathlib import Path

import pytest

FOLDERS = ("kprobesim", "arch", "tests")  # the project's modules the suite imports


def _fresh(pyc: Path, source: Path) -> bool:
    """Whether ``pyc`` is a timestamp-checked ``.pyc`` of ``source`` as it is now."""
    try:
        with open(pyc, "rb") as f:
            head = f.read(16)
        st = source.stat()
    except OSError:
        return False
    return (head[:8] == importlib.util.MAGIC_NUMBER + bytes(4)
            and head[8:12] == (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
            and head[12:16] == (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))


def _rewriter(config: pytest.Config):
    """A function compiling a test module as pytest's assertion rewriting imports it, or None when
    asserts are not rewritten or this pytest lacks the (internal) functions used."""
    if config.getoption("assertmode", "rewrite") != "rewrite":
        return None
    try:
        from _pytest.assertion.rewrite import PYC_TAIL, _rewrite_test, _write_pyc, assertstate_key, get_cache_dir
    except ImportError:
        return None

    def rewrite(source: Path) -> None:
        pyc = get_cache_dir(source) / (source.name[:-3] + PYC_TAIL)
        if _fresh(pyc, source):
            return
        try:
            pyc.parent.mkdir(parents=True, exist_ok=True)
            stat, code = _rewrite_test(source, config)
        except (OSError, SyntaxError, ValueError):  # a read-only tree, a broken module: pytest
            return  # meets them at import and reports them as it would without this module
        _write_pyc(config.stash[assertstate_key], code, stat, pyc)

    return rewrite


def _rotated(files: list[Path]) -> list[Path]:
    """``files`` starting at this worker's share (pytest-xdist worker n of N starts n/N in)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    start = len(files) * (index % count) // count
    return files[start:] + files[:start]


def share(config: pytest.Config) -> None:
    """Let this process write bytecode and compile the project's modules: the test modules as
    pytest's assertion rewriting imports them (most of the cost), then the others."""
    sys.dont_write_bytecode = False
    root = Path(config.rootpath)
    patterns = [*config.getini("python_files"), "conftest.py"]
    tests, others = [], []
    for path in sorted(p for folder in FOLDERS for p in (root / folder).rglob("*.py")):
        test = folder_of(path, root) == "tests" and any(fnmatch.fnmatch(path.name, p) for p in patterns)
        (tests if test else others).append(path)
    rewrite = _rewriter(config)
    if rewrite is None:
        others, tests = tests + others, []
    for path in _rotated(tests):
        rewrite(path)
    for path in _rotated(others):
        compileall.compile_file(str(path), quiet=2)


def folder_of(path: Path, root: Path) -> str:
    """The top-level folder of ``path`` in the project ``root``."""
    return path.relative_to(root).parts[0]
