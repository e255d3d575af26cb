"""CO-RE: ``.BTF.ext`` relocations resolved against the target kernel's BTF, by libbpf's rules.

A relocation names an instruction (byte offset in its ELF section), a *local* root type (in the
object's own BTF), an access string (``0:3:1``: array index on the root, then member or element
indices) and a kind. Resolution follows libbpf's ``relo_core.c``:

- the local access string is parsed into a *spec* (named members, array elements, bit offset);
- *candidates* are the target types of the same kind whose name equals the root's with any
  ``___flavor`` suffix dropped on both sides;
- each candidate is matched member by member, by exact member name, searching anonymous
  members recursively; field types must be compatible (structs/unions with each other, same
  int-ness, pointers, enums of the same essential name, arrays of compatible elements); array
  indices must stay inside the target array (unless it is a flexible one);
- every matching candidate must give the same bit offset and the same value, else the load fails;
- no candidate: ``*_EXISTS`` and ``TYPE_MATCHES`` give 0, every other kind *poisons* the
  instruction (``call 0xbad2310``), which Linux's verifier refuses when it is reachable.

The computed values patch the instruction: an ALU immediate, a load/store offset (and its size
when the field's size changed and that is safe), or a ``lddw`` constant, each first checked
against the value the compiler wrote (libbpf's *validation*).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from . import isa
from .btf import (
    BTF_INT_SIGNED,
    BTF_KIND_ARRAY,
    BTF_KIND_ENUM,
    BTF_KIND_ENUM64,
    BTF_KIND_FLOAT,
    BTF_KIND_FUNC_PROTO,
    BTF_KIND_FWD,
    BTF_KIND_INT,
    BTF_KIND_PTR,
    BTF_KIND_STRUCT,
    BTF_KIND_UNION,
    BTF_KIND_UNKN,
    MODIFIER_KINDS,
    Btf,
    BtfError,
    BtfType,
)

BTF_EXT_MAGIC = 0xEB9F

# enum bpf_core_relo_kind
FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED = 0, 1, 2, 3
FIELD_LSHIFT_U64, FIELD_RSHIFT_U64 = 4, 5
TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE = 6, 7, 8, 9
ENUMVAL_EXISTS, ENUMVAL_VALUE, TYPE_MATCHES = 10, 11, 12

KIND_STR = {
    FIELD_BYTE_OFFSET: "byte_off", FIELD_BYTE_SIZE: "byte_sz", FIELD_EXISTS: "field_exists",
    FIELD_SIGNED: "signed", FIELD_LSHIFT_U64: "lshift_u64", FIELD_RSHIFT_U64: "rshift_u64",
    TYPE_ID_LOCAL: "local_type_id", TYPE_ID_TARGET: "target_type_id",
    TYPE_EXISTS: "type_exists", TYPE_MATCHES: "type_matches", TYPE_SIZE: "type_size",
    ENUMVAL_EXISTS: "enumval_exists", ENUMVAL_VALUE: "enumval_value",
}  # fmt: skip
FIELD_KINDS = frozenset(range(0, 6))
TYPE_KINDS = frozenset({TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, TYPE_MATCHES})
ENUMVAL_KINDS = frozenset({ENUMVAL_EXISTS, ENUMVAL_VALUE})

#: The helper id libbpf writes into a poisoned instruction (``call 0xbad2310``).
POISON_HELPER = 0xBAD2310
SPEC_MAX_LEN = 64
_COMPAT_DEPTH = 32
_KIND_STR = {
    BTF_KIND_UNKN: "unkn", BTF_KIND_INT: "int", BTF_KIND_PTR: "ptr", BTF_KIND_ARRAY: "array",
    BTF_KIND_STRUCT: "struct", BTF_KIND_UNION: "union", BTF_KIND_ENUM: "enum",
    BTF_KIND_FWD: "fwd", 8: "typedef", 9: "volatile", 10: "const", 11: "restrict",
    12: "func", BTF_KIND_FUNC_PROTO: "func_proto", 14: "var", 15: "datasec",
    BTF_KIND_FLOAT: "float", 17: "decl_tag", 18: "type_tag", BTF_KIND_ENUM64: "enum64",
}  # fmt: skip


class CoreError(Exception):
    """A relocation that makes the load fail (libbpf's message, without the ``libbpf:`` tag)."""


class _Fail(Exception):
    """Internal: an errno-style failure of one step (``-EINVAL``, ``-E2BIG``, ``-EUCLEAN``)."""

    def __init__(self, err: int, msg: str = "") -> None:
        super().__init__(msg)
        self.err = err


@dataclass(frozen=True)
class CoreRelo:
    """One ``struct bpf_core_relo`` record."""

    insn_off: int  # byte offset of the instruction in its section
    type_id: int
    access: str
    kind: int


def parse_btf_ext(data: bytes, btf: Btf) -> dict[str, list[CoreRelo]]:
    """The CO-RE relocations of a ``.BTF.ext`` section, by ELF section name."""
    if len(data) < 8:
        raise BtfError(".BTF.ext header truncated")
    magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != BTF_EXT_MAGIC:
        raise BtfError(f"bad .BTF.ext magic {magic:#x}")
    if version != 1:
        raise BtfError(f"unsupported .BTF.ext version {version}")
    if hdr_len < 32 or hdr_len > len(data):
        return {}  # no CO-RE part (older format: only func and line info)
    core_off, core_len = struct.unpack_from("<II", data, 24)
    if core_len == 0:
        return {}
    start = hdr_len + core_off
    end = start + core_len
    if end > len(data) or core_len < 4:
        raise BtfError(".BTF.ext CO-RE section exceeds the blob")
    (rec_size,) = struct.unpack_from("<I", data, start)
    if rec_size < 16:
        raise BtfError(f".BTF.ext CO-RE record size {rec_size} is too small")
    pos = start + 4
    out: dict[str, list[CoreRelo]] = {}
    while pos < end:
        if pos + 8 > end:
            raise BtfError(".BTF.ext CO-RE section truncated")
        sec_off, num = struct.unpack_from("<II", data, pos)
        pos += 8
        if pos + num * rec_size > end:
            raise BtfError(".BTF.ext CO-RE records exceed the section")
        name = btf.string(sec_off)
        relos = out.setdefault(name, [])
        for _ in range(num):
            insn_off, type_id, access_off, kind = struct.unpack_from("<IIII", data, pos)
            pos += rec_size
            relos.append(CoreRelo(insn_off, type_id, btf.string(access_off), kind))
    return out


# ----------------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------------


@dataclass
class Access:
    type_id: int  # the type the index applies to (the composite of a member, the element type)
    idx: int
    name: str | None = None  # member name (None for array elements)


@dataclass
class Spec:
    btf: Btf
    root_type_id: int
    kind: int
    access: list[Access] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    bit_offset: int = 0

    def copy(self) -> Spec:
        return Spec(self.btf, self.root_type_id, self.kind, [Access(a.type_id, a.idx, a.name) for a in self.access],
                    list(self.raw), self.bit_offset)

    def format(self) -> str:
        """libbpf's ``bpf_core_format_spec``: ``<byte_off> [7] struct task.flags (0:4 @ offset 28)``."""
        t = self.btf.type(self.root_type_id)
        text = f"<{KIND_STR.get(self.kind, str(self.kind))}> [{self.root_type_id}] {_kind_str(t)} {t.name or '<anon>'}"
        if self.kind in TYPE_KINDS:
            return text
        if self.kind in ENUMVAL_KINDS:
            e = self.btf.resolved(self.root_type_id)
            name, val = e.enum_values[self.raw[0]]
            return f"{text}::{name} = {val}"
        for i, a in enumerate(self.access):
            if a.name:
                text += f".{a.name}"
            elif i > 0 or a.idx > 0:
                text += f"[{a.idx}]"
        text += " (" + ":".join(str(r) for r in self.raw)
        if self.bit_offset % 8:
            return text + f" @ offset {self.bit_offset // 8}.{self.bit_offset % 8})"
        return text + f" @ offset {self.bit_offset // 8})"


def _kind_str(t: BtfType) -> str:
    return _KIND_STR.get(t.kind, "unknown")


def essential_len(name: str) -> int:
    """Length of ``name`` without a ``___flavor`` suffix (libbpf's essential name)."""
    i = name.rfind("___")
    return i if i > 0 else len(name)


def _essential(name: str) -> str:
    return name[: essential_len(name)]


def _skip(btf: Btf, tid: int) -> tuple[BtfType, int]:
    """Skip modifiers and typedefs: (type, id)."""
    for _ in range(_COMPAT_DEPTH * 4):
        t = btf.type(tid)
        if t.kind not in MODIFIER_KINDS:
            return t, tid
        tid = t.type_id
    raise _Fail(-errno.EINVAL, "type chain too deep")


def _resolve_size(btf: Btf, tid: int) -> int:
    try:
        return btf.size_of(tid)
    except BtfError:
        raise _Fail(-errno.EINVAL, f"type [{tid}] has no size") from None


def _is_composite(t: BtfType) -> bool:
    return t.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION)


