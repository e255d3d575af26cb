"""The suite's own set-up: the P-code cache of a run is the run's, also under pytest-xdist."""

from __future__ import annotations

import os
from pathlib import Path

from kprobesim.engine.pcode import diskcache


def test_translation_cache_is_this_run_s(tmp_path_factory):
    folder = Path(os.environ["KPROBESIM_CACHE_DIR"])
    assert diskcache.cache_dir() is not None and diskcache.cache_dir().resolve().is_relative_to(folder.resolve())
    base = tmp_path_factory.getbasetemp()
    run_root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    assert folder == run_root / "pcode-cache" and folder.is_dir()  # shared by this run's workers
    assert not folder.resolve().is_relative_to(Path.home() / ".cache")  # never the user's cache


def _command(text: str) -> list[str]:
    """A shell command's words without the quiet flags and redirections CI adds."""
    quiet = {"-q", "-qq", ">/dev/null"}
    return [w for w in text.split() if w not in quiet]


def test_ci_runs_the_readme_test_command():
    from fwpaths import ROOT

    readme = (ROOT / "README.md").read_text()
    start = readme.index("Run the whole test suite")
    readme_cmd = next(line for line in readme[start:].splitlines() if line.startswith("    apt-get"))
    ci_cmd = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("apt-get"))
    assert _command(ci_cmd) == _command(readme_cmd)
    assert "ruff check" in readme_cmd and "-n auto" in readme_cmd  # lint and both cores, both places


def test_bytecode_is_compiled_once_for_the_workers_and_subprocesses():
    """Under PYTHONDONTWRITEBYTECODE too (CI's environment) the suite writes the project's
    bytecode (``bytecode.py``): the modules and this test module's assert-rewritten code are
    compiled and fresh, so later workers and CLI subprocesses read them instead of compiling."""
    import importlib.util
    import sys

    import bytecode
    from _pytest.assertion.rewrite import PYC_TAIL, get_cache_dir
    from fwpaths import ROOT

    assert not sys.dont_write_bytecode
    for source in (ROOT / "kprobesim" / "machine.py", ROOT / "arch" / "riscv64" / "__init__.py"):
        assert bytecode._fresh(Path(importlib.util.cache_from_source(str(source))), source), source
    here = Path(__file__)
    assert bytecode._fresh(get_cache_dir(here) / (here.name[:-3] + PYC_TAIL), here)
    other = ROOT / "tests" / "fwpaths.py"  # another source's mtime and size: not its bytecode
    assert not bytecode._fresh(Path(importlib.util.cache_from_source(str(ROOT / "kprobesim" / "machine.py"))), other)


def test_workers_start_compiling_at_their_own_share(monkeypatch):
    import bytecode

    files = [Path(f"m{i}.py") for i in range(5)]
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert bytecode._rotated(files) == files
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert bytecode._rotated(files) == files[2:] + files[:2]
