"""Reader for eBPF ELF objects (``clang -target bpf`` / ``zig cc -target bpfel-freestanding``).

:func:`load_object` turns a relocatable EM_BPF object into a plain :class:`ObjectFile`: programs
with their subprograms linked in and map references patched, map descriptions (BTF ``.maps``,
the legacy ``maps`` section, and ``.rodata*/.data*/.bss*`` as one-element arrays), the license and
the parsed BTF. Nothing is executed.

Map reference convention (as in the kernel's loader ABI): a ``lddw`` that loads a map gets
``src_reg = BPF_PSEUDO_MAP_FD (1)`` and ``imm = map index``; one that loads the address of a
global variable gets ``src_reg = BPF_PSEUDO_MAP_VALUE (2)``, ``imm = map index`` and the second
slot's ``imm = offset`` into the value. The map index is the position in ``ObjectFile.maps``.
A ``lddw`` of a subprogram address (callbacks) gets ``src_reg = BPF_PSEUDO_FUNC (4)`` and
``imm`` = the relative instruction offset to the function, like a bpf-to-bpf call.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..files import read_regular
from . import core
from .btf import BTF_KIND_ARRAY, BTF_KIND_PTR, BTF_KIND_STRUCT, Btf, BtfError, BtfVarSecinfo
from .maps import (
    BPF_F_MMAPABLE,
    BPF_F_RDONLY_PROG,
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_PERF_EVENT_ARRAY,
    BPF_MAP_TYPE_PROG_ARRAY,
    MAP_TYPE_NAMES,
    BpfMap,
    create_map,
)

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHF_WRITE = 0x1
SHF_EXECINSTR = 0x4
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_FUNC = 4
OP_LDDW = 0x18
OP_CALL = 0x85
INSN_SIZE = 8

_MAX_SECTION = 1 << 26
_LEGACY_MAP_DEF = 20  # struct bpf_map_def: type, key_size, value_size, max_entries, map_flags


class ObjectError(Exception):
    """A malformed or unsupported eBPF object; the message starts with the file name."""


@dataclass(frozen=True)
class MapRef:
    """What a patched ``lddw`` refers to: a map (``fd``) or a map value + offset (``value``)."""

    map_name: str
    kind: Literal["fd", "value"]
    offset: int = 0
    map_index: int = 0


@dataclass
class MapSpec:
    """A map the object declares (not yet created)."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    section: str = ""
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    #: Initial contents of a global data section map (``.rodata``/``.data``; zeros for ``.bss``).
    initial_value: bytes | None = None
    extra: dict[str, int] = field(default_factory=dict)
    #: A prog array's declared slots: index -> program name (``.values = { [i] = &prog }``).
    init_slots: dict[int, str] = field(default_factory=dict)

    @property
    def is_data(self) -> bool:
        """True for the array maps made from ``.rodata*``, ``.data*`` and ``.bss*``."""
        return self.initial_value is not None

    def create(self, ncpus: int = 1, btf: Btf | None = None) -> BpfMap:
        """Create the map (``max_entries`` 0 of a perf event array means one slot per CPU)."""
        max_entries = self.max_entries
        if self.map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = ncpus
        m = create_map(self.map_type, self.key_size, self.value_size, max_entries, self.flags,
                       self.name, ncpus, self.extra.get("map_extra", 0))
        m.btf = btf
        m.btf_key_type_id = self.btf_key_type_id
        m.btf_value_type_id = self.btf_value_type_id
        if self.initial_value is not None:
            buf = m.lookup(b"\0\0\0\0")
            if buf is not None:
                buf[:] = self.initial_value
        return m


@dataclass
class Extern:
    """An ``extern`` variable the loader resolves: ``__kconfig`` (a value in the ``.kconfig``
    map at ``offset``) or ``__ksym`` (a kernel symbol's address, patched into ``lddw``'s)."""

    name: str
    kind: Literal["kconfig", "ksym"]
    type_id: int
    weak: bool
    offset: int = 0
    size: int = 0


