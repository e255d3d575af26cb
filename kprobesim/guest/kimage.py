"""The kernel inside a Linux boot image, as bytes to scan for kallsyms and BTF:

- an x86 bzImage: the setup header (``HdrS`` at 0x202, boot protocol >= 2.08) gives
  ``payload_offset``/``payload_length`` of the compressed vmlinux, relative to the
  protected-mode code at ``(setup_sects + 1) * 512``; XZ, gzip and LZMA payloads are unpacked;
- a riscv64 ``Image`` (magic ``RISCV\\0\\0\\0`` at 48, or ``RSC\\x05`` at 56): already flat;
- a gzip'd image (``Image.gz``, ``vmlinuz`` on some arches): unpacked;
- anything else (an ELF vmlinux, a memory dump) is returned as given.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import zlib

from ..errors import ImageError

_BZ_MAGIC_AT = 0x202


def is_bzimage(data: bytes) -> bool:
    return len(data) > 0x250 and data[_BZ_MAGIC_AT:_BZ_MAGIC_AT + 4] == b"HdrS"


def is_riscv_image(data: bytes) -> bool:
    return len(data) >= 64 and (data[48:56] == b"RISCV\0\0\0" or data[56:60] == b"RSC\x05")


def bzimage_payload(data: bytes) -> bytes:
    """The compressed payload (vmlinux) of a bzImage, still compressed."""
    if not is_bzimage(data):
        raise ImageError("not a bzImage (no 'HdrS' setup header at 0x202)")
    (version,) = struct.unpack_from("<H", data, 0x206)
    if version < 0x208:
        raise ImageError(f"bzImage boot protocol {version >> 8}.{version & 0xff:02d} is too old (no payload fields)")
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if length == 0 or start + length > len(data):
        raise ImageError(f"bzImage payload {start:#x}+{length:#x} lies outside the {len(data):#x}-byte file")
    return data[start:start + length]


def decompress(blob: bytes) -> bytes:
    """Unpack an XZ, LZMA or gzip stream (trailing bytes, such as the size word Linux appends,
    are ignored)."""
    try:
        if blob.startswith(b"\xfd7zXZ\0"):
            return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(blob)
        if blob.startswith(b"\x5d\0\0"):
            return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(blob)
        if blob.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
    except (lzma.LZMAError, zlib.error, EOFError, gzip.BadGzipFile) as e:
        raise ImageError(f"compressed kernel payload is corrupt: {e}") from None
    kinds = {b"\x28\xb5\x2f\xfd": "zstd", b"\x02\x21\x4c\x18": "lz4", b"\x89LZO": "lzo", b"BZh": "bzip2"}
    for magic, kind in kinds.items():
        if blob.startswith(magic):
            raise ImageError(f"{kind}-compressed kernel payloads are not supported (XZ, LZMA and gzip are)")
    raise ImageError("kernel payload in an unknown compression format")


def kernel_bytes(data: bytes) -> bytes:
    """The uncompressed kernel of a boot image (see the module docstring)."""
    if is_bzimage(data):
        return decompress(bzimage_payload(data))
    if data.startswith(b"\x1f\x8b"):
        return decompress(data)
    return data
