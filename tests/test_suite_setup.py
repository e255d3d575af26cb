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
