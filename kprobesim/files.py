"""Opening user-named input files: regular files only, read with a size bound.

A FIFO would block before any time limit applies, a device (``/dev/zero``) never ends, and
``/proc`` files lie about their size: every input the CLI or API reads goes through here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def open_regular(path: Path, what: str, error: Callable[[str], Exception]) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file (without blocking on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot open: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise error(f"{path}: cannot open: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or special file"
        raise error(f"{path}: is {kind}, not a regular file ({what})")
    return os.fdopen(fd, "rb")


def read_bounded(f: BinaryIO, path: Path, limit: int, what: str, error: Callable[[str], Exception]) -> bytes:
    """The rest of ``f``, refusing more than ``limit`` bytes (sizes of /proc files are not trusted)."""
    try:
        data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit:,} bytes, the most a {what} may have")
    return data


def read_regular(path: Path, limit: int, what: str, error: Callable[[str], Exception]) -> bytes:
    """A whole regular file of at most ``limit`` bytes (size checked before reading)."""
    with open_regular(path, what, error) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise error(f"{path}: {size:,} bytes is larger than the {limit:,} a {what} may have")
        return read_bounded(f, path, limit, what, error)
