"""BTF parsing/formatting and the eBPF object reader, on programs compiled at test time."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprobesim.ebpf import maps as M
from kprobesim.ebpf.btf import (
    BTF_KIND_DATASEC,
    BTF_KIND_INT,
    BTF_KIND_STRUCT,
    BTF_KIND_TYPEDEF,
    Btf,
    BtfError,
)
from kprobesim.ebpf.elf import (
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    ObjectError,
    ObjectFile,
    ProgramSpec,
    load_object,
    parse_object,
)
from kprobesim.ebpf.histogram import format_log2_hist_map, format_map

_spec = importlib.util.spec_from_file_location(
    "kprobesim_test_progs_build", Path(__file__).parent / "progs" / "build.py"
)
assert _spec and _spec.loader
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

_missing = build.have_toolchain()


def needs_cc(fn):  # noqa: ANN001, ANN201 - the toolchain is a hard requirement (CI installs it)
    return fn


ARCHES = list(build.ARCHES)
COMPILERS = ["zig", "clang"]  # ziglang's clang and Debian's clang (apt: clang, libbpf-dev)
#: ctx offsets of PT_REGS_PARM1, PT_REGS_PARM2, PT_REGS_RC, PT_REGS_IP (arch/<name>/regs.py)
REGS = {
    "riscv64": {"parm1": 80, "parm2": 88, "rc": 80, "ip": 0},
    "loongarch64": {"parm1": 32, "parm2": 40, "rc": 32, "ip": 264},
    "x86_64": {"parm1": 112, "parm2": 104, "rc": 80, "ip": 128},
}


#: One worker runs the module: the objects are compiled (~3 s of CPU) once, not once per worker.
pytestmark = pytest.mark.xdist_group("btf-elf-objects")


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], Path]:
    """``{(compiler, program, arch): object path}`` for every test program."""
    assert _missing is None, f"eBPF toolchain missing: {_missing} (apt-get install clang libbpf-dev)"
    out: dict[tuple[str, str, str], Path] = {}
    for cc in COMPILERS:
        compiler = None if cc == "zig" else build.debian_clang()
        assert cc == "zig" or compiler, "Debian's clang is missing (apt-get install clang)"
        d = tmp_path_factory.mktemp(f"bpf-{cc}")
        for (name, arch), p in build.build_all(d, compiler=compiler).items():
            out[(cc, name, arch)] = p
    return out


def load(objs: dict[tuple[str, str, str], Path], cc: str, name: str, arch: str) -> ObjectFile:
    return load_object(objs[(cc, name, arch)])


def insn(p: ProgramSpec, i: int) -> tuple[int, int, int, int, int]:
    """(opcode, dst, src, off, imm) of instruction ``i``."""
    op, regs, off, imm = struct.unpack_from("<BBhi", p.insns, 8 * i)
    return op, regs & 15, regs >> 4, off, imm


def ctx_loads(p: ProgramSpec) -> list[int]:
    """Offsets of the 64-bit loads a program makes from its context (r1 and its copies)."""
    ctx, offs = {1}, []
    i = 0
    while i < p.insn_count:
        op, dst, src, off, _imm = insn(p, i)
        if op == 0x79 and src in ctx:  # ldxdw dst, [ctx + off]
            offs.append(off)
            ctx.discard(dst)
        elif op == 0xBF and src in ctx:  # mov dst, ctx
            ctx.add(dst)
        elif op == 0x85:  # call clobbers r1-r5
            ctx -= {1, 2, 3, 4, 5}
        elif op & 7 in (4, 7) or op in (0x18, 0x61, 0x69, 0x71, 0x79):  # alu/ld writes dst
            ctx.discard(dst)
        i += 2 if op == 0x18 else 1
    return offs


def check_linked(o: ObjectFile, p: ProgramSpec) -> None:
    """Every map lddw is patched to the convention and every call lands on a function start."""
    refs = dict(p.map_refs)
    starts = {s for _, s in p.functions}
    assert p.functions[0] == (p.name, 0)
    i = 0
    while i < p.insn_count:
        op, _dst, src, _off, imm = insn(p, i)
        if op == 0x18:
            if src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE):
                r = refs.pop(i)
                assert imm == r.map_index == o.map_index(r.map_name)
                assert r.kind == ("fd" if src == BPF_PSEUDO_MAP_FD else "value")
                assert insn(p, i + 1)[4] == r.offset
            elif src == BPF_PSEUDO_FUNC:
                assert i + imm + 1 in starts
            i += 2
            continue
        if op == 0x85 and src == BPF_PSEUDO_CALL:
            assert i + imm + 1 in starts
        i += 1
    assert not refs


# ----------------------------------------------------------------------------------------------
# object reader on real programs


@needs_cc
@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("arch", ARCHES)
def test_count_calls(objs: dict, cc: str, arch: str) -> None:
    o = load(objs, cc, "count_calls", arch)
    assert o.license == "GPL" and o.btf is not None
    assert [(m.name, m.map_type, m.key_size, m.value_size, m.max_entries, m.flags)
            for m in o.maps] == [
        ("calls", M.BPF_MAP_TYPE_HASH, 8, 8, 1024, 0),
        ("totals", M.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4, 0),
        ("recent", M.BPF_MAP_TYPE_LRU_HASH, 24, 4, 16, M.BPF_F_NO_COMMON_LRU),
    ]
    calls, totals, recent = o.maps
    assert o.btf.type_name(calls.btf_key_type_id) == "u64"
    assert o.btf.type_name(calls.btf_value_type_id) == "u64"
    assert totals.btf_key_type_id == totals.btf_value_type_id == 0  # __uint(key_size, ...)
    assert o.btf.type_name(recent.btf_key_type_id) == "struct task"
    assert [p.name for p in o.programs] == ["count_do_work"]
    p = o.programs[0]
    assert (p.section, p.prog_type, p.attach_point) == ("kprobe/do_work", "kprobe", "do_work")
    assert {r.map_name for _, r in p.map_refs} == {"calls", "totals"}
    assert all(r.kind == "fd" for _, r in p.map_refs)
    check_linked(o, p)
    assert ctx_loads(p)[0] == REGS[arch]["parm1"]
    # creating the maps gives the right objects
    created = o.create_maps(ncpus=2)
    assert isinstance(created[0], M.HashMap) and created[1].percpu and created[2].lru


@needs_cc
@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("arch", ARCHES)
def test_ret_ringbuf(objs: dict, cc: str, arch: str) -> None:
    o = load(objs, cc, "ret_ringbuf", arch)
    assert o.license == "Dual MIT/GPL"
    (rb,) = o.maps
    assert (rb.name, rb.map_type, rb.key_size, rb.value_size, rb.max_entries) == (
        "events", M.BPF_MAP_TYPE_RINGBUF, 0, 0, 16384)
    ex, en = o.program("fib_exit"), o.program("kprobe/fib")
    assert (ex.prog_type, ex.attach_point, en.name) == ("kretprobe", "fib", "fib_enter")
    for p in (ex, en):
        check_linked(o, p)
        assert [r.map_name for _, r in p.map_refs] == ["events"]
    assert sorted(set(ctx_loads(ex))) == sorted({REGS[arch]["rc"], REGS[arch]["ip"]})
    assert ctx_loads(en) == [REGS[arch]["parm1"]]
    m = o.create_maps()[0]
    assert isinstance(m, M.RingBufMap) and m.max_entries == 16384


@needs_cc
@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("arch", ARCHES)
def test_legacy_maps(objs: dict, cc: str, arch: str) -> None:
    o = load(objs, cc, "legacy_maps", arch)
    assert (o.license, o.kern_version) == ("GPL", 0x060100)
    assert [(m.name, m.map_type, m.key_size, m.value_size, m.max_entries, m.flags, m.section)
            for m in o.maps] == [
        ("counters", M.BPF_MAP_TYPE_ARRAY, 4, 8, 8, 0, "maps"),
        ("stacks", M.BPF_MAP_TYPE_STACK_TRACE, 4, 256, 128, 0, "maps"),
        ("perf_out", M.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 2, 0, "maps"),
        ("by_pid", M.BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 64, M.BPF_F_NO_PREALLOC, "maps"),
    ]
    (p,) = o.programs
    assert [(r.map_name, r.kind, r.map_index) for _, r in p.map_refs] == [
        ("counters", "fd", 0), ("stacks", "fd", 1), ("perf_out", "fd", 2), ("by_pid", "fd", 3)]
    check_linked(o, p)
    ms = o.create_maps(ncpus=2)
    assert [type(m).__name__ for m in ms] == [
        "ArrayMap", "StackTraceMap", "PerfEventArrayMap", "HashMap"]


@needs_cc
@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("arch", ARCHES)
def test_globals_and_subprograms(objs: dict, cc: str, arch: str) -> None:
    o = load(objs, cc, "globals", arch)
    btf = o.btf
    assert btf is not None
    names = [m.name for m in o.maps]
    assert names == [".rodata", ".data", ".bss"]
    ro, data, bss = o.maps
    assert all(m.is_data and m.map_type == M.BPF_MAP_TYPE_ARRAY and m.max_entries == 1
               and m.key_size == 4 for m in o.maps)
    assert ro.flags == M.BPF_F_RDONLY_PROG | M.BPF_F_MMAPABLE
    assert data.flags == bss.flags == M.BPF_F_MMAPABLE
    assert ro.initial_value[:24] == struct.pack("<Q4I", 3, 10, 20, 30, 40)
    assert b"switch %d\0" in ro.initial_value
    assert data.initial_value == struct.pack("<QI", 0x1122334455667788, 7)
    assert bss.initial_value == bytes(32) and bss.value_size == 32
    # DATASEC types are fixed up with the ELF sizes and symbol offsets
    ds = btf.type(bss.btf_value_type_id)
    assert ds.kind == BTF_KIND_DATASEC and ds.size == 32
    offs = {btf.type(s.type_id).name: s.offset for s in ds.secinfos}
    assert offs == {"hits": 0, "last_arg": 8, "last_comm": 16}
    assert btf.format_value(data.btf_value_type_id, data.initial_value) == (
        "{offset=1234605616436508552, seen_pid=7}")
    assert btf.format_value(ro.btf_value_type_id, ro.initial_value).startswith(
        "{scale=3, limits=[10, 20, 30, 40]")

    progs = {p.name: p for p in o.programs}
    assert list(progs) == ["on_work", "on_other", "on_loop", "on_switch"]
    assert progs["on_switch"].prog_type == "tracepoint"
    assert progs["on_switch"].attach_point == "sched/sched_switch"
    work = progs["on_work"]
    assert [f for f, _ in work.functions] == ["on_work", "record", "clamp", "scaled"]
    assert [f for f, _ in progs["on_other"].functions] == ["on_other", "scaled"]
    assert [f for f, _ in progs["on_loop"].functions] == ["on_loop", "sum_cb"]
    for p in o.programs:
        check_linked(o, p)
    # value references carry the variable's offset
    refs = {(r.map_name, r.offset) for _, r in work.map_refs}
    assert {(".bss", 0), (".bss", 8), (".bss", 16), (".rodata", 0), (".rodata", 8),
            (".data", 0)} <= refs
    assert all(r.kind == "value" for _, r in work.map_refs)
    # on_loop passes sum_cb to bpf_loop as a BPF_PSEUDO_FUNC lddw
    loop = progs["on_loop"]
    funcs = [i for i in range(loop.insn_count) if insn(loop, i)[0] == 0x18
             and insn(loop, i)[2] == BPF_PSEUDO_FUNC]
    assert len(funcs) == 1 and funcs[0] + insn(loop, funcs[0])[4] + 1 == loop.functions[1][1]
    # appended subprograms are byte-identical apart from patched immediates
    assert progs["on_other"].insns[8 * progs["on_other"].functions[1][1]:][:8] == (
        work.insns[8 * work.functions[3][1]:][:8])
    # data maps start with their initial contents
    created = o.create_maps()
    assert created[1].lookup(struct.pack("<I", 0)) == data.initial_value
    assert created[0].rdonly_prog


@needs_cc
@pytest.mark.parametrize("arch", ARCHES)
def test_histogram_prog(objs: dict, arch: str) -> None:
    o = load(objs, "zig", "histogram", arch)
    (h,) = o.maps
    assert (h.name, h.map_type, h.key_size, h.value_size, h.max_entries) == (
        "hist", M.BPF_MAP_TYPE_ARRAY, 4, 8, 64)
    assert ctx_loads(o.programs[0]) == [REGS[arch]["parm2"]]
    m = h.create(btf=o.btf)
    m.update(struct.pack("<I", 3), struct.pack("<Q", 2))
    assert format_log2_hist_map(m) == "[4, 8)                 2 |" + "@" * 52 + "|\n"


@needs_cc
@pytest.mark.parametrize("arch", ARCHES)
def test_per_arch_include_dirs(objs: dict, tmp_path: Path, arch: str) -> None:
    """include/<arch>/vmlinux.h selects the arch without -D__TARGET_ARCH_xxx."""
    o = load_object(build.build("ret_ringbuf", arch, tmp_path, arch_dir=True))
    ref = load(objs, "zig", "ret_ringbuf", arch)
    assert [p.insns for p in o.programs] == [p.insns for p in ref.programs]


# ----------------------------------------------------------------------------------------------
# BTF


@needs_cc
def test_btf_types_and_formatting(objs: dict) -> None:
    o = load(objs, "zig", "count_calls", "x86_64")
    btf = o.btf
    assert btf is not None
    task = btf.find("task", BTF_KIND_STRUCT)
    assert task is not None and btf.size_of(task) == 24
    assert [(m.name, m.bit_offset) for m in btf.members(task)] == [
        ("pid", 0), ("tgid", 32), ("comm", 64)]
    assert btf.type_name(btf.member(task, "comm").type_id) == "char[16]"
    u64 = btf.find("u64", BTF_KIND_TYPEDEF)
    assert u64 is not None and btf.resolved(u64).kind == BTF_KIND_INT and btf.size_of(u64) == 8
    raw = struct.pack("<II16s", 1, 1, b"kworker/0")
    assert btf.format_value(task, raw) == '{pid=1, tgid=1, comm="kworker/0"}'
    assert btf.format_value(task, struct.pack("<ii16s", -1, 2, b'a"\n\xff')) == (
        '{pid=4294967295, tgid=2, comm="a\\"\\n\\xff"}')
    regs = btf.find("pt_regs", BTF_KIND_STRUCT)
    if regs is not None:  # only present if the program used it in a typed way
        assert btf.size_of(regs) == 168
    # generic printer with BTF-typed keys
    m = o.map("recent").create(btf=btf)
    m.update(raw, struct.pack("<I", 5))
    assert format_map(m) == '{pid=1, tgid=1, comm="kworker/0"}: 5\n'
    with pytest.raises(BtfError):
        btf.type(len(btf) + 5)
    with pytest.raises(BtfError):
        btf.members(u64)


def _btf_blob(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def _t(name: int, kind: int, vlen: int, size_type: int, kflag: int = 0) -> bytes:
    return struct.pack("<III", name, (kflag << 31) | (kind << 24) | vlen, size_type)


def test_btf_synthetic_kinds() -> None:
    strings = b"\0int\0e\0A\0B\0s\0x\0y\0f\0u8\0big\0C\0float\0"
    off = {s.decode(): strings.index(b"\0" + s + b"\0") + 1
           for s in strings.strip(b"\0").split(b"\0")}
    types = b"".join([
        _t(off["int"], 1, 0, 4) + struct.pack("<I", (1 << 24) | 32),  # [1] int (signed)
        _t(off["e"], 6, 2, 4) + struct.pack("<Ii", off["A"], 1) + struct.pack("<Ii", off["B"], -2),
        _t(off["u8"], 1, 0, 1) + struct.pack("<I", 8),  # [3] u8
        # [4] struct s { int x:3; int y:5; u8 f[2]; } with kind_flag bitfields
        _t(off["s"], 4, 3, 4, kflag=1)
        + struct.pack("<III", off["x"], 1, (3 << 24) | 0)
        + struct.pack("<III", off["y"], 1, (5 << 24) | 3)
        + struct.pack("<III", off["f"], 5, 16),
        _t(0, 3, 0, 0) + struct.pack("<III", 3, 1, 2),  # [5] u8[2]
        _t(off["big"], 19, 1, 8, kflag=0) + struct.pack("<III", off["C"], 0, 1),  # [6] enum64
        _t(off["float"], 16, 0, 8),  # [7] double
        _t(0, 2, 0, 4),  # [8] struct s *
        _t(0, 10, 0, 8),  # [9] const struct s * (const of the pointer)
        _t(0, 18, 0, 1),  # [10] type tag -> int
        _t(0, 17, 0, 4) + struct.pack("<i", -1),  # [11] decl tag on struct s
    ])
    btf = Btf.parse(_btf_blob(types, strings))
    assert len(btf) == 12
    assert btf.format_value(2, struct.pack("<i", -2)) == "B"
    assert btf.format_value(2, struct.pack("<i", 7)) == "7"
    assert btf.format_value(1, struct.pack("<i", -5)) == "-5"
    raw = bytes([0b10101_101, 0, 3, 4])
    assert btf.format_value(4, raw) == "{x=-3, y=-11, f=[3, 4]}"
    assert btf.format_value(6, struct.pack("<Q", 1 << 32)) == "C"
    assert btf.format_value(7, struct.pack("<d", 1.5)) == "1.5"
    assert btf.format_value(9, struct.pack("<Q", 0xFFFF0000)) == "0xffff0000"
    assert btf.type_name(9) == "const struct s *"
    assert btf.type_name(5) == "u8[2]"
    assert btf.resolve(10) == 1 and btf.size_of(9) == 8
    assert btf.type(11).component_idx == -1


@pytest.mark.parametrize(
    "blob, msg",
    [
        (b"\x9f\xeb\x01\x00", "truncated"),
        (struct.pack("<HBBIIIII", 0x1234, 1, 0, 24, 0, 0, 0, 1) + b"\0", "magic"),
        (struct.pack("<HBBIIIII", 0xEB9F, 2, 0, 24, 0, 0, 0, 1) + b"\0", "version"),
        (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 12, 12, 1) + b"\0", "exceed"),
        (_btf_blob(_t(0, 2, 0, 7), b"\0"), "bad id"),
        (_btf_blob(_t(0, 31, 0, 0), b"\0"), "unknown kind"),
        (_btf_blob(_t(5, 2, 0, 0), b"\0"), "string offset"),
        (_btf_blob(_t(0, 4, 2, 4) + b"\0" * 12, b"\0"), "truncated"),
        (_btf_blob(_t(0, 8, 0, 2) + _t(0, 8, 0, 1), b"\0"), None),  # typedef loop: parses
    ],
    ids=["short", "magic", "version", "sections", "bad-ref", "kind", "string", "members",
         "loop"],
)
def test_btf_malformed(blob: bytes, msg: str | None) -> None:
    if msg is None:
        btf = Btf.parse(blob)
        with pytest.raises(BtfError, match="deep"):
            btf.resolve(1)
        assert btf.format_value(1, b"\0" * 4) == "0x00000000"
        return
    with pytest.raises(BtfError, match=msg):
        Btf.parse(blob)


# ----------------------------------------------------------------------------------------------
# malformed objects


def _sections(data: bytes) -> dict[str, tuple[int, int, int]]:
    """name -> (header offset, file offset, size)."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    hdrs = [(shoff + 64 * i, *struct.unpack_from("<I4xQ8xQQ", data, shoff + 64 * i))
            for i in range(shnum)]
    stroff = hdrs[shstrndx][3]
    out = {}
    for h, name, _flags, off, size in hdrs:
        end = data.index(b"\0", stroff + name)
        out[data[stroff + name:end].decode()] = (h, off, size)
    return out


