"""The kernel's own BTF (``CONFIG_DEBUG_INFO_BTF``): the ``.BTF`` blob found in an image, a
vmlinux or guest memory by its header, with no section table needed.

A candidate is accepted only if everything in its header agrees: magic 0xeB9F, version 1,
flags 0, a header length of at least 24, a 4-byte aligned type section, a string section that
starts and ends with NUL, and a type section whose records (each kind's fixed part plus
``vlen`` entries) end exactly at its length, naming only offsets inside the string section.
"""

from __future__ import annotations

import struct

from ..ebpf.btf import Btf, BtfError
from ..errors import ImageError

_HEAD = b"\x9f\xeb\x01\x00"  # magic 0xeB9F little-endian, version 1, flags 0
# kind -> (bytes after the 12-byte common record, bytes per vlen entry)
_KIND_SIZES = {
    1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0), 8: (0, 0),
    9: (0, 0), 10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0), 15: (0, 12), 16: (0, 0),
    17: (4, 0), 18: (0, 0), 19: (0, 12),
}


class KernelBtfError(ImageError):
    """No valid ``.BTF`` blob in the bytes given."""


def _check(data: bytes, at: int) -> int | None:
    """The blob's total length if a consistent BTF header and type section start at ``at``."""
    if at + 24 > len(data):
        return None
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", data, at + 4)
    if not 24 <= hdr_len <= 256 or type_off % 4 or type_len % 4 or not type_len or str_len < 2:
        return None
    body = at + hdr_len
    size = max(type_off + type_len, str_off + str_len)
    if body + size > len(data) or type_off < str_off < type_off + type_len:
        return None
    strings = body + str_off
    if data[strings] != 0 or data[strings + str_len - 1] != 0:
        return None
    pos, end = body + type_off, body + type_off + type_len
    while pos < end:
        name_off, info = struct.unpack_from("<II", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        sizes = _KIND_SIZES.get(kind)
        if sizes is None or name_off >= str_len:
            return None
        pos += 12 + sizes[0] + sizes[1] * vlen
    return hdr_len + size if pos == end else None


def find_btf(data: bytes | bytearray | memoryview) -> bytes:
    """The bytes of the (first) valid BTF blob in ``data``."""
    data = bytes(data)
    at = data.find(_HEAD)
    while at >= 0:
        size = _check(data, at)
        if size is not None:
            return data[at:at + size]
        at = data.find(_HEAD, at + 1)
    raise KernelBtfError("no .BTF blob found (a kernel built without CONFIG_DEBUG_INFO_BTF, or not a kernel)")


def kernel_btf(data: bytes | bytearray | memoryview) -> Btf:
    """The kernel's BTF, found in ``data`` and parsed with the eBPF engine's parser."""
    blob = find_btf(data)
    try:
        return Btf.parse(blob)
    except BtfError as e:
        raise KernelBtfError(f"the kernel's .BTF blob does not parse: {e}") from None
