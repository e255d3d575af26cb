"""Helpers and maps Linux loads beyond the basics (bpf_loop, bpf_for_each_map_elem, tail calls,
queue/stack maps, LPM trie, bloom filter, bpf_snprintf, bpf_strncmp, cgroup arrays), through
programs compiled by Debian's clang (``clang -target bpf``) and run on the firmware kernels.

Oracles: the helper-id table is checked against libbpf's ``bpf_helper_defs.h``; longest-prefix
matches against Python's ``ipaddress``; do_work's arguments against a Python kprobe; expected
values elsewhere are Linux's documented results (bpf_loop's count, -E2BIG for a full queue,
snprintf's length with its NUL, the 33 tail-call limit).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import struct
import subprocess
from pathlib import Path

import pytest
from fwpaths import firmware

from kprobesim.ebpf import helper_ids
from kprobesim.ebpf.errors import BudgetExhausted, HelperError
from kprobesim.ebpf.loader import BpfError
from kprobesim.ebpf.maps import MapError, create_map
from kprobesim.ebpf.maps_extra import jhash, jhash2
from kprobesim.ebpf.vm import VM
from kprobesim.machine import Machine

HERE = Path(__file__).resolve().parent / "features"
_spec = importlib.util.spec_from_file_location("ebpf_progs_build", HERE.parent / "progs" / "build.py")
assert _spec and _spec.loader
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)
HELPER_DEFS = Path("/usr/include/bpf/bpf_helper_defs.h")


def _compile(src: Path, out: Path, arch: str) -> Path:
    cc = build.debian_clang()
    assert cc, "Debian's clang is missing (apt-get install clang)"
    cmd = build.compile_cmd(src, out, arch, cc)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("features")
    return {
        "features": _compile(HERE / "features.c", d / "features.o", "riscv64"),
        "tailcalls": _compile(HERE / "tailcalls.c", d / "tailcalls.o", "x86_64"),
    }


def _globals(obj, sec: str = ".bss") -> dict[str, bytes]:
    buf = bytes(obj.maps[sec].lookup(b"\0\0\0\0"))
    return {obj.btf.type(si.type_id).name: buf[si.offset : si.offset + si.size]
            for si in obj.btf.datasec(sec).secinfos}


def _q(raw: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(raw) // 8}q", raw))


ROUTES = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "192.168.0.0/16", "0.0.0.0/0",
          "172.16.5.4/32"]
QUERIES = [("10.1.2.200", 32), ("10.1.2.3", 32), ("10.1.9.9", 32), ("10.200.0.1", 32), ("192.168.77.1", 32),
           ("8.8.8.8", 32), ("172.16.5.4", 32), ("172.16.5.5", 32), ("10.1.2.200", 24), ("10.1.2.200", 12)]


def _lpm_oracle(addr: str, plen: int) -> int:
    """The route whose prefix is the longest one covering addr's first plen bits."""
    net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
    best = [(ipaddress.ip_network(r).prefixlen, i) for i, r in enumerate(ROUTES)
            if ipaddress.ip_network(r).prefixlen <= plen and net.subnet_of(ipaddress.ip_network(r))]
    return max(best)[1] if best else 0xFFFFFFFF


def _run_features(path: Path, engine: str) -> tuple[dict[str, bytes], object, list[int]]:
    m = Machine.load(firmware("riscv64"))
    obj = m.load_bpf(path, engine=engine)
    for i, r in enumerate(ROUTES):
        net = ipaddress.ip_network(r)
        key = struct.pack("<I", net.prefixlen) + net.network_address.packed
        assert obj.maps["routes"].update(key, struct.pack("<I", i)) == 0
    for i, (addr, plen) in enumerate(QUERIES):
        q = struct.pack("<I", plen) + ipaddress.ip_address(addr).packed
        assert obj.maps["queries"].update(struct.pack("<I", i), q) == 0
    assert m.run(max_insns=50_000_000) == 0
    p = obj.programs["features"]
    assert p.runs == 557 and p.errors == 0, p.last_error
    answers = [struct.unpack("<I", obj.maps["answers"].lookup(struct.pack("<I", i)))[0]
               for i in range(len(QUERIES))]
    return _globals(obj), obj, answers


