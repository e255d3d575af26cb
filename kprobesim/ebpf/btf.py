"""BTF (BPF Type Format) parser, type queries and a value formatter.

Layout (``include/uapi/linux/btf.h``): a header (magic 0xeB9F, version 1, header length, then
type and string section offsets/lengths relative to the header's end), the type section (records
of ``name_off, info, size|type`` followed by kind-specific data) and the string section. Type id 0
is ``void``; ids of the parsed records start at 1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

BTF_MAGIC = 0xEB9F

BTF_KIND_UNKN = 0
BTF_KIND_INT = 1
BTF_KIND_PTR = 2
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6
BTF_KIND_FWD = 7
BTF_KIND_TYPEDEF = 8
BTF_KIND_VOLATILE = 9
BTF_KIND_CONST = 10
BTF_KIND_RESTRICT = 11
BTF_KIND_FUNC = 12
BTF_KIND_FUNC_PROTO = 13
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_FLOAT = 16
BTF_KIND_DECL_TAG = 17
BTF_KIND_TYPE_TAG = 18
BTF_KIND_ENUM64 = 19

KIND_NAMES = {
    BTF_KIND_UNKN: "UNKN", BTF_KIND_INT: "INT", BTF_KIND_PTR: "PTR", BTF_KIND_ARRAY: "ARRAY",
    BTF_KIND_STRUCT: "STRUCT", BTF_KIND_UNION: "UNION", BTF_KIND_ENUM: "ENUM",
    BTF_KIND_FWD: "FWD", BTF_KIND_TYPEDEF: "TYPEDEF", BTF_KIND_VOLATILE: "VOLATILE",
    BTF_KIND_CONST: "CONST", BTF_KIND_RESTRICT: "RESTRICT", BTF_KIND_FUNC: "FUNC",
    BTF_KIND_FUNC_PROTO: "FUNC_PROTO", BTF_KIND_VAR: "VAR", BTF_KIND_DATASEC: "DATASEC",
    BTF_KIND_FLOAT: "FLOAT", BTF_KIND_DECL_TAG: "DECL_TAG", BTF_KIND_TYPE_TAG: "TYPE_TAG",
    BTF_KIND_ENUM64: "ENUM64",
}

BTF_INT_SIGNED = 1
BTF_INT_CHAR = 2
BTF_INT_BOOL = 4

#: Kinds that only qualify another type.
MODIFIER_KINDS = frozenset(
    {BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG}
)
_REF_KINDS = MODIFIER_KINDS | {BTF_KIND_PTR, BTF_KIND_FUNC, BTF_KIND_VAR, BTF_KIND_DECL_TAG}
_MAX_DEPTH = 32
PTR_SIZE = 8


class BtfError(ValueError):
    """Malformed BTF or a bad type query."""


@dataclass(frozen=True)
class BtfMember:
    """A struct/union member (``bit_offset`` from the start; ``bitfield_size`` 0 if none)."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True)
class BtfParam:
    name: str
    type_id: int


@dataclass(frozen=True)
class BtfVarSecinfo:
    type_id: int
    offset: int
    size: int


@dataclass
class BtfType:
    """One BTF type record. Fields not used by ``kind`` keep their defaults."""

    id: int
    kind: int
    name: str = ""
    size: int = 0  # INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC
    type_id: int = 0  # PTR, modifiers, FUNC, FUNC_PROTO (return), VAR, DECL_TAG, TYPE_TAG
    vlen: int = 0
    kind_flag: bool = False
    int_encoding: int = 0
    int_offset: int = 0
    int_bits: int = 0
    elem_type: int = 0  # ARRAY
    index_type: int = 0
    nelems: int = 0
    members: list[BtfMember] = field(default_factory=list)
    enum_values: list[tuple[str, int]] = field(default_factory=list)
    params: list[BtfParam] = field(default_factory=list)
    linkage: int = 0  # VAR, FUNC
    secinfos: list[BtfVarSecinfo] = field(default_factory=list)
    component_idx: int = -1  # DECL_TAG

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


