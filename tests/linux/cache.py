"""The test cache (``$KPROBESIM_TEST_CACHE``, default ``~/.cache/kprobesim-test``): a folder shared
by test processes (pytest-xdist workers, concurrent sessions), so every product is made under an
exclusive file lock and published by an atomic rename."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class FetchError(RuntimeError):
    """A test prerequisite (a Debian package, a toolchain, QEMU) could not be obtained; the
    message is one line naming the reason."""


def cache_dir() -> Path:
    """The cache root, created on first use."""
    root = Path(os.environ.get("KPROBESIM_TEST_CACHE") or Path.home() / ".cache" / "kprobesim-test")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the cache-wide exclusive lock ``name`` (a file under ``locks/``) for the block."""
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(exist_ok=True)
    with open(lock_dir / f"{name}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(target: Path, make: Callable[[Path], None]) -> Path:
    """Return ``target``, making it first if absent: ``make(tmp)`` fills a fresh temporary path
    beside it (a file or a folder), which is then renamed into place. Callers hold a lock, so
    the rename is only a guard against a half-made product after a crash."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    work = tmp / target.name
    try:
        make(work)
        os.replace(work, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