def _is_enum(t: BtfType) -> bool:
    return t.kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64)


def _kinds_compat(a: BtfType, b: BtfType) -> bool:
    return a.kind == b.kind or (_is_enum(a) and _is_enum(b))


def _is_flex_array(btf: Btf, parent: Access | None, arr: BtfType) -> bool:
    """A zero-length array that is the last member of its struct (``char data[]``)."""
    if arr.nelems != 0 or parent is None or not parent.name:
        return False
    t, _ = _skip(btf, parent.type_id)
    return _is_composite(t) and parent.idx == len(t.members) - 1


def parse_spec(btf: Btf, relo: CoreRelo) -> Spec:
    """The local spec of ``relo`` (libbpf's ``bpf_core_parse_spec``)."""
    if not relo.access:
        raise _Fail(-errno.EINVAL, "empty access string")
    try:
        raw = [int(x) for x in relo.access.split(":")]
    except ValueError:
        raise _Fail(-errno.EINVAL, "bad access string") from None
    if len(raw) > SPEC_MAX_LEN or any(r < 0 for r in raw):
        raise _Fail(-errno.E2BIG if len(raw) > SPEC_MAX_LEN else -errno.EINVAL)
    spec = Spec(btf, relo.type_id, relo.kind, raw=raw)
    if relo.kind in TYPE_KINDS:
        if raw != [0]:
            raise _Fail(-errno.EINVAL, "type relocation access must be 0")
        return spec
    t, tid = _skip(btf, relo.type_id)
    if relo.kind in ENUMVAL_KINDS:
        if not _is_enum(t) or len(raw) != 1 or raw[0] >= len(t.enum_values):
            raise _Fail(-errno.EINVAL, "bad enum value access")
        spec.access.append(Access(relo.type_id, raw[0], t.enum_values[raw[0]][0]))
        return spec
    if relo.kind not in FIELD_KINDS:
        raise _Fail(-errno.EINVAL, f"unknown relocation kind {relo.kind}")
    size = _resolve_size(btf, tid)
    spec.access.append(Access(relo.type_id, raw[0]))
    spec.bit_offset = raw[0] * size * 8
    for idx in raw[1:]:
        t, tid = _skip(btf, tid)
        if _is_composite(t):
            if idx >= len(t.members):
                raise _Fail(-errno.EINVAL, "member index out of range")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.access.append(Access(tid, idx, m.name))
            tid = m.type_id
        elif t.kind == BTF_KIND_ARRAY:
            _, elem = _skip(btf, t.elem_type)
            flex = _is_flex_array(btf, spec.access[-1] if len(spec.access) > 1 else None, t)
            if not flex and idx >= t.nelems:
                raise _Fail(-errno.EINVAL, "array index out of range")
            spec.access.append(Access(elem, idx))
            spec.bit_offset += idx * _resolve_size(btf, elem) * 8
            tid = elem
        else:
            raise _Fail(-errno.EINVAL, f"access into a {_kind_str(t)}")
    return spec