@pytest.fixture(scope="module")
def globals_obj(objs: dict) -> bytes:
    return objs[("zig", "globals", "x86_64")].read_bytes()


def _raises(data: bytes, match: str) -> None:
    with pytest.raises(ObjectError, match=match) as ei:
        parse_object(data, "t.o")
    assert str(ei.value).startswith("t.o: ")


@needs_cc
def test_malformed_objects(globals_obj: bytes) -> None:
    d = globals_obj
    parse_object(d, "t.o")
    _raises(d[:40], "truncated ELF header")
    _raises(b"\0" * 64, "not an ELF")
    _raises(d[:0x12] + struct.pack("<H", 243) + d[0x14:], "wrong machine 243")
    _raises(d[:0x10] + struct.pack("<H", 2) + d[0x12:], "not a relocatable")
    _raises(d[:5] + b"\x02" + d[6:], "big-endian")
    _raises(d[:0x3E] + struct.pack("<H", 999) + d[0x40:], "section name table index")
    _raises(d[: len(d) - 64], "section headers past end")
    secs = _sections(d)
    # a relocation against a symbol index past the symbol table
    h, off, size = secs[".relkprobe/do_work"]
    bad = bytearray(d)
    struct.pack_into("<Q", bad, off + 8, (10_000 << 32) | 1)
    _raises(bytes(bad), "unknown symbol #10000")
    # a relocation turned into an extern reference (symbol in section 0)
    r_info = struct.unpack_from("<Q", d, off + 8)[0]
    sym = r_info >> 32
    _symh, symoff, _ = secs[".symtab"]
    bad = bytearray(d)
    struct.pack_into("<H", bad, symoff + 24 * sym + 6, 0)
    _raises(bytes(bad), "call to kernel function \\(kfunc\\) 'record': kfuncs are not supported")
    # ... and an lddw of a global variable that became an extern
    sym2 = struct.unpack_from("<Q", d, off + 24)[0] >> 32
    bad = bytearray(d)
    struct.pack_into("<H", bad, symoff + 24 * sym2 + 6, 0)
    _raises(bytes(bad), "reference to unknown \\(extern\\) symbol")
    # a section whose data lies past the end of the file
    bad = bytearray(d)
    struct.pack_into("<Q", bad, h + 0x18, len(d) + 10)
    _raises(bytes(bad), "past end of file")
    # a relocation at an offset outside its section
    bad = bytearray(d)
    struct.pack_into("<Q", bad, off, 1 << 20)
    _raises(bytes(bad), "bad offset")
    # an unknown relocation type
    bad = bytearray(d)
    struct.pack_into("<Q", bad, off + 8, (sym << 32) | 7)
    _raises(bytes(bad), "unsupported relocation type 7")
    # broken BTF
    _bh, boff, _ = secs[".BTF"]
    bad = bytearray(d)
    bad[boff] ^= 0xFF
    _raises(bytes(bad), ".BTF: bad BTF magic")
    with pytest.raises(ObjectError, match="no such file"):
        load_object("/nonexistent/x.o")