@dataclass
class ProgramSpec:
    """One program: its linked instructions and the ``lddw`` slots that reference maps."""

    name: str
    section: str
    insns: bytes
    map_refs: list[tuple[int, MapRef]] = field(default_factory=list)
    #: ``(function name, first instruction index)``: the entry at 0, then appended subprograms.
    functions: list[tuple[str, int]] = field(default_factory=list)
    #: Instructions CO-RE poisoned (``call 0xbad2310``): pc -> the relocation libbpf names.
    poisoned: dict[int, str] = field(default_factory=dict)
    #: ``lddw`` instructions that load a ``__ksym`` extern's address: (pc, extern name).
    ksym_refs: list[tuple[int, str]] = field(default_factory=list)

    @property
    def insn_count(self) -> int:
        return len(self.insns) // INSN_SIZE

    def words(self) -> list[int]:
        """Instructions as little-endian u64 words."""
        return list(struct.unpack(f"<{self.insn_count}Q", self.insns))

    @property
    def prog_type(self) -> str:
        """Section prefix, normalised: ``kprobe``, ``kretprobe``, ``tracepoint``, ``uprobe`` ..."""
        prefix = self.section.split("/", 1)[0]
        return {"tp": "tracepoint", "raw_tp": "raw_tracepoint"}.get(prefix, prefix)

    @property
    def attach_point(self) -> str:
        """What follows the first ``/`` of the section name (``do_work`` for ``kprobe/do_work``)."""
        parts = self.section.split("/", 1)
        return parts[1] if len(parts) == 2 else ""


@dataclass
class ObjectFile:
    path: str
    programs: list[ProgramSpec]
    maps: list[MapSpec]
    license: str
    btf: Btf | None
    kern_version: int = 0
    #: What the CO-RE relocations did, one line each in libbpf's debug-log words.
    core_log: list[str] = field(default_factory=list)
    #: ``__kconfig`` and ``__ksym`` externs, by name.
    externs: dict[str, Extern] = field(default_factory=dict)

    def program(self, name: str) -> ProgramSpec:
        """A program by function name or section name."""
        for p in self.programs:
            if p.name == name:
                return p
        for p in self.programs:
            if p.section == name:
                return p
        raise KeyError(name)

    def map(self, name: str) -> MapSpec:
        return self.maps[self.map_index(name)]

    def map_index(self, name: str) -> int:
        for i, m in enumerate(self.maps):
            if m.name == name:
                return i
        raise KeyError(name)

    def create_maps(self, ncpus: int = 1) -> list[BpfMap]:
        """Create every map, in index order."""
        return [m.create(ncpus, self.btf) for m in self.maps]


# ----------------------------------------------------------------------------------------------


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass
class _Symbol:
    index: int
    name: str
    info: int
    shndx: int
    value: int
    size: int

    @property
    def type(self) -> int:
        return self.info & 0xF


@dataclass
class _Func:
    shndx: int
    name: str
    start: int  # instruction index in its section
    end: int

MAX_OBJECT = 64 << 20  # bytes of an eBPF object file


def load_object(path: str | Path, target_btf: Btf | None = None) -> ObjectFile:
    """Read an eBPF object file; raises :class:`ObjectError` on any malformed input.

    ``target_btf``: the kernel's BTF, against which CO-RE relocations are resolved; an object
    with CO-RE relocations and no target BTF is refused (as libbpf does without kernel BTF).
    """
    name = str(path)
    data = read_regular(Path(path), MAX_OBJECT, "eBPF object", ObjectError)
    return parse_object(data, name, target_btf)


def parse_object(data: bytes, name: str = "<memory>", target_btf: Btf | None = None) -> ObjectFile:
    """Parse an eBPF object held in memory (``name`` prefixes error messages)."""
    try:
        return _Reader(bytes(data), name, target_btf).run()
    except ObjectError:
        raise
    except core.CoreError as e:
        raise ObjectError(f"{name}: {e}") from e
    except BtfError as e:
        raise ObjectError(f"{name}: .BTF: {e}") from e
    except (struct.error, IndexError, KeyError, ValueError, UnicodeDecodeError, OverflowError,
            RecursionError) as e:
        raise ObjectError(f"{name}: malformed object ({type(e).__name__}: {e})") from e


