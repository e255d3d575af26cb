"""Files of a Linux initramfs (the ``--initrd`` a machine boots with), as the kernel unpacks it:
``newc`` cpio archives (magic ``070701``/``070702``), each optionally gzip/XZ/LZMA-compressed,
one after another with zero padding between them. Later members replace earlier ones of the
same name, as ``init/initramfs.c`` does."""

from __future__ import annotations

from ..errors import ImageError
from .kimage import decompress

_MAGICS = (b"070701", b"070702")
_HEADER = 110
_TRAILER = "TRAILER!!!"
S_IFMT, S_IFREG = 0o170000, 0o100000


def _align4(n: int) -> int:
    return (n + 3) & ~3


def files(archive: bytes) -> dict[str, bytes]:
    """Regular files of the initramfs by path (no leading ``/``); ImageError if it is damaged."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(archive):
        if archive[pos] == 0:  # padding between archives
            pos += 1
            continue
        head = archive[pos:pos + 6]
        if head not in _MAGICS:
            try:
                archive = archive[:pos] + decompress(archive[pos:])
            except ImageError as e:
                raise ImageError(f"initramfs: no cpio archive at offset {pos:#x} ({e})") from None
            if archive[pos:pos + 6] not in _MAGICS:
                raise ImageError(f"initramfs: the compressed part at {pos:#x} is not a newc cpio archive")
            continue
        if pos + _HEADER > len(archive):
            raise ImageError(f"initramfs: cpio header at {pos:#x} is cut off")
        try:
            fields = [int(archive[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise ImageError(f"initramfs: cpio header at {pos:#x} has a field that is not hex") from None
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = pos + _HEADER
        data_at = _align4(name_at + namesize)
        end = data_at + size
        if namesize < 1 or end > len(archive):
            raise ImageError(f"initramfs: cpio member at {pos:#x} runs past the archive's end")
        name = archive[name_at:name_at + namesize - 1].decode("utf-8", "replace")
        pos = _align4(end)
        if name == _TRAILER:
            continue
        name = name.lstrip("/").removeprefix("./")
        if mode & S_IFMT == S_IFREG:
            out[name] = archive[data_at:end]
        else:
            out.pop(name, None)
    return out


def init_entry(archive: bytes, path: str = "init") -> int:
    """The ELF entry point of the initramfs's ``/init`` (where its process starts)."""
    data = files(archive).get(path)
    if data is None or data[:4] != b"\x7fELF" or len(data) < 64:
        raise ImageError(f"initramfs: no ELF /{path} in it")
    return int.from_bytes(data[24:32], "little")