# ----------------------------------------------------------------------------------------------
# Compatibility
# ----------------------------------------------------------------------------------------------


def _fields_compat(lb: Btf, lid: int, tb: Btf, tid: int) -> bool:
    for _ in range(_COMPAT_DEPTH):
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if _is_composite(lt) and _is_composite(tt):
            return True
        if not _kinds_compat(lt, tt):
            return False
        if lt.kind in (BTF_KIND_PTR, BTF_KIND_FLOAT):
            return True
        if lt.kind in (BTF_KIND_FWD, BTF_KIND_ENUM, BTF_KIND_ENUM64):
            ln, tn = essential_len(lt.name), essential_len(tt.name)
            return ln == 0 or tn == 0 or (ln == tn and lt.name[:ln] == tt.name[:tn])
        if lt.kind == BTF_KIND_INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if lt.kind == BTF_KIND_ARRAY:
            lid, tid = lt.elem_type, tt.elem_type
            continue
        return False
    raise _Fail(-errno.EINVAL, "type nesting too deep")


def types_are_compat(lb: Btf, lid: int, tb: Btf, tid: int, level: int = _COMPAT_DEPTH) -> bool:
    """libbpf's ``bpf_core_types_are_compat`` (type relocations)."""
    for _ in range(_COMPAT_DEPTH):
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if not _kinds_compat(lt, tt):
            return False
        k = lt.kind
        if k in (BTF_KIND_UNKN, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM, BTF_KIND_FWD, BTF_KIND_ENUM64):
            return True
        if k == BTF_KIND_INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if k == BTF_KIND_PTR:
            lid, tid = lt.type_id, tt.type_id
        elif k == BTF_KIND_ARRAY:
            lid, tid = lt.elem_type, tt.elem_type
        elif k == BTF_KIND_FUNC_PROTO:
            if len(lt.params) != len(tt.params) or level <= 0:
                return False
            for lp, tp in zip(lt.params, tt.params, strict=True):
                if not types_are_compat(lb, lp.type_id, tb, tp.type_id, level - 1):
                    return False
            lid, tid = lt.type_id, tt.type_id
        else:
            return False
    raise _Fail(-errno.EINVAL, "type nesting too deep")