def test_helpers_and_maps_linux_loads(objs) -> None:
    g, obj, answers = _run_features(objs["features"], "translate")
    # bpf_loop: 10 calls; a callback returning 1 at index 3 ends it after 4; flags: -EINVAL
    assert [_q(g[n])[0] for n in ("loop_ret", "loop_sum", "loop_ret2", "loop_err")] == [10, 45, 4, -22]
    # for_each: every hash element once, values written through; the array stops at key 4
    assert _q(g["hash_visits"]) == [3] and _q(g["hash_sum"]) == [1010 + 2020 + 3030]
    assert [struct.unpack("<Q", v)[0] for _, v in obj.maps["h"].items()] == [11, 21, 31]
    assert _q(g["arr_visits"]) == [5] and _q(g["arr_sum"]) == [1 + 2 + 3 + 4 + 5]
    # queue / stack of 4: a fifth push is -E2BIG; BPF_EXIST drops the oldest; empty pops -ENOENT
    assert _q(g["qpush_full"]) == [-7] and _q(g["qpush_over"]) == [0] and _q(g["qpeek"]) == [2]
    assert _q(g["qpop"]) == [2, 3, 4, 5, -2, -2]
    assert _q(g["spop"]) == [5, 4, 3, 2, -2, -2]
    # LPM trie: the longest covering prefix (ipaddress as the oracle)
    assert answers == [_lpm_oracle(a, p) for a, p in QUERIES]
    # bloom filter: no false negatives, few false positives
    assert _q(g["bloom_push"]) == [0] and _q(g["bloom_hits"]) == [50] and _q(g["bloom_false"])[0] <= 5
    # bpf_snprintf: the length needed with the NUL; truncated and terminated; bad data_len: -EINVAL
    assert g["text"].rstrip(b"\0") == b"-42-abc!" and _q(g["snp_ret"]) == [9]
    assert g["small"] == b"-42-a\0" and _q(g["snp_small_ret"]) == [9] and _q(g["snp_bad"]) == [-22]
    assert _q(g["cmp"]) == [0, -1, 1, 0]  # strncmp's sign, bounded by the size
    assert _q(g["cgroup_ret"]) == [-11, -7]  # empty slot (no cgroups): -EAGAIN; past the end: -E2BIG


def test_engines_agree_on_callbacks_and_maps(objs) -> None:
    translated, _, a1 = _run_features(objs["features"], "translate")
    interpreted, _, a2 = _run_features(objs["features"], "interp")
    assert translated == interpreted and a1 == a2


def test_tail_calls(objs) -> None:
    m = Machine.load(firmware("x86_64"))
    obj = m.load_bpf(objs["tailcalls"])
    args: list[int] = []
    m.kprobe("do_work", pre=lambda p, r: args.append(r.arg(1)) or 0)
    assert obj.unattached() == [f"{obj.path}: program 'user_slot' (kprobe): loaded, not attached (give it a "
                                f"function: --attach user_slot=FUNC)"]
    assert m.run(max_insns=50_000_000) == 0
    g = {k: _q(v)[0] for k, v in _globals(obj).items()}
    n = len(args)
    assert n == 557 and obj.programs["entry"].errors == 0
    # entry -> second -> chain -> chain ...: 33 tail calls in a run, so 34 programs run
    assert g["entry_runs"] == g["second_runs"] == n and g["chain_runs"] == 32 * n
    assert g["after_fail"] == 1000 * n  # the 34th tail call returns and chain goes on
    assert g["arg1_sum"] == sum(args)  # the tail-called program reads the same pt_regs

    # user space fills slot 0 with a program fd: entry's first successful tail call goes there
    m = Machine.load(firmware("x86_64"))
    obj = m.load_bpf(objs["tailcalls"])
    jmp = obj.maps["jmp"]
    assert jmp.update(struct.pack("<I", 0), struct.pack("<i", 12345)) == -9  # EBADF
    assert jmp.update(struct.pack("<I", 4), struct.pack("<i", obj.programs["user_slot"].fd)) == -7  # E2BIG
    assert jmp.update(struct.pack("<I", 0), struct.pack("<i", obj.programs["user_slot"].fd)) == 0
    assert obj.unattached() == []
    m.run(max_insns=50_000_000)
    g = {k: _q(v)[0] for k, v in _globals(obj).items()}
    assert g["user_slot_runs"] == g["entry_runs"] == 557 and g["second_runs"] == 0