class _Reader:
    def __init__(self, data: bytes, name: str, target_btf: Btf | None = None) -> None:
        self.data = data
        self.name = name
        self.target_btf = target_btf
        self.poisons: dict[tuple[int, int], str] = {}
        self.core_log: list[str] = []

    def err(self, what: str) -> ObjectError:
        return ObjectError(f"{self.name}: {what}")

    # -- ELF structure ---------------------------------------------------------------------
    def run(self) -> ObjectFile:
        self._header()
        self._sections()
        self._symbols()
        self.btf = self._btf()
        self.maps: list[MapSpec] = []
        self.map_at: dict[tuple[int, int], int] = {}  # (shndx, offset) -> map index
        self.data_maps: dict[int, int] = {}  # shndx -> map index
        self._legacy_maps()
        self._btf_maps()
        self._data_sections()
        self._externs()
        self._collect_code()
        self._map_initialisers()
        self._core_relocate()
        programs = [self._link(f) for f in self.entry_funcs]
        lic = self._license()
        return ObjectFile(self.name, programs, self.maps, lic, self.btf, self._kern_version(), self.core_log,
                          self.externs)

    def _header(self) -> None:
        d = self.data
        if len(d) < 64:
            raise self.err("truncated ELF header")
        if d[:4] != b"\x7fELF":
            raise self.err("not an ELF file")
        if d[4] != 2:
            raise self.err("not a 64-bit ELF object")
        if d[5] == 2:
            raise self.err("big-endian eBPF objects are not supported")
        if d[5] != 1:
            raise self.err(f"bad ELF data encoding {d[5]}")
        e_type, e_machine = struct.unpack_from("<HH", d, 16)
        if e_machine != EM_BPF:
            raise self.err(f"wrong machine {e_machine} (expected EM_BPF {EM_BPF})")
        if e_type != ET_REL:
            raise self.err(f"not a relocatable object (e_type {e_type})")
        (self.shoff,) = struct.unpack_from("<Q", d, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
        if shnum == 0 or self.shoff == 0:
            raise self.err("no section headers")
        if shentsize != 64:
            raise self.err(f"bad section header size {shentsize}")
        if self.shoff + shnum * 64 > len(d):
            raise self.err("section headers past end of file")
        if shstrndx >= shnum:
            raise self.err(f"bad section name table index {shstrndx}")
        self.shnum = shnum
        self.shstrndx = shstrndx

    def _sections(self) -> None:
        raw = []
        for i in range(self.shnum):
            f = struct.unpack_from("<IIQQQQIIQQ", self.data, self.shoff + 64 * i)
            name_off, typ, flags, _addr, off, size, link, info, _align, entsize = f
            if typ != SHT_NOBITS and typ != 0 and off + size > len(self.data):
                raise self.err(f"section {i} extends past end of file")
            if typ == SHT_NOBITS and size > _MAX_SECTION:
                raise self.err(f"section {i} is too large ({size} bytes)")
            raw.append((name_off, typ, flags, off, size, link, info, entsize))
        strtab = raw[self.shstrndx]
        if strtab[1] != SHT_STRTAB:
            raise self.err("section name table is not a string table")
        shstr = self.data[strtab[3] : strtab[3] + strtab[4]]
        self.sections = [
            _Section(i, self._cstr(shstr, r[0], "section name"), *r[1:])
            for i, r in enumerate(raw)
        ]

    def _cstr(self, table: bytes, off: int, what: str) -> str:
        if off >= len(table):
            if off == 0:
                return ""
            raise self.err(f"{what} offset {off} out of range")
        end = table.find(b"\0", off)
        if end < 0:
            raise self.err(f"unterminated {what} at {off}")
        return table[off:end].decode("utf-8", "replace")

    def sec_data(self, sec: _Section) -> bytes:
        if sec.type == SHT_NOBITS:
            return bytes(sec.size)
        return self.data[sec.offset : sec.offset + sec.size]

    def section(self, idx: int, what: str) -> _Section:
        if not 0 < idx < len(self.sections):
            raise self.err(f"{what}: bad section index {idx}")
        return self.sections[idx]

    def _symbols(self) -> None:
        tabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        if len(tabs) != 1:
            raise self.err(f"expected one symbol table, found {len(tabs)}")
        st = tabs[0]
        self.symtab_index = st.index
        if st.entsize != 24 or st.size % 24:
            raise self.err("bad symbol table entry size")
        strsec = self.section(st.link, "symbol table string link")
        if strsec.type != SHT_STRTAB:
            raise self.err("symbol string table is not a string table")
        strs = self.sec_data(strsec)
        raw = self.sec_data(st)
        self.symbols: list[_Symbol] = []
        for i in range(st.size // 24):
            nm, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", raw, 24 * i)
            sym = _Symbol(i, self._cstr(strs, nm, "symbol name"), info, shndx, value, size)
            if sym.type == STT_SECTION and 0 < shndx < len(self.sections):
                sym.name = sym.name or self.sections[shndx].name
            self.symbols.append(sym)

    def _btf(self) -> Btf | None:
        for s in self.sections:
            if s.name == ".BTF" and s.type == SHT_PROGBITS:
                btf = Btf.parse(self.sec_data(s))
                self._fixup_datasecs(btf)
                return btf
        return None

    def _fixup_datasecs(self, btf: Btf) -> None:
        """Fill in DATASEC sizes and variable offsets from the ELF, as libbpf does."""
        by_name = {s.name: s for s in self.sections if s.index}
        for t in btf.types:
            if t.kind != 15:  # BTF_KIND_DATASEC
                continue
            sec = by_name.get(t.name)
            if sec is None:
                continue
            t.size = sec.size
            fixed = []
            for si in t.secinfos:
                var = btf.type(si.type_id)
                sym = self._symbol_in(sec.index, var.name)
                off = sym.value if sym is not None else si.offset
                fixed.append(BtfVarSecinfo(si.type_id, off, si.size))
            t.secinfos = fixed

    def _symbol_in(self, shndx: int, name: str) -> _Symbol | None:
        for s in self.symbols:
            if s.shndx == shndx and s.name == name and s.type != STT_SECTION:
                return s
        return None

    # -- maps ------------------------------------------------------------------------------
    def _add_map(self, spec: MapSpec, shndx: int, offset: int) -> int:
        if any(m.name == spec.name for m in self.maps):
            raise self.err(f"duplicate map name {spec.name!r}")
        idx = len(self.maps)
        self.maps.append(spec)
        self.map_at[(shndx, offset)] = idx
        return idx

    def _legacy_maps(self) -> None:
        for sec in self.sections:
            if sec.name != "maps" or sec.type not in (SHT_PROGBITS, SHT_NOBITS):
                continue
            body = self.sec_data(sec)
            syms = sorted(
                (s for s in self.symbols
                 if s.shndx == sec.index and s.type in (STT_OBJECT, STT_NOTYPE) and s.name),
                key=lambda s: s.value,
            )
            if not syms:
                if sec.size:
                    raise self.err("legacy 'maps' section has no map symbols")
                continue
            default_sz = sec.size // len(syms)
            for s in syms:
                sz = s.size or default_sz
                if sz < 16 or s.value + sz > sec.size:
                    raise self.err(f"legacy map {s.name!r}: bad definition size {sz}")
                raw = body[s.value : s.value + min(sz, _LEGACY_MAP_DEF)].ljust(_LEGACY_MAP_DEF,
                                                                             b"\0")
                mtype, ksz, vsz, maxe, mflags = struct.unpack("<5I", raw)
                self._add_map(MapSpec(s.name, mtype, ksz, vsz, maxe, mflags, "maps"),
                              sec.index, s.value)

    def _btf_maps(self) -> None:
        secs = [s for s in self.sections if s.name == ".maps"]
        if not secs:
            return
        sec = secs[0]
        if self.btf is None:
            raise self.err(".maps section needs BTF (compile with -g)")
        ds = self.btf.datasec(".maps")
        if ds is None:
            if sec.size:
                raise self.err("no BTF DATASEC for .maps")
            return
        for si in sorted(ds.secinfos, key=lambda s: s.offset):
            var = self.btf.type(si.type_id)
            if var.kind != 14:  # BTF_KIND_VAR
                raise self.err(f".maps: BTF entry [{var.id}] is not a variable")
            spec = self._decode_btf_map(var.name, var.type_id)
            self._add_map(spec, sec.index, si.offset)

    def _decode_btf_map(self, name: str, type_id: int) -> MapSpec:
        btf = self.btf
        assert btf is not None
        st = btf.resolved(type_id)
        if st.kind != BTF_KIND_STRUCT:
            raise self.err(f"map {name!r}: BTF type is not a struct")
        vals: dict[str, int] = {}
        key_id = value_id = 0
        for m in st.members:
            ptr = btf.resolved(m.type_id)
            if m.name in ("key", "value"):
                if ptr.kind != BTF_KIND_PTR:
                    raise self.err(f"map {name!r}: {m.name} is not a __type() pointer")
                tid = ptr.type_id
                size = btf.size_of(tid)
                if m.name == "key":
                    key_id, vals["key_size_btf"] = tid, size
                else:
                    value_id, vals["value_size_btf"] = tid, size
                continue
            if m.name == "values":  # __array(values, ...): inner map / prog array initialisers
                vals["values_offset"] = m.bit_offset // 8
                continue
            if ptr.kind != BTF_KIND_PTR:
                raise self.err(f"map {name!r}: {m.name} is not a __uint() pointer")
            arr = btf.resolved(ptr.type_id)
            if arr.kind != BTF_KIND_ARRAY:
                raise self.err(f"map {name!r}: {m.name} is not a __uint() pointer")
            vals[m.name] = arr.nelems
        ksz = vals.get("key_size", vals.get("key_size_btf", 0))
        vsz = vals.get("value_size", vals.get("value_size_btf", 0))
        if "values_offset" in vals:  # slots hold fds (libbpf's rule)
            if vsz not in (0, 4):
                raise self.err(f"map {name!r}: conflicting value size {vsz} != 4")
            vsz = 4
        for what in ("key", "value"):
            explicit, typed = vals.get(f"{what}_size"), vals.get(f"{what}_size_btf")
            if explicit is not None and typed is not None and explicit != typed:
                raise self.err(f"map {name!r}: {what}_size conflicts with the {what} type size")
        if "type" not in vals:
            raise self.err(f"map {name!r}: no map type")
        extra = {k: v for k, v in vals.items()
                 if k in ("pinning", "numa_node", "map_extra", "values_offset")}
        return MapSpec(name, vals["type"], ksz, vsz, vals.get("max_entries", 0),
                       vals.get("map_flags", 0), ".maps", key_id, value_id, None, extra)

    def _data_sections(self) -> None:
        for sec in self.sections:
            n = sec.name
            if sec.type not in (SHT_PROGBITS, SHT_NOBITS) or sec.flags & SHF_EXECINSTR:
                continue
            if not any(n == p or n.startswith(p + ".") for p in (".rodata", ".data", ".bss")):
                continue
            if sec.size == 0:
                continue
            rodata = n.startswith(".rodata")
            flags = BPF_F_MMAPABLE | (BPF_F_RDONLY_PROG if rodata else 0)
            vid = 0
            if self.btf is not None:
                vid = self.btf.find(n, 15) or 0  # BTF_KIND_DATASEC
            spec = MapSpec(n, BPF_MAP_TYPE_ARRAY, 4, sec.size, 1, flags, n, 0, vid,
                           self.sec_data(sec))
            self.data_maps[sec.index] = self._add_map(spec, sec.index, 0)

    def _externs(self) -> None:
        """``extern`` variables: ``__kconfig`` ones get a read-only ``.kconfig`` map (laid out in
        BTF order, each at its natural alignment, as libbpf does); ``__ksym`` ones are kept for
        the loader to resolve against the kernel's symbols."""
        self.externs: dict[str, Extern] = {}
        undefined = {s.name: s for s in self.symbols
                     if s.shndx == SHN_UNDEF and s.name and s.type in (STT_NOTYPE, STT_OBJECT)}
        if not undefined:
            return
        if self.btf is None:
            raise self.err(f"extern {next(iter(undefined))!r} needs BTF (compile with -g)")
        offset = 0
        for sec_name, kind in ((".kconfig", "kconfig"), (".ksyms", "ksym")):
            ds = self.btf.datasec(sec_name)
            for si in ds.secinfos if ds is not None else ():
                var = self.btf.type(si.type_id)
                sym = undefined.get(var.name)
                if sym is None:
                    continue
                ext = Extern(var.name, kind, var.type_id, sym.info >> 4 == 2)  # STB_WEAK
                if kind == "kconfig":
                    size = self.btf.size_of(var.type_id)
                    align = 1 if self.btf.resolved(var.type_id).kind == BTF_KIND_ARRAY else min(size, 8)
                    offset = (offset + align - 1) // align * align
                    ext.offset, ext.size = offset, size
                    offset += size
                self.externs[var.name] = ext
        if offset:
            spec = MapSpec(".kconfig", BPF_MAP_TYPE_ARRAY, 4, offset, 1, BPF_F_MMAPABLE | BPF_F_RDONLY_PROG,
                           ".kconfig", 0, 0, bytes(offset))
            self.kconfig_map = self._add_map(spec, -1, 0)

    # -- code ------------------------------------------------------------------------------
    def _collect_code(self) -> None:
        self.code: dict[int, bytes] = {}
        self.funcs: dict[int, list[_Func]] = {}
        self.entry_funcs: list[_Func] = []
        for sec in self.sections:
            if sec.type != SHT_PROGBITS or not sec.flags & SHF_EXECINSTR or sec.size == 0:
                continue
            if sec.size % INSN_SIZE:
                raise self.err(f"section {sec.name!r}: size is not a multiple of 8")
            self.code[sec.index] = self.sec_data(sec)
            n = sec.size // INSN_SIZE
            syms = sorted(
                (s for s in self.symbols if s.shndx == sec.index and s.type == STT_FUNC),
                key=lambda s: s.value,
            )
            funcs: list[_Func] = []
            for i, s in enumerate(syms):
                if s.value % INSN_SIZE or s.value // INSN_SIZE >= n:
                    raise self.err(f"function {s.name!r}: bad offset {s.value}")
                start = s.value // INSN_SIZE
                nxt = syms[i + 1].value // INSN_SIZE if i + 1 < len(syms) else n
                end = start + s.size // INSN_SIZE if s.size else nxt
                if end > n or end <= start or s.size % INSN_SIZE:
                    raise self.err(f"function {s.name!r}: bad size {s.size}")
                if funcs and start < funcs[-1].end:
                    raise self.err(f"function {s.name!r} overlaps {funcs[-1].name!r}")
                funcs.append(_Func(sec.index, s.name, start, end))
            if not funcs:
                funcs = [_Func(sec.index, sec.name, 0, n)]
            self.funcs[sec.index] = funcs
            if sec.name != ".text":
                self.entry_funcs.extend(funcs)
        self.relocs: dict[int, dict[int, tuple[int, _Symbol]]] = {}
        for rs in self.sections:
            if rs.type not in (SHT_REL, SHT_RELA):
                continue
            if rs.info not in self.code:
                continue  # .BTF, .BTF.ext, DWARF, .eh_frame: not needed
            if rs.type == SHT_RELA:
                raise self.err(f"{rs.name}: RELA relocations are not supported")
            if rs.link != self.symtab_index:
                raise self.err(f"{rs.name}: relocations do not use the symbol table")
            if rs.entsize not in (0, 16) or rs.size % 16:
                raise self.err(f"{rs.name}: bad relocation entry size")
            table = self.relocs.setdefault(rs.info, {})
            body = self.sec_data(rs)
            code_len = len(self.code[rs.info])
            for i in range(rs.size // 16):
                r_off, r_info = struct.unpack_from("<QQ", body, 16 * i)
                sym_idx, rtype = r_info >> 32, r_info & 0xFFFFFFFF
                if r_off % INSN_SIZE or r_off >= code_len:
                    raise self.err(f"{rs.name}: relocation {i} at bad offset {r_off:#x}")
                if sym_idx >= len(self.symbols):
                    raise self.err(f"{rs.name}: relocation {i} refers to unknown symbol "
                                   f"#{sym_idx}")
                if rtype == R_BPF_NONE:
                    continue
                table[r_off // INSN_SIZE] = (rtype, self.symbols[sym_idx])

    def _map_initialisers(self) -> None:
        """``.rel.maps``: the slots a prog array declares with ``.values = { [i] = &prog }``
        (libbpf fills them after load); map-in-map initialisers are refused by name."""
        maps_sec = next((s for s in self.sections if s.name == ".maps"), None)
        if maps_sec is None:
            return
        starts = sorted((off, idx) for (shndx, off), idx in self.map_at.items() if shndx == maps_sec.index)
        entries = {f.name for f in self.entry_funcs}
        for rs in self.sections:
            if rs.type != SHT_REL or rs.info != maps_sec.index:
                continue
            body = self.sec_data(rs)
            for i in range(rs.size // 16):
                r_off, r_info = struct.unpack_from("<QQ", body, 16 * i)
                sym_idx = r_info >> 32
                if sym_idx >= len(self.symbols):
                    raise self.err(f"{rs.name}: relocation {i} refers to unknown symbol #{sym_idx}")
                sym = self.symbols[sym_idx]
                owner = [(off, idx) for off, idx in starts if off <= r_off]
                if not owner:
                    raise self.err(f"{rs.name}: relocation {i} at {r_off:#x} is in no map")
                off, idx = owner[-1]
                spec = self.maps[idx]
                vo = spec.extra.get("values_offset")
                if vo is None or (r_off - off - vo) % 8 or r_off - off < vo:
                    raise self.err(f"map {spec.name!r}: relocation at {r_off:#x} is not in its .values")
                slot = (r_off - off - vo) // 8
                if spec.map_type != BPF_MAP_TYPE_PROG_ARRAY:
                    raise self.err(f"map {spec.name!r} slot [{slot}]: initialising a "
                                   f"{MAP_TYPE_NAMES.get(spec.map_type, spec.map_type)} map "
                                   f"(map-in-map) is not supported")
                if sym.name not in entries:
                    raise self.err(f"map {spec.name!r} slot [{slot}]: {sym.name!r} is not a program")
                if slot >= spec.max_entries:
                    raise self.err(f"map {spec.name!r} slot [{slot}]: past max_entries {spec.max_entries}")
                spec.init_slots[slot] = sym.name

    def _core_relocate(self) -> None:
        """Apply the ``.BTF.ext`` CO-RE relocations to the code sections (see :mod:`.core`)."""
        ext = next((s for s in self.sections if s.name == ".BTF.ext" and s.type == SHT_PROGBITS), None)
        if ext is None or self.btf is None:
            return
        relos = core.parse_btf_ext(self.sec_data(ext), self.btf)
        total = sum(len(v) for v in relos.values())
        if not total:
            return
        if self.target_btf is None:
            raise self.err(f"{total} CO-RE relocations need the kernel's BTF, and the target kernel has none")
        by_name = {s.name: s.index for s in self.sections if s.index in self.code}
        for sec_name, items in relos.items():
            shndx = by_name.get(sec_name)
            if shndx is None:
                raise self.err(f".BTF.ext: CO-RE relocations for section {sec_name!r}, which holds no code")
            code = bytearray(self.code[shndx])
            for n, relo in enumerate(items):
                if relo.insn_off % INSN_SIZE or relo.insn_off >= len(code):
                    raise self.err(f".BTF.ext: CO-RE relocation #{n} at bad offset {relo.insn_off:#x}")
                idx = relo.insn_off // INSN_SIZE
                func = next((f for f in self.funcs[shndx] if f.start <= idx < f.end), None)
                where = f"prog '{func.name if func else sec_name}'"
                res, spec = core.resolve(self.btf, relo, self.target_btf, where, n, self.core_log)
                done = core.patch(code, idx, res, where, n, idx - (func.start if func else 0))
                self.core_log.extend(done)
                if code[idx * INSN_SIZE] == OP_CALL and done and "invalid insn" in done[-1]:
                    self.poisons[(shndx, idx)] = f"failed to resolve CO-RE relocation {spec.format()}"
            self.code[shndx] = bytes(code)

    def _func_at(self, shndx: int, idx: int, what: str) -> _Func:
        for f in self.funcs.get(shndx, []):
            if f.start <= idx < f.end:
                if f.start != idx:
                    raise self.err(f"{what}: target is inside function {f.name!r}")
                return f
        raise self.err(f"{what}: no function at instruction {idx} of section "
                       f"{self.sections[shndx].name!r}")

    def _link(self, entry: _Func) -> ProgramSpec:
        """Copy ``entry``, append every subprogram it reaches and fix calls and lddw's."""
        sec_name = self.sections[entry.shndx].name
        out = bytearray()
        placed: dict[tuple[int, int], int] = {}
        functions: list[tuple[str, int]] = []
        map_refs: list[tuple[int, MapRef]] = []
        ksym_refs: list[tuple[int, str]] = []
        poisoned: dict[int, str] = {}
        queue = [entry]

        placed[(entry.shndx, entry.start)] = 0
        total = entry.end - entry.start

        def place(f: _Func) -> int:
            nonlocal total
            key = (f.shndx, f.start)
            if key not in placed:
                placed[key] = total
                total += f.end - f.start
                queue.append(f)
            return placed[key]

        done = 0
        while done < len(queue):
            f = queue[done]
            done += 1
            base = placed[(f.shndx, f.start)]  # == len(out) // INSN_SIZE
            code = bytearray(self.code[f.shndx][f.start * INSN_SIZE : f.end * INSN_SIZE])
            relocs = self.relocs.get(f.shndx, {})
            functions.append((f.name, base))
            for (pshndx, pidx), msg in self.poisons.items():
                if pshndx == f.shndx and f.start <= pidx < f.end:
                    poisoned[base + pidx - f.start] = msg
            i = 0
            n = f.end - f.start
            while i < n:
                sec_idx = f.start + i
                op = code[i * INSN_SIZE]
                src = code[i * INSN_SIZE + 1] >> 4
                (imm,) = struct.unpack_from("<i", code, i * INSN_SIZE + 4)
                where = f"{self.sections[f.shndx].name}: {f.name}+{i}"
                rel = relocs.get(sec_idx)
                if rel is not None:
                    rtype, sym = rel
                    if rtype == R_BPF_64_64:
                        if op != OP_LDDW or i + 1 >= n:
                            raise self.err(f"{where}: R_BPF_64_64 on a non-lddw instruction")
                        ref = self._lddw_target(sym, imm, where)
                        if isinstance(ref, str):  # a __ksym extern: the loader writes its address
                            self._set(code, i, 0, 0)
                            struct.pack_into("<i", code, (i + 1) * INSN_SIZE + 4, 0)
                            ksym_refs.append((base + i, ref))
                        elif isinstance(ref, _Func):
                            target = place(ref)
                            self._set(code, i, BPF_PSEUDO_FUNC, target - (base + i) - 1)
                        else:
                            mi, ref_kind, off = ref
                            self._set(code, i, BPF_PSEUDO_MAP_FD if ref_kind == "fd" else
                                      BPF_PSEUDO_MAP_VALUE, mi)
                            struct.pack_into("<i", code, (i + 1) * INSN_SIZE + 4, off)
                            map_refs.append((base + i, MapRef(self.maps[mi].name, ref_kind, off,
                                                              mi)))
                        i += 2
                        continue
                    if rtype in (R_BPF_64_32, R_BPF_64_NODYLD32) and op == OP_CALL:
                        if src != BPF_PSEUDO_CALL:
                            raise self.err(f"{where}: call relocation against "
                                           f"{sym.name!r} is not a bpf-to-bpf call")
                        tsec = sym.shndx
                        if tsec == SHN_UNDEF:
                            raise self.err(f"{where}: call to kernel function (kfunc) {sym.name!r}: "
                                           f"kfuncs are not supported")
                        if tsec not in self.code:
                            raise self.err(f"{where}: call to {sym.name!r} outside code")
                        if sym.value % INSN_SIZE:
                            raise self.err(f"{where}: misaligned call target {sym.name!r}")
                        tidx = sym.value // INSN_SIZE + imm + 1
                        self._call(code, i, base, f, tsec, tidx, where, place)
                        i += 1
                        continue
                    raise self.err(f"{where}: unsupported relocation type {rtype} against "
                                   f"{sym.name!r}")
                if op == OP_CALL and src == BPF_PSEUDO_CALL:
                    self._call(code, i, base, f, f.shndx, sec_idx + imm + 1, where, place)
                elif op == OP_LDDW and src == BPF_PSEUDO_FUNC:
                    self._call(code, i, base, f, f.shndx, sec_idx + imm + 1, where, place)
                i += 2 if op == OP_LDDW else 1
            out += code
        return ProgramSpec(entry.name, sec_name, bytes(out), map_refs, functions, poisoned, ksym_refs)

    def _call(self, code: bytearray, i: int, base: int, f: _Func, tsec: int, tidx: int,
              where: str, place: Callable[[_Func], int]) -> None:
        if tsec == f.shndx and f.start <= tidx < f.end:
            rel = tidx - (f.start + i) - 1  # stays inside this function
        else:
            g = self._func_at(tsec, tidx, where)
            rel = place(g) - (base + i) - 1
        struct.pack_into("<i", code, i * INSN_SIZE + 4, rel)

    @staticmethod
    def _set(code: bytearray, i: int, src: int, imm: int) -> None:
        code[i * INSN_SIZE + 1] = (code[i * INSN_SIZE + 1] & 0x0F) | (src << 4)
        struct.pack_into("<i", code, i * INSN_SIZE + 4, imm)

    def _lddw_target(self, sym: _Symbol, imm: int, where: str) -> _Func | tuple[int, str, int] | str:
        shndx = sym.shndx
        if shndx == SHN_UNDEF:
            ext = self.externs.get(sym.name)
            if ext is None:
                raise self.err(f"{where}: reference to unknown (extern) symbol {sym.name!r} "
                               f"(neither __kconfig nor __ksym)")
            if ext.kind == "ksym":
                return ext.name
            return self.kconfig_map, "value", ext.offset + imm
        if shndx >= SHN_LORESERVE or shndx >= len(self.sections):
            raise self.err(f"{where}: symbol {sym.name!r} has bad section index {shndx}")
        if shndx in self.code:
            tidx = (sym.value + (imm if sym.type == STT_SECTION else 0)) // INSN_SIZE
            return self._func_at(shndx, tidx, where)
        if shndx in self.data_maps:
            mi = self.data_maps[shndx]
            off = sym.value + imm
            if not 0 <= off <= self.maps[mi].value_size:
                raise self.err(f"{where}: offset {off} outside {self.maps[mi].name}")
            return mi, "value", off
        off = sym.value + (imm if sym.type == STT_SECTION else 0)
        mi = self.map_at.get((shndx, off))
        if mi is not None:
            return mi, "fd", 0
        raise self.err(f"{where}: reference to {sym.name!r} in section "
                       f"{self.sections[shndx].name!r}, which is neither a map nor data")

    def _license(self) -> str:
        for s in self.sections:
            if s.name == "license":
                return self.sec_data(s).split(b"\0", 1)[0].decode("utf-8", "replace")
        return ""

    def _kern_version(self) -> int:
        for s in self.sections:
            if s.name == "version" and s.size >= 4:
                return int(struct.unpack_from("<I", self.sec_data(s))[0])
        return 0