def _names_match(local: str, targ: str) -> bool:
    if not targ:
        return not local
    ln, tn = essential_len(local), essential_len(targ)
    return ln == tn and local[:ln] == targ[:tn]


def _enums_match(lt: BtfType, tt: BtfType) -> bool:
    if lt.size != tt.size or len(lt.enum_values) > len(tt.enum_values):
        return False
    return all(any(_names_match(n, tn) for tn, _ in tt.enum_values) for n, _ in lt.enum_values)


def types_match(lb: Btf, lid: int, tb: Btf, tid: int, behind_ptr: bool = False,
                level: int = _COMPAT_DEPTH) -> bool:
    """libbpf's ``bpf_core_types_match`` (``bpf_core_type_matches``): a stricter structural match."""
    if level <= 0:
        raise _Fail(-errno.EINVAL, "type nesting too deep")
    for _ in range(_COMPAT_DEPTH):
        lt, lid = _skip(lb, lid)
        tt, tid = _skip(tb, tid)
        if not _names_match(lt.name, tt.name):
            return False
        k, tk = lt.kind, tt.kind
        if k == BTF_KIND_UNKN:
            return tk == k
        if k == BTF_KIND_FWD:
            if behind_ptr and tk != k:
                return (tk == BTF_KIND_STRUCT and not lt.kind_flag) or (tk == BTF_KIND_UNION and lt.kind_flag)
            return tk == k and lt.kind_flag == tt.kind_flag
        if _is_enum(lt):
            return _is_enum(tt) and _enums_match(lt, tt)
        if _is_composite(lt):
            if behind_ptr:
                if tk == k:
                    return True
                return tk == BTF_KIND_FWD and (k == BTF_KIND_UNION) == tt.kind_flag
            if tk != k or len(lt.members) > len(tt.members):
                return False
            for lm in lt.members:
                if not any(_names_match(lm.name, tm.name) and types_match(lb, lm.type_id, tb, tm.type_id, behind_ptr,
                                                                          level - 1) for tm in tt.members):
                    return False
            return True
        if tk != k:
            return False
        if k == BTF_KIND_INT:
            same_sign = bool(lt.int_encoding & BTF_INT_SIGNED) == bool(tt.int_encoding & BTF_INT_SIGNED)
            return lt.size == tt.size and same_sign
        if k == BTF_KIND_PTR:
            behind_ptr = True
            lid, tid = lt.type_id, tt.type_id
        elif k == BTF_KIND_ARRAY:
            if lt.nelems != tt.nelems:
                return False
            lid, tid = lt.elem_type, tt.elem_type
        elif k == BTF_KIND_FUNC_PROTO:
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params, strict=True):
                if not types_match(lb, lp.type_id, tb, tp.type_id, behind_ptr, level - 1):
                    return False
            lid, tid = lt.type_id, tt.type_id
        else:
            return False
    raise _Fail(-errno.EINVAL, "type nesting too deep")


# ----------------------------------------------------------------------------------------------
# Matching a candidate
# ----------------------------------------------------------------------------------------------


def _match_member(lb: Btf, lacc: Access, tb: Btf, tid: int, spec: Spec) -> tuple[bool, int]:
    """Find ``lacc``'s member by name in target composite ``tid`` (anonymous members searched)."""
    lm = _skip(lb, lacc.type_id)[0].members[lacc.idx]
    tt, tid = _skip(tb, tid)
    if not _is_composite(tt):
        return False, 0
    for i, m in enumerate(tt.members):
        if len(spec.raw) >= SPEC_MAX_LEN:
            raise _Fail(-errno.E2BIG)
        spec.bit_offset += m.bit_offset
        spec.raw.append(i)
        if not m.name:
            found, nxt = _match_member(lb, lacc, tb, m.type_id, spec)
            if found:
                return True, nxt
        elif m.name == lm.name:
            if _fields_compat(lb, lm.type_id, tb, m.type_id):
                spec.access.append(Access(tid, i, m.name))
                return True, m.type_id
            return False, 0  # libbpf stops at the first member of that name
        spec.bit_offset -= m.bit_offset
        spec.raw.pop()
    return False, 0