MIXED_CALLS = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 4);
} jmp SEC(".maps");
static __noinline int sub(void *ctx) { bpf_tail_call(ctx, &jmp, 0); return 0; }
SEC("kprobe/do_work") int p(void *ctx) { return sub(ctx); }
char LICENSE[] SEC("license") = "GPL";
"""

UNIMPLEMENTED = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
u64 id;
SEC("kprobe/do_work") int p(void *ctx) { id = bpf_get_current_cgroup_id(); return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize(("source", "message"), [
    (MIXED_CALLS, "program 'p' (kprobe/do_work): mixing of tail_calls and bpf-to-bpf calls is not supported"),
    (UNIMPLEMENTED, "program 'p' (kprobe/do_work): verifier: insn 0: unknown func bpf_get_current_cgroup_id#80: "
                    "helper not implemented by kprobesim"),
])
def test_refusals_name_the_reason(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "p.c").write_text(source)
    obj = _compile(tmp_path / "p.c", tmp_path / "p.o", "riscv64")
    with pytest.raises(BpfError) as ei:
        Machine.load(firmware("riscv64")).load_bpf(obj)
    assert message in str(ei.value) and "\n" not in str(ei.value)


def test_helper_table_is_linuxs() -> None:
    """Every id and name of libbpf's bpf_helper_defs.h (generated from Linux's UAPI header)."""
    text = HELPER_DEFS.read_text()
    found = {int(n): name for name, n in re.findall(r"\(\*\s*bpf_(\w+)\)\(.*?\) = \(void \*\) (\d+);", text, re.S)}
    assert found == {i + 1: n for i, n in enumerate(helper_ids.NAMES)}
    assert helper_ids.describe(181) == "bpf_loop#181" and helper_ids.describe(999) == "unknown#999"


@pytest.mark.parametrize(("args", "err"), [
    ((22, 4, 4, 8), "queue key_size must be 0"),
    ((23, 0, 0, 8), "stack needs value_size and max_entries > 0"),
    ((11, 8, 4, 8), "an lpm_trie needs BPF_F_NO_PREALLOC"),
    ((11, 4, 4, 8, 1), "lpm_trie key_size 4 is not in 5..260"),
    ((11, 261, 4, 8, 1), "lpm_trie key_size 261 is not in 5..260"),
    ((30, 4, 8, 8), "a bloom_filter needs key_size 0"),
    ((3, 4, 8, 8), "prog_array needs key_size 4 and value_size 4"),
    ((8, 4, 4, 0), "bad max_entries 0"),
])
def test_map_creation_refused_as_linux_does(args: tuple, err: str) -> None:
    with pytest.raises(MapError, match=err) as ei:
        create_map(*args)
    assert ei.value.errno == 22 and "(EINVAL)" in str(ei.value)


def test_map_extra_is_for_bloom_filters() -> None:
    bloom = create_map(30, 0, 8, 100, map_extra=7)
    assert bloom.nr_hashes == 7 and bloom.mask == (1 << (100 * 7 // 5 * 7 - 1).bit_length()) - 1
    with pytest.raises(MapError, match="bad map_extra"):
        create_map(30, 0, 8, 100, map_extra=16)
    with pytest.raises(MapError, match="map_extra is only for bloom filters"):
        create_map(1, 4, 4, 100, map_extra=1)


def test_lpm_trie_updates_as_linux() -> None:
    t = create_map(11, 8, 4, 2, flags=1)
    key = struct.pack("<I", 16) + bytes([10, 1, 99, 99])
    assert t.update(key, b"\1\0\0\0", 1) == 0  # BPF_NOEXIST
    assert t.update(struct.pack("<I", 16) + bytes([10, 1, 0, 0]), b"\2\0\0\0", 1) == -17  # same prefix: EEXIST
    assert t.update(struct.pack("<I", 8) + bytes(4), b"\3\0\0\0", 2) == -2  # BPF_EXIST, absent: ENOENT
    assert t.update(struct.pack("<I", 33) + bytes(4), b"\3\0\0\0") == -22  # prefix past 32 bits
    assert t.update(struct.pack("<I", 8) + bytes([10, 0, 0, 0]), b"\3\0\0\0") == 0
    assert t.update(struct.pack("<I", 24) + bytes([10, 0, 0, 0]), b"\4\0\0\0") == -28  # full: ENOSPC
    assert bytes(t.lookup(struct.pack("<I", 32) + bytes([10, 1, 5, 5]))) == b"\1\0\0\0"
    assert bytes(t.lookup(struct.pack("<I", 15) + bytes([10, 1, 5, 5]))) == b"\3\0\0\0"  # /16 is too long
    assert t.delete(struct.pack("<I", 16) + bytes([10, 1, 0, 0])) == 0
    assert t.delete(struct.pack("<I", 16) + bytes([10, 1, 0, 0])) == -2


def test_jhash_known_values() -> None:
    """lookup3's published check values (Bob Jenkins' driver: hashlittle of "Four score and seven
    years ago" with seeds 0 and 1); jhash2 of words equals jhash of their bytes."""
    text = b"Four score and seven years ago"
    assert jhash(text, 0) == 0x17770551 and jhash(text, 1) == 0xCD628161
    words = (1, 2, 3, 4, 5, 6, 7)
    assert jhash2(words, 9) == jhash(struct.pack("<7I", *words), 9)


# -- callbacks at the VM level: budget and bad addresses --------------------------------------------

def _loop_helper(vm, r1, r2, r3, r4, r5, invoke):
    return sum(invoke(r2, i, r3) for i in range(r1))


@pytest.mark.parametrize("engine", ["interp", "translate"])
def test_callback_runs_charge_the_budget(engine: str) -> None:
    prog = """
        mov %r1, 3
        lddw %r2, func[+3]
        call 181
        exit
        mov %r0, %r1
        add %r0, 1
        exit
    """
    vm = VM(prog, {181: _loop_helper}, engine=engine)
    assert vm.run() == 1 + 2 + 3
    assert vm.last_count == 4 + 3 * 3
    spin = """
        mov %r1, 1
        lddw %r2, func[+3]
        call 181
        exit
        ja -1
        exit
    """
    vm = VM(spin, {181: _loop_helper}, engine=engine, budget=1000)
    with pytest.raises(BudgetExhausted) as ei:
        vm.run()
    assert ei.value.pc == 5


@pytest.mark.parametrize("engine", ["interp", "translate"])
def test_callback_address_must_be_a_callback(engine: str) -> None:
    prog = "mov %r1, 1\nmov %r2, 77\ncall 181\nexit"
    with pytest.raises(HelperError, match=r"bpf_loop#181: 0x4d is not a callback's address"):
        VM(prog, {181: _loop_helper}, engine=engine).run()
