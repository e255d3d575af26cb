"""A writer for the ``newc`` cpio format (the one Linux unpacks as an initramfs): ASCII headers
of thirteen 8-digit hex fields after the magic ``070701``, name and data each padded to 4
bytes, closed by a ``TRAILER!!!`` entry. Output is deterministic: inode numbers count up from
1 and every mtime is 0."""

from __future__ import annotations

import stat
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member: ``mode`` holds the file type bits (``stat.S_IFREG | 0o755``)."""

    name: str  # path inside the archive, without a leading slash
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node


def regular(name: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(name, stat.S_IFREG | perm, data)


def directory(name: str, perm: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR | perm)


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _member(ino: int, entry: Entry) -> bytes:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, entry.rdev[0], entry.rdev[1], len(name), 0)
    header = MAGIC + b"".join(b"%08X" % f for f in fields)
    return header + name + _pad4(len(header) + len(name)) + entry.data + _pad4(len(entry.data))


def newc(entries: list[Entry]) -> bytes:
    """The archive holding ``entries`` in order (parents before children), then the trailer."""
    names = [e.name for e in entries]
    if len(set(names)) != len(names) or any(n.startswith("/") or not n for n in names):
        raise ValueError("cpio names must be unique, non-empty and relative")
    out = [_member(i + 1, e) for i, e in enumerate(entries)]
    out.append(_member(0, Entry(TRAILER, 0)))
    return b"".join(out)