def match_candidate(local: Spec, tb: Btf, targ_id: int) -> Spec | None:
    """The target spec of ``local`` in candidate ``targ_id``, or None when it does not match."""
    lb = local.btf
    targ = Spec(tb, targ_id, local.kind)
    if local.kind in TYPE_KINDS:
        ok = (types_match(lb, local.root_type_id, tb, targ_id) if local.kind == TYPE_MATCHES
              else types_are_compat(lb, local.root_type_id, tb, targ_id))
        return targ if ok else None
    if local.kind in ENUMVAL_KINDS:
        tt, _ = _skip(tb, targ_id)
        if not _is_enum(tt):
            return None
        want = _essential(local.access[0].name or "")
        for i, (name, _v) in enumerate(tt.enum_values):
            if _essential(name) == want:
                targ.access.append(Access(targ_id, i, name))
                targ.raw.append(i)
                return targ
        return None
    tid = targ_id
    for i, lacc in enumerate(local.access):
        if i == 0:
            targ.access.append(Access(targ_id, lacc.idx))
            targ.raw.append(lacc.idx)
            targ.bit_offset = lacc.idx * _resolve_size(tb, targ_id) * 8
            continue
        if lacc.name:
            found, tid = _match_member(lb, lacc, tb, tid, targ)
            if not found:
                return None
            continue
        tt, tid = _skip(tb, tid)
        if tt.kind != BTF_KIND_ARRAY:
            return None
        if not _is_flex_array(tb, targ.access[-1] if len(targ.access) > 1 else None, tt) and lacc.idx >= tt.nelems:
            return None
        _, tid = _skip(tb, tt.elem_type)
        if len(targ.raw) >= SPEC_MAX_LEN:
            raise _Fail(-errno.E2BIG)
        targ.access.append(Access(tid, lacc.idx))
        targ.raw.append(lacc.idx)
        targ.bit_offset += lacc.idx * _resolve_size(tb, tid) * 8
    return targ


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0


