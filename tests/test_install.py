"""The README's Python API example runs from the repository root under both installs.

A temporary venv (``--system-site-packages``: the dependencies are already there) gets the project
with ``pip install .`` or ``pip install -e .`` from a copy of the tree; the README's example then
runs from that root as a script, as ``python -c`` and from stdin. In those three ways ``./kprobesim``
comes first on the path and shadows the installed package: it must find the arch packages of the
top-level ``arch/`` folder. From elsewhere, the installed copy is used and must hold them too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fwpaths import ROOT

_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "*.o", ".venv*"
)
_CHECK = "\nimport kprobesim.arch.x86_64 as _a; print('FROM', kprobesim.__file__, _a.__file__)\n"


def readme_example() -> str:
    """The ```python block of the README's "Python API" section, verbatim."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "README has no Python API example"
    return found.group(1)


def _run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize("editable", [False, True], ids=["pip-install", "pip-install-e"])
def test_readme_api_example_from_the_root(tmp_path, editable):
    tree = tmp_path / "checkout"
    shutil.copytree(ROOT, tree, ignore=_IGNORE)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-cache-dir"]
    _run([*install, *(["-e", "."] if editable else ["."])], tree)

    example = readme_example() + _CHECK
    (tree / "example.py").write_text(example)
    runs = [
        _run([python, "example.py"], tree),
        _run([python, "-c", example], tree),
        _run([python, "-"], tree, input=example),
    ]
    for proc in runs:
        lines = proc.stdout.splitlines()
        assert "checksum: 0b9e81be6ba4be3d" in lines
        assert lines[-2].split() == ["557", "0", "2296", "0"]  # kp.hits kp.missed rp.hits rp.missed
        where = lines[-1].split()
        assert where[1] == str(tree / "kprobesim" / "__init__.py")  # the tree shadows the install ...
        assert where[2] == str(tree / "arch" / "x86_64" / "__init__.py")  # ... and finds its own arch code

    # Outside the tree: the installed package (a copy in the venv, or the tree for -e) with its arches.
    probe = "import kprobesim, kprobesim.arch.x86_64 as a; print(kprobesim.__file__); print(a.__file__)"
    files = _run([python, "-c", probe], tmp_path).stdout.split()
    if editable:
        assert files == [str(tree / "kprobesim" / "__init__.py"), str(tree / "arch" / "x86_64" / "__init__.py")]
    else:
        assert all(f.startswith(str(venv)) and "site-packages" in f for f in files), files


def test_every_package_is_installed() -> None:
    """Each package folder of ``kprobesim/`` and ``arch/`` is in pyproject's package list, so a
    plain ``pip install .`` carries it (``kprobesim.board.pc`` once was not)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "kprobesim").rglob("__init__.py")}
    found |= {f"kprobesim.arch.{p.parent.name}" for p in (ROOT / "arch").glob("*/__init__.py")}
    assert found - listed == set()
