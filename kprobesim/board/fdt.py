"""A flattened device tree (DTB) writer and a small reader for checking one.

Version 17 blobs: header, memory reservation map (empty), structure block, strings block.
Property values are given as bytes, ``str`` (NUL-terminated), ``int`` (one 32-bit cell) or a
list of ints (cells) or strs (a string list).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = 0xD00DFEED
BEGIN_NODE, END_NODE, PROP, NOP, END = 1, 2, 3, 4, 9
Value = bytes | str | int | list


@dataclass
class Node:
    name: str
    props: dict[str, Value] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    def add(self, name: str, props: dict[str, Value] | None = None) -> Node:
        child = Node(name, dict(props or {}))
        self.children.append(child)
        return child


def encode(value: Value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode() + b"\0"
    if isinstance(value, int):
        return struct.pack(">I", value)
    if all(isinstance(v, str) for v in value):
        return b"".join(v.encode() + b"\0" for v in value)
    return b"".join(struct.pack(">I", v) for v in value)


def cells64(*values: int) -> list[int]:
    """64-bit numbers as pairs of cells (for #address-cells = #size-cells = 2)."""
    return [c for v in values for c in (v >> 32, v & 0xFFFFFFFF)]


def build(root: Node, boot_cpu: int = 0) -> bytes:
    """The DTB of the tree under ``root``."""
    structure = bytearray()
    strings = bytearray()
    offsets: dict[str, int] = {}

    def name_off(name: str) -> int:
        if name not in offsets:
            offsets[name] = len(strings)
            strings.extend(name.encode() + b"\0")
        return offsets[name]

    def pad() -> None:
        structure.extend(b"\0" * (-len(structure) % 4))

    def emit(node: Node) -> None:
        structure.extend(struct.pack(">I", BEGIN_NODE) + node.name.encode() + b"\0")
        pad()
        for key, value in node.props.items():
            data = encode(value)
            structure.extend(struct.pack(">III", PROP, len(data), name_off(key)) + data)
            pad()
        for child in node.children:
            emit(child)
        structure.extend(struct.pack(">I", END_NODE))

    emit(root)
    structure.extend(struct.pack(">I", END))
    header_size = 40
    rsvmap = header_size
    rsv = b"\0" * 16  # an empty reservation map: one terminating entry
    off_struct = rsvmap + len(rsv)
    off_strings = off_struct + len(structure)
    total = off_strings + len(strings)
    total += -total % 8
    header = struct.pack(
        ">10I", MAGIC, total, off_struct, off_strings, rsvmap, 17, 16, boot_cpu, len(strings), len(structure)
    )
    return (header + rsv + bytes(structure) + bytes(strings)).ljust(total, b"\0")


class FdtError(ValueError):
    """The blob is not a valid flattened device tree."""


def parse(blob: bytes) -> Node:
    """Read a DTB back into nodes (property values as raw bytes)."""
    if len(blob) < 40:
        raise FdtError("shorter than an FDT header")
    magic, total, off_struct, off_strings, _, version, _, _, size_strings, size_struct = struct.unpack_from(
        ">10I", blob
    )
    if magic != MAGIC:
        raise FdtError(f"bad magic {magic:#x}")
    if total > len(blob) or off_struct + size_struct > total or off_strings + size_strings > total or version < 16:
        raise FdtError("header sizes do not fit the blob")
    pos, end = off_struct, off_struct + size_struct
    stack: list[Node] = []
    root: Node | None = None
    try:
        while pos < end:
            (token,) = struct.unpack_from(">I", blob, pos)
            pos += 4
            if token == BEGIN_NODE:
                nul = blob.index(b"\0", pos)
                node = Node(blob[pos:nul].decode())
                pos = (nul + 4) & ~3
                if stack:
                    stack[-1].children.append(node)
                elif root is None:
                    root = node
                else:
                    raise FdtError("two root nodes")
                stack.append(node)
            elif token == END_NODE:
                if not stack:
                    raise FdtError("unbalanced END_NODE")
                stack.pop()
            elif token == PROP:
                length, nameoff = struct.unpack_from(">II", blob, pos)
                pos += 8
                if not stack or pos + length > end:
                    raise FdtError("property outside a node or past the structure block")
                nul = blob.index(b"\0", off_strings + nameoff)
                stack[-1].props[blob[off_strings + nameoff : nul].decode()] = blob[pos : pos + length]
                pos = (pos + length + 3) & ~3
            elif token == NOP:
                continue
            elif token == END:
                break
            else:
                raise FdtError(f"unknown token {token:#x}")
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, FdtError):
            raise
        raise FdtError(f"malformed structure block ({e})") from None
    if root is None or stack:
        raise FdtError("no complete root node")
    return root