class Btf:
    """Parsed BTF blob."""

    def __init__(self, types: list[BtfType], strings: bytes) -> None:
        self.types = types
        self.strings = strings
        self._by_name: dict[str, list[int]] = {}
        for t in types[1:]:
            if t.name:
                self._by_name.setdefault(t.name, []).append(t.id)

    # -- parsing ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes) -> Btf:
        """Parse a ``.BTF`` section; raises :class:`BtfError` on malformed input."""
        data = bytes(data)
        if len(data) < 24:
            raise BtfError("BTF header truncated")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x}")
        if version != 1:
            raise BtfError(f"unsupported BTF version {version}")
        if hdr_len < 24 or hdr_len > len(data):
            raise BtfError(f"bad BTF header length {hdr_len}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        body = data[hdr_len:]
        if type_off + type_len > len(body) or str_off + str_len > len(body):
            raise BtfError("BTF sections exceed the blob")
        if type_off % 4:
            raise BtfError("BTF type section is not 4-byte aligned")
        strings = body[str_off : str_off + str_len]
        if str_len and strings[0] != 0:
            raise BtfError("BTF string section must start with a NUL")
        types = _parse_types(body[type_off : type_off + type_len], strings)
        btf = cls(types, strings)
        btf._check_refs()
        return btf

    def _check_refs(self) -> None:
        n = len(self.types)

        def ok(tid: int, what: str, t: BtfType) -> None:
            if not 0 <= tid < n:
                raise BtfError(f"type [{t.id}] {t.kind_name}: {what} refers to bad id {tid}")

        for t in self.types[1:]:
            if t.kind in _REF_KINDS or t.kind == BTF_KIND_FUNC_PROTO:
                ok(t.type_id, "type", t)
            if t.kind == BTF_KIND_ARRAY:
                ok(t.elem_type, "element", t)
                ok(t.index_type, "index", t)
            for m in t.members:
                ok(m.type_id, f"member {m.name!r}", t)
            for p in t.params:
                ok(p.type_id, f"param {p.name!r}", t)
            for s in t.secinfos:
                ok(s.type_id, "variable", t)

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.types)

    def string(self, offset: int) -> str:
        """The string at ``offset`` of the string section."""
        return _str_at(self.strings, offset)

    def type(self, type_id: int) -> BtfType:
        """The record of ``type_id`` (0 is ``void``)."""
        if not 0 <= type_id < len(self.types):
            raise BtfError(f"no BTF type {type_id}")
        return self.types[type_id]

    def find(self, name: str, kind: int | None = None) -> int | None:
        """Id of the first type named ``name`` (optionally of ``kind``)."""
        for tid in self._by_name.get(name, []):
            if kind is None or self.types[tid].kind == kind:
                return tid
        return None

    def resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers (const, volatile, restrict, type tags)."""
        for _ in range(_MAX_DEPTH):
            t = self.type(type_id)
            if t.kind not in MODIFIER_KINDS:
                return type_id
            type_id = t.type_id
        raise BtfError(f"type chain too deep at {type_id}")

    def resolved(self, type_id: int) -> BtfType:
        return self.type(self.resolve(type_id))

    def size_of(self, type_id: int) -> int:
        """Byte size of a type (pointers are 8 bytes)."""
        return self._size(type_id, 0)

    def _size(self, type_id: int, depth: int) -> int:
        if depth > _MAX_DEPTH:
            raise BtfError(f"type {type_id} nests too deeply")
        t = self.resolved(type_id)
        if t.kind in (BTF_KIND_INT, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM,
                      BTF_KIND_ENUM64, BTF_KIND_FLOAT, BTF_KIND_DATASEC):
            return t.size
        if t.kind == BTF_KIND_PTR:
            return PTR_SIZE
        if t.kind == BTF_KIND_ARRAY:
            return t.nelems * self._size(t.elem_type, depth + 1)
        if t.kind == BTF_KIND_VAR:
            return self._size(t.type_id, depth + 1)
        raise BtfError(f"type [{t.id}] {t.kind_name} has no size")

    def members(self, type_id: int) -> list[BtfMember]:
        """Members of a struct/union (after resolving modifiers)."""
        t = self.resolved(type_id)
        if t.kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            raise BtfError(f"type [{t.id}] {t.kind_name} is not a struct or union")
        return t.members

    def member(self, type_id: int, name: str) -> BtfMember:
        for m in self.members(type_id):
            if m.name == name:
                return m
        raise BtfError(f"type [{type_id}] has no member {name!r}")

    def type_name(self, type_id: int) -> str:
        """C-like spelling of a type: ``u32``, ``struct task``, ``char[16]``, ``int *``."""
        return self._name(type_id, 0)

    def _name(self, type_id: int, depth: int) -> str:
        if depth > _MAX_DEPTH:
            return "..."
        if type_id == 0:
            return "void"
        t = self.type(type_id)
        k = t.kind
        if k == BTF_KIND_PTR:
            return self._name(t.type_id, depth + 1) + " *"
        if k == BTF_KIND_ARRAY:
            return f"{self._name(t.elem_type, depth + 1)}[{t.nelems}]"
        if k in (BTF_KIND_CONST, BTF_KIND_VOLATILE, BTF_KIND_RESTRICT):
            return f"{KIND_NAMES[k].lower()} {self._name(t.type_id, depth + 1)}"
        if k == BTF_KIND_TYPE_TAG:
            return self._name(t.type_id, depth + 1)
        if k in (BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM, BTF_KIND_ENUM64):
            tag = {BTF_KIND_STRUCT: "struct", BTF_KIND_UNION: "union"}.get(k, "enum")
            return f"{tag} {t.name}" if t.name else f"{tag} <anon>"
        if k == BTF_KIND_FWD:
            return f"{'union' if t.kind_flag else 'struct'} {t.name}"
        if k == BTF_KIND_FUNC_PROTO:
            args = ", ".join(self._name(p.type_id, depth + 1) for p in t.params)
            return f"{self._name(t.type_id, depth + 1)} (*)({args})"
        return t.name or f"<{t.kind_name.lower()}>"

    def datasec(self, name: str) -> BtfType | None:
        tid = self.find(name, BTF_KIND_DATASEC)
        return None if tid is None else self.types[tid]

    # -- value formatting ------------------------------------------------------------------
    def format_value(self, type_id: int, data: bytes | bytearray | memoryview) -> str:
        """Render ``data`` as a value of ``type_id``: ``{pid=1, comm="kworker/0"}``.

        Never raises: data that is too short or a type that cannot be decoded gives hex.
        """
        data = bytes(data)
        try:
            return self._fmt(type_id, data, 0, 0)
        except (struct.error, IndexError, BtfError):
            return "0x" + data.hex()

    def _is_char(self, type_id: int) -> bool:
        t = self.resolved(type_id)
        return t.kind == BTF_KIND_INT and t.size == 1 and (
            bool(t.int_encoding & BTF_INT_CHAR) or t.name == "char"
        )

    def _fmt(self, type_id: int, data: bytes, bit_off: int, depth: int) -> str:
        if depth > _MAX_DEPTH:
            return "..."
        t = self.resolved(type_id)
        k = t.kind
        off = bit_off // 8
        if k == BTF_KIND_INT:
            nbits = t.int_bits or t.size * 8
            raw = int.from_bytes(data[off : off + t.size], "little")
            raw = (raw >> t.int_offset) & ((1 << nbits) - 1)
            if t.int_encoding & BTF_INT_BOOL:
                return "true" if raw else "false"
            if t.int_encoding & BTF_INT_SIGNED and raw >> (nbits - 1):
                raw -= 1 << nbits
            return str(raw)
        if k in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
            v = int.from_bytes(data[off : off + t.size], "little", signed=t.kind_flag)
            mask = (1 << (8 * t.size)) - 1
            for name, val in t.enum_values:
                if val & mask == v & mask:
                    return name
            return str(v)
        if k == BTF_KIND_PTR:
            return hex(int.from_bytes(data[off : off + PTR_SIZE], "little"))
        if k == BTF_KIND_FLOAT:
            fmt = {4: "<f", 8: "<d"}.get(t.size)
            if fmt is None:
                return "0x" + data[off : off + t.size].hex()
            return repr(struct.unpack_from(fmt, data, off)[0])
        if k == BTF_KIND_ARRAY:
            esz = self._size(t.elem_type, depth + 1)
            if self._is_char(t.elem_type):
                return _c_string(data[off : off + t.nelems])
            items = [
                self._fmt(t.elem_type, data, bit_off + i * esz * 8, depth + 1)
                for i in range(min(t.nelems, 1024))
            ]
            if t.nelems > 1024:
                items.append("...")
            return "[" + ", ".join(items) + "]"
        if k in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            parts = []
            for m in t.members:
                if m.bitfield_size:
                    pos = bit_off + m.bit_offset
                    nbytes = (pos % 8 + m.bitfield_size + 7) // 8
                    raw = int.from_bytes(data[pos // 8 : pos // 8 + nbytes], "little")
                    raw = (raw >> (pos % 8)) & ((1 << m.bitfield_size) - 1)
                    mt = self.resolved(m.type_id)
                    signed = mt.kind == BTF_KIND_INT and mt.int_encoding & BTF_INT_SIGNED
                    if signed and raw >> (m.bitfield_size - 1):
                        raw -= 1 << m.bitfield_size
                    text = str(raw)
                else:
                    text = self._fmt(m.type_id, data, bit_off + m.bit_offset, depth + 1)
                parts.append(f"{m.name}={text}" if m.name else text)
            return "{" + ", ".join(parts) + "}"
        if k == BTF_KIND_VAR:
            return self._fmt(t.type_id, data, bit_off, depth + 1)
        if k == BTF_KIND_DATASEC:
            parts = []
            for s in t.secinfos:
                text = self._fmt(s.type_id, data, bit_off + s.offset * 8, depth + 1)
                parts.append(f"{self.type(s.type_id).name}={text}")
            return "{" + ", ".join(parts) + "}"
        return "0x" + data[off:].hex()


def _c_string(raw: bytes) -> str:
    raw = raw.split(b"\0", 1)[0]
    out = []
    for b in raw:
        c = chr(b)
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append({0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}.get(b, f"\\x{b:02x}"))
    return '"' + "".join(out) + '"'


def _str_at(strings: bytes, off: int) -> str:
    if off == 0 and not strings:
        return ""
    if off >= len(strings):
        raise BtfError(f"string offset {off} out of range")
    end = strings.find(b"\0", off)
    if end < 0:
        raise BtfError(f"unterminated string at {off}")
    return strings[off:end].decode("utf-8", "replace")


def _parse_types(sec: bytes, strings: bytes) -> list[BtfType]:
    types = [BtfType(0, BTF_KIND_UNKN, "void")]
    pos = 0
    n = len(sec)

    def take(fmt: str) -> tuple[int, ...]:
        nonlocal pos
        sz = struct.calcsize(fmt)
        if pos + sz > n:
            raise BtfError(f"type [{len(types)}] truncated")
        vals = struct.unpack_from(fmt, sec, pos)
        pos += sz
        return vals

    while pos < n:
        tid = len(types)
        name_off, info, size_type = take("<III")
        vlen = info & 0xFFFF
        kind = (info >> 24) & 0x1F
        kflag = bool(info >> 31)
        name = _str_at(strings, name_off)
        t = BtfType(tid, kind, name, vlen=vlen, kind_flag=kflag)
        if kind in (BTF_KIND_INT, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM,
                    BTF_KIND_ENUM64, BTF_KIND_FLOAT, BTF_KIND_DATASEC):
            t.size = size_type
        else:
            t.type_id = size_type
        if kind == BTF_KIND_INT:
            (enc,) = take("<I")
            t.int_encoding = (enc >> 24) & 0xF
            t.int_offset = (enc >> 16) & 0xFF
            t.int_bits = enc & 0xFF
            if t.int_bits > 128 or t.size > 16 or t.int_offset + t.int_bits > t.size * 8:
                raise BtfError(f"type [{tid}] INT: bad encoding")
        elif kind == BTF_KIND_ARRAY:
            t.elem_type, t.index_type, t.nelems = take("<III")
        elif kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            for _ in range(vlen):
                mname, mtype, moff = take("<III")
                if kflag:
                    bits, bsize = moff & 0xFFFFFF, moff >> 24
                else:
                    bits, bsize = moff, 0
                t.members.append(BtfMember(_str_at(strings, mname), mtype, bits, bsize))
        elif kind == BTF_KIND_ENUM:
            for _ in range(vlen):
                ename, val = take("<Ii")
                t.enum_values.append((_str_at(strings, ename), val if kflag else val & 0xFFFFFFFF))
        elif kind == BTF_KIND_ENUM64:
            for _ in range(vlen):
                ename, lo, hi = take("<III")
                v = (hi << 32) | lo
                if kflag and v >> 63:
                    v -= 1 << 64
                t.enum_values.append((_str_at(strings, ename), v))
        elif kind == BTF_KIND_FUNC_PROTO:
            for _ in range(vlen):
                pname, ptype = take("<II")
                t.params.append(BtfParam(_str_at(strings, pname), ptype))
        elif kind == BTF_KIND_VAR:
            (t.linkage,) = take("<I")
        elif kind == BTF_KIND_DATASEC:
            for _ in range(vlen):
                t.secinfos.append(BtfVarSecinfo(*take("<III")))
        elif kind == BTF_KIND_DECL_TAG:
            (t.component_idx,) = take("<i")
        elif kind == BTF_KIND_FUNC:
            t.linkage = vlen
        elif kind in (BTF_KIND_PTR, BTF_KIND_FWD, BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE,
                      BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_FLOAT, BTF_KIND_TYPE_TAG):
            pass
        else:
            raise BtfError(f"type [{tid}]: unknown kind {kind}")
        types.append(t)
    return types