def _fuzz_regions(d: bytes) -> list[tuple[int, int]]:
    """The parts of an object worth corrupting: headers, symbols, relocations, code, BTF."""
    shoff = struct.unpack_from("<Q", d, 0x28)[0]
    regions = [(0, 64), (shoff, len(d) - shoff), (0, len(d))]
    for name, (_h, off, size) in _sections(d).items():
        if size and (name.startswith((".rel", ".symtab", ".BTF", ".maps", "kprobe", ".text"))
                     or name in (".strtab", "license")) and name != ".BTF.ext":
            regions.append((off, size))
    return regions


@needs_cc
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_object_reader(globals_obj: bytes, data: st.DataObject) -> None:
    blob = bytearray(globals_obj)
    regions = _fuzz_regions(globals_obj)
    for _ in range(data.draw(st.integers(0, 8))):
        start, size = data.draw(st.sampled_from(regions))
        pos = start + data.draw(st.integers(0, size - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    try:
        o = parse_object(bytes(blob), "fuzz.o")
    except ObjectError as e:
        assert str(e).startswith("fuzz.o: ")
        return
    for p in o.programs:  # whatever parses is self-consistent
        assert len(p.insns) % 8 == 0
        for i, r in p.map_refs:
            assert 0 <= i < p.insn_count and 0 <= r.map_index < len(o.maps)


@needs_cc
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_btf(globals_obj: bytes, data: st.DataObject) -> None:
    _h, off, size = _sections(globals_obj)[".BTF"]
    blob = bytearray(globals_obj[off:off + size])
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        btf = Btf.parse(bytes(blob))
    except BtfError:
        return
    for t in btf.types:  # queries never raise anything but BtfError
        for fn in (btf.size_of, btf.type_name, btf.resolve):
            try:
                fn(t.id)
            except BtfError:
                pass
        try:
            btf.format_value(t.id, bytes(64))
        except BtfError:
            pass