def _field_value(kind: int, spec: Spec | None) -> tuple[int, int, int, bool]:
    """(value, field size, field type id, validate) of a field relocation on ``spec``."""
    if kind == FIELD_EXISTS:
        return (1 if spec else 0), 0, 0, True
    if spec is None:
        raise _Fail(-errno.EUCLEAN)
    btf = spec.btf
    acc = spec.access[-1]
    if not acc.name:  # an array element (or the root itself)
        sz = _resolve_size(btf, acc.type_id)
        if kind == FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, sz, acc.type_id, True
        if kind == FIELD_BYTE_SIZE:
            return sz, 0, 0, True
        raise _Fail(-errno.EINVAL, "can't be applied to array access")
    t, _ = _skip(btf, acc.type_id)
    m = t.members[acc.idx]
    mt, ftid = _skip(btf, m.type_id)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    if bit_sz:
        byte_sz = mt.size
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Fail(-errno.E2BIG, "can't be satisfied for bitfield")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _resolve_size(btf, ftid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not m.bitfield_size
    if kind == FIELD_BYTE_OFFSET:
        return byte_off, (0 if m.bitfield_size else byte_sz), (0 if m.bitfield_size else ftid), validate
    if kind == FIELD_BYTE_SIZE:
        return byte_sz, 0, 0, validate
    if kind == FIELD_SIGNED:
        signed = (_is_enum(mt) and mt.kind_flag) or (mt.kind == BTF_KIND_INT and bool(mt.int_encoding & BTF_INT_SIGNED))
        return int(signed), 0, 0, True
    if kind == FIELD_LSHIFT_U64:
        return 64 - (bit_off + bit_sz - byte_off * 8), 0, 0, validate
    if kind == FIELD_RSHIFT_U64:
        return 64 - bit_sz, 0, 0, True
    raise _Fail(-errno.EOPNOTSUPP)


def _type_value(kind: int, spec: Spec | None) -> int:
    if spec is None:
        if kind in (TYPE_EXISTS, TYPE_MATCHES):
            return 0
        raise _Fail(-errno.EUCLEAN)
    if kind == TYPE_ID_TARGET:
        return spec.root_type_id
    if kind in (TYPE_EXISTS, TYPE_MATCHES):
        return 1
    if kind == TYPE_SIZE:
        return _resolve_size(spec.btf, spec.root_type_id)
    raise _Fail(-errno.EOPNOTSUPP)


def _enum_value(kind: int, spec: Spec | None) -> int:
    if kind == ENUMVAL_EXISTS:
        return 1 if spec else 0
    if spec is None:
        raise _Fail(-errno.EUCLEAN)
    t, _ = _skip(spec.btf, spec.access[0].type_id)
    return t.enum_values[spec.access[0].idx][1]


def calc(local: Spec, targ: Spec | None) -> Result:
    """libbpf's ``bpf_core_calc_relo``: the original and new values (or a poison request)."""
    res = Result()
    kind = local.kind
    try:
        if kind in FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type_id, res.validate = _field_value(kind, local)
            res.new_val, res.new_sz, res.new_type_id, _ = _field_value(kind, targ)
            if res.orig_sz != res.new_sz and targ is not None:
                ot = local.btf.type(res.orig_type_id)
                nt = targ.btf.type(res.new_type_id)
                ptrs = ot.kind == BTF_KIND_PTR and nt.kind == BTF_KIND_PTR
                uints = (ot.kind == BTF_KIND_INT and nt.kind == BTF_KIND_INT
                         and ot.int_encoding != BTF_INT_SIGNED and nt.int_encoding != BTF_INT_SIGNED)
                res.fail_memsz_adjust = not (ptrs or uints)
        elif kind in TYPE_KINDS:
            res.orig_val = _type_value(kind, local)
            res.new_val = _type_value(kind, targ)
        else:
            res.orig_val = _enum_value(kind, local)
            res.new_val = _enum_value(kind, targ)
    except _Fail as f:
        if f.err != -errno.EUCLEAN:
            raise
        res.poison = True
    return res


def resolve(local_btf: Btf, relo: CoreRelo, targ_btf: Btf, where: str, idx: int,
            log: list[str] | None = None) -> tuple[Result, Spec]:
    """Resolve one relocation: (result, local spec). Raises :class:`CoreError` where libbpf fails.

    ``where`` is ``prog 'NAME'`` and ``idx`` the relocation's number, for the messages; ``log``
    collects the local spec and each matching candidate in libbpf's debug-log words.
    """
    if not 0 < relo.type_id < len(local_btf):
        raise CoreError(f"{where}: relo #{idx}: bad type id {relo.type_id}")
    lt = local_btf.type(relo.type_id)
    try:
        local = parse_spec(local_btf, relo)
    except _Fail as f:
        raise CoreError(f"{where}: relo #{idx}: parsing [{relo.type_id}] {_kind_str(lt)} {lt.name or '<anon>'} + "
                        f"{relo.access} failed: {f.err}") from None
    if log is not None:
        log.append(f"{where}: relo #{idx}: {local.format()}")
    if relo.kind == TYPE_ID_LOCAL:
        return Result(relo.type_id, relo.type_id, validate=False), local
    if not lt.name:
        raise CoreError(f"{where}: relo #{idx}: <{KIND_STR.get(relo.kind)}> ({relo.kind}) relocation doesn't "
                        f"support anonymous types")
    want = _essential(lt.name)
    best: tuple[Result, Spec] | None = None
    try:
        cands = [c for c in targ_btf.types[1:] if c.name and _kinds_compat(c, lt) and _essential(c.name) == want]
        for n, cand in enumerate(cands):
            targ = match_candidate(local, targ_btf, cand.id)
            if targ is None:
                continue
            if log is not None:
                log.append(f"{where}: relo #{idx}: matching candidate #{n} {targ.format()}")
            res = calc(local, targ)
            if best is None:
                best = (res, targ)
            elif targ.bit_offset != best[1].bit_offset:
                raise CoreError(f"{where}: relo #{idx}: field offset ambiguity: {targ.bit_offset} != "
                                f"{best[1].bit_offset}")
            elif res.poison != best[0].poison or (not res.poison and res.new_val != best[0].new_val):
                raise CoreError(f"{where}: relo #{idx}: relocation decision ambiguity: "
                                f"{'failure' if res.poison else 'success'} {res.new_val} != "
                                f"{'failure' if best[0].poison else 'success'} {best[0].new_val}")
        if best is None:
            return calc(local, None), local
    except _Fail as f:
        raise CoreError(f"{where}: relo #{idx}: {local.format()}: {f} ({f.err})") from None
    return best[0], local


# ----------------------------------------------------------------------------------------------
# Patching
# ----------------------------------------------------------------------------------------------


def _poison(code: bytearray, i: int, shown: int, log: list[str]) -> None:
    op = code[8 * i]
    if op == isa.LDDW and 8 * (i + 2) <= len(code):
        _poison(code, i + 1, shown + 1, log)
    struct.pack_into("<BBhi", code, 8 * i, isa.CALL_OP, 0, 0, POISON_HELPER)
    log.append(f"substituting insn #{shown} w/ invalid insn")


def patch(code: bytearray, i: int, res: Result, where: str, idx: int, shown: int | None = None) -> list[str]:
    """Apply ``res`` to instruction ``i`` of ``code`` (``shown``: its number in messages).

    Returns what was done in libbpf's debug-log words (``patched insn #2 (ALU/ALU64) imm 8 -> 28``,
    ``substituting insn #5 w/ invalid insn``), each prefixed with ``where`` and the relocation.
    """
    shown = i if shown is None else shown
    log: list[str] = []
    pre = f"{where}: relo #{idx}: "
    if res.poison:
        _poison(code, i, shown, log)
        return [pre + line for line in log]
    op, regs, off, imm = struct.unpack_from("<BBhi", code, 8 * i)
    cls = op & 7
    orig, new = res.orig_val, res.new_val
    if cls in (isa.ALU, isa.ALU64):
        if op & isa.X:
            raise CoreError(f"{pre}insn #{shown} (ALU/ALU64) uses a register source")
        if res.validate and imm & isa.MASK32 != orig & isa.MASK32:
            raise CoreError(f"{pre}unexpected insn #{shown} (ALU/ALU64) value: got {imm & isa.MASK32}, "
                            f"exp {orig} -> {new}")
        struct.pack_into("<i", code, 8 * i + 4, isa.to_s32(new))
        return [f"{pre}patched insn #{shown} (ALU/ALU64) imm {imm} -> {isa.to_s32(new)}"]
    if cls in (isa.LDX, isa.ST, isa.STX):
        if res.validate and off != orig:
            raise CoreError(f"{pre}unexpected insn #{shown} (LDX/ST/STX) value: got {off}, exp {orig} -> {new}")
        if new > 0x7FFF:
            raise CoreError(f"{pre}insn #{shown} (LDX/ST/STX) value too big: {new}")
        if res.fail_memsz_adjust:
            # libbpf warns that the insn "accesses field incorrectly" and poisons it
            _poison(code, i, shown, log)
            return [pre + line for line in log]
        struct.pack_into("<h", code, 8 * i + 2, new)
        log.append(f"{pre}patched insn #{shown} (LDX/ST/STX) off {off} -> {new}")
        if res.new_sz != res.orig_sz:
            size = isa.SIZE_BYTES[op & 0x18]
            if size != res.orig_sz:
                raise CoreError(f"{pre}insn #{shown} (LDX/ST/STX) unexpected mem size: got {size}, exp {res.orig_sz}")
            if res.new_sz not in isa.SIZE_CODE:
                raise CoreError(f"{pre}insn #{shown} (LDX/ST/STX) invalid new mem size: {res.new_sz}")
            code[8 * i] = (op & ~0x18 & 0xFF) | isa.SIZE_CODE[res.new_sz]
            log.append(f"{pre}patched insn #{shown} (LDX/ST/STX) mem_sz {res.orig_sz} -> {res.new_sz}")
        return log
    if op == isa.LDDW and 8 * (i + 2) <= len(code):
        nop, nregs, noff, nimm = struct.unpack_from("<BBhi", code, 8 * (i + 1))
        if regs >> 4 or off or nop or nregs or noff:
            raise CoreError(f"{pre}insn #{shown} (LDIMM64) has unexpected form")
        value = (imm & isa.MASK32) | ((nimm & isa.MASK32) << 32)
        if res.validate and value != orig & isa.MASK64:
            raise CoreError(f"{pre}unexpected insn #{shown} (LDIMM64) value: got {value}, exp {orig} -> {new}")
        new &= isa.MASK64
        struct.pack_into("<i", code, 8 * i + 4, isa.to_s32(new))
        struct.pack_into("<i", code, 8 * (i + 1) + 4, isa.to_s32(new >> 32))
        return [f"{pre}patched insn #{shown} (LDIMM64) imm64 {value} -> {new}"]
    raise CoreError(f"{pre}trying to relocate unrecognized insn #{shown}, code:{op:#x}, src:{regs >> 4:#x}, "
                    f"dst:{regs & 15:#x}, off:{off:#x}, imm:{imm:#x}")


# ----------------------------------------------------------------------------------------------
# Is a poisoned instruction reachable?
# ----------------------------------------------------------------------------------------------

_M64 = isa.MASK64


def _alu(code: int, a: int, b: int) -> int | None:
    if code == isa.ADD:
        return (a + b) & _M64
    if code == isa.SUB:
        return (a - b) & _M64
    if code == isa.OR:
        return a | b
    if code == isa.AND:
        return a & b
    if code == isa.XOR:
        return a ^ b
    if code == isa.LSH:
        return (a << (b & 63)) & _M64
    if code == isa.RSH:
        return a >> (b & 63)
    if code == isa.MUL:
        return (a * b) & _M64
    return None


def _taken(code: int, a: int, b: int, bits: int) -> bool | None:
    mask = (1 << bits) - 1
    a, b = a & mask, b & mask
    sa = a - (1 << bits) if a >> (bits - 1) else a
    sb = b - (1 << bits) if b >> (bits - 1) else b
    return {
        isa.JEQ: a == b, isa.JNE: a != b, isa.JGT: a > b, isa.JGE: a >= b, isa.JLT: a < b,
        isa.JLE: a <= b, isa.JSET: bool(a & b), isa.JSGT: sa > sb, isa.JSGE: sa >= sb,
        isa.JSLT: sa < sb, isa.JSLE: sa <= sb,
    }.get(code)  # fmt: skip


def reachable(insns: list[isa.Insn]) -> set[int]:
    """Instructions reachable from pc 0 when registers known to be constants decide branches.

    A forward constant propagation (a register is a known constant or unknown; paths that meet
    keep only what they agree on), the part of Linux's verifier that prunes the branches CO-RE
    guards such as ``if (bpf_core_field_exists(...))`` make dead. Subprograms called from
    reachable code are entered with unknown registers.
    """
    n = len(insns)
    unknown = (None,) * isa.NREGS
    states: dict[int, tuple] = {0: unknown}
    work = [0]
    while work:
        pc = work.pop()
        st = list(states[pc])
        op, dst, src, off, imm = insns[pc]
        cls, code = op & 7, op & 0xF0
        succ = [pc + 1]
        if cls == isa.LD:
            st[dst] = (isa.lddw_value(insns[pc], insns[pc + 1]) if src == 0 and pc + 1 < n else None)
            succ = [pc + 2]
        elif cls == isa.LDX:
            st[dst] = None
        elif cls == isa.STX and op & 0xE0 == isa.ATOMIC and imm & isa.FETCH:
            st[0 if imm == isa.CMPXCHG else src] = None
        elif cls in (isa.ALU, isa.ALU64):
            b = st[src] if op & isa.X else imm & _M64
            a = st[dst]
            if code == isa.MOV and not off:
                v = b
            elif code in (isa.NEG, isa.END) or a is None or b is None:
                v = None
            else:
                v = _alu(code, a, b)
            if cls == isa.ALU and v is not None:
                v &= isa.MASK32
            st[dst] = v
        elif cls in (isa.JMP, isa.JMP32):
            if op == isa.EXIT_OP:
                succ = []
            elif code == isa.CALL:
                if op == isa.CALL_OP and src == isa.CALL_LOCAL:
                    succ.append(pc + 1 + imm)
                for r in range(6):
                    st[r] = None
            elif code == isa.JA:
                succ = [pc + 1 + (imm if op == isa.JA32_OP else off)]
            else:
                a = st[dst]
                b = st[src] if op & isa.X else imm & _M64
                taken = None if a is None or b is None else _taken(code, a, b, 32 if cls == isa.JMP32 else 64)
                target = pc + 1 + off
                succ = [pc + 1, target] if taken is None else [target if taken else pc + 1]
        new = tuple(st)
        for nxt in succ:
            if not 0 <= nxt < n:
                continue
            entry = new
            if op == isa.CALL_OP and src == isa.CALL_LOCAL and nxt != pc + 1:
                entry = unknown
            old = states.get(nxt)
            merged = entry if old is None else tuple(x if x == y else None for x, y in zip(old, entry, strict=True))
            if merged != old:
                states[nxt] = merged
                work.append(nxt)
    return set(states)
