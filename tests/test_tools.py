"""bcc-style tools (examples/tools/) loaded unmodified on every arch with libbpf's user-space
steps: run-time attach (--attach / obj.attach), globals set before load (--set), a map filled by
the user before the run, __kconfig/__ksym externs, programs of other types skipped.

Oracles: Python kprobes on the same functions (the kernel's own arguments, return values and
call counts) and agreement across the three arches' kernels.
"""

from __future__ import annotations

import collections
import re
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fwpaths import ALL_ARCHES, ROOT, firmware

from kprobesim.ebpf.loader import BpfError
from kprobesim.machine import Machine
from kprobesim.task import current_task

TOOLS = ROOT / "examples" / "tools"
TARGET = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}
BUILD = "python -m ziglang cc -target bpfel-freestanding -O2 -g -c -I kprobesim/ebpf/include -I /usr/include"


def _build(src: Path, arch: str, out: Path, *flags: str) -> Path:
    cmd = [sys.executable, *BUILD.split()[1:], f"-D__TARGET_ARCH_{TARGET[arch]}", "-Wall", "-Werror", *flags,
           str(src), "-o", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


#: One worker runs the module: the tools are compiled (~2 s of CPU) once, not once per worker.
pytestmark = pytest.mark.xdist_group("tools-objects")


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    d = tmp_path_factory.mktemp("tools")
    (d / "mixed.c").write_text(MIXED)
    (d / "externs.c").write_text(EXTERNS)
    jobs = [(TOOLS / f"{t}.c", t, a) for t in ("funclatency", "stackcount", "ksnoop") for a in ALL_ARCHES]
    jobs += [(d / "mixed.c", "mixed", "riscv64"), (d / "externs.c", "externs", "riscv64")]
    with ThreadPoolExecutor(4) as pool:
        built = pool.map(lambda j: _build(j[0], j[2], d / f"{j[1]}.{j[2]}.o"), jobs)
        return {(t, a): p for (_, t, a), p in zip(jobs, built, strict=True)}


def _hist_total(text: str, name: str) -> int:
    block = text[text.index(f"@{name}:") :].split("\n\n", 1)[0]
    return sum(int(n) for n in re.findall(r"^\[[^\]\n]*[)\]] +(\d+) ", block, re.M))


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_funclatency_from_the_command_line(objs, arch: str, run_cli) -> None:
    attach = ("--attach", "func_entry=do_work", "--attach", "func_exit=do_work")
    status, out, err = run_cli(str(firmware(arch)), "--bpf", str(objs["funclatency", arch]), *attach,
                               "--set", "targ_tgid=2")
    assert status == 0 and err == ""
    # kworker/0 (pid 2) calls do_work 300 times; the other 257 calls are filtered out
    assert _hist_total(out.decode(), "latency_hist") == 300


def _stacks(obj) -> collections.Counter:
    """Stack counts aggregated by the stack's function names (ids and offsets differ by arch)."""
    m = obj.machine
    out: collections.Counter = collections.Counter()
    for key, value in obj.maps["counts"].items():
        sid = struct.unpack("<i", key)[0]
        names = tuple(m.image.lookup(ip)[0].name for ip in obj.maps["stacks"].stack(sid))
        out[names] += struct.unpack("<Q", value)[0]
    return out


def _run_tools(objs, arch: str) -> dict:
    m = Machine.load(firmware(arch))
    lat = m.load_bpf(objs["funclatency", arch], attach={"func_entry": "do_work", "func_exit": "do_work"},
                          globals={"targ_tgid": "4"})
    stack = m.load_bpf(objs["stackcount", arch])
    assert stack.unattached() and stack.programs["on_call"].probe is None
    stack.attach("on_call", "strlen")
    snoop = m.load_bpf(objs["ksnoop", arch], attach={"entry": "do_work", "ret": "do_work"})
    assert snoop.maps["config"].update(b"\0\0\0\0", struct.pack("<II", 2, 0b01)) == 0  # 2 args, record a
    calls: list = []
    rets: list = []
    strlens = [0]
    m.kprobe("do_work", pre=lambda p, r: calls.append((current_task(m).pid, r.arg(1))) or 0)
    m.kretprobe("do_work", handler=lambda i, r: rets.append((current_task(m).pid, r.retval)))
    m.kprobe("strlen", pre=lambda p, r: strlens.__setitem__(0, strlens[0] + 1) or 0)
    assert m.run(max_insns=50_000_000) == 0
    entries, returns = [], []
    for rec in snoop.records:
        pid, kind, mask, _pad = struct.unpack_from("<IIII", rec.data)
        args = struct.unpack_from("<5Q", rec.data, 16)
        (ret,) = struct.unpack_from("<q", rec.data, 56)
        if kind == 0:
            assert mask == 1 and args[1:] == (0, 0, 0, 0)
            entries.append((pid, args[0]))
        else:
            returns.append((pid, ret & (2**64 - 1)))
    return {
        "lat_total": sum(struct.unpack("<Q", v)[0] for _, v in lat.maps["latency_hist"].items()),
        "do_work_by_4": sum(1 for pid, _ in calls if pid == 4),
        "stacks": _stacks(stack),
        "strlen": strlens[0],
        "entries": entries,
        "calls": calls,
        "returns": returns,
        "rets": [(pid, v & (2**64 - 1)) for pid, v in rets],
    }


def test_tools_agree_with_the_kernel_and_across_arches(objs) -> None:
    results = {arch: _run_tools(objs, arch) for arch in ALL_ARCHES}
    for arch, r in results.items():
        assert r["lat_total"] == r["do_work_by_4"] > 0, arch
        assert sum(r["stacks"].values()) == r["strlen"] > 10, arch
        assert r["entries"] == r["calls"] and len(r["calls"]) == 557, arch
        assert r["returns"] == r["rets"], arch
    ref = results["riscv64"]
    for arch in ("x86_64", "loongarch64"):
        for key in ("lat_total", "stacks"):
            assert results[arch][key] == ref[key], (arch, key)
        for key in ("entries", "returns"):  # tasks interleave differently: compare each task's calls
            assert _by_task(results[arch][key]) == _by_task(ref[key]), (arch, key)


def _by_task(rows: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = collections.defaultdict(list)
    for pid, value in rows:
        out[pid].append(value)
    return dict(out)


MIXED = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
SEC("tracepoint/sched/sched_switch") int tp(void *ctx) { return 0; }
SEC("raw_tp/sched_switch") int rawtp(void *ctx) { return 0; }
SEC("tp_btf/sched_switch") int tpbtf(void *ctx) { return 0; }
SEC("perf_event") int perf(void *ctx) { return 0; }
SEC("kprobe") int probe(void *ctx) { return 0; }
SEC("kprobe/do_work") int fixed(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def test_other_program_types_are_skipped_one_line_each(objs, run_cli) -> None:
    status, _out, err = run_cli(str(firmware("riscv64")), "--bpf", str(objs["mixed", "riscv64"]))
    assert status == 0
    lines = err.splitlines()
    assert len(lines) == 5, err
    for prog, kind in (("tp", "tracepoint"), ("rawtp", "raw_tracepoint"), ("tpbtf", "tp_btf"), ("perf", "perf_event")):
        assert any(f"program '{prog}'" in ln and f"section type '{kind}' is not supported" in ln for ln in lines)
    assert any("program 'probe' (kprobe): loaded, not attached" in ln and "--attach probe=FUNC" in ln for ln in lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--set", "nope=1"), "has no global variable 'nope' (its globals: targ_tgid)"),
        (("--set", "targ_tgid=4294967296"), "4294967296 does not fit const volatile pid_t (-2147483648..2147483647)"),
        (("--set", "targ_tgid=two"), "'two' is not a number for const volatile pid_t"),
        (("--map-size", "nope=4"), "has no map 'nope' (its maps: starts, latency_hist)"),
        (("--map-size", "starts=0"), "max_entries must be"),
        (("--attach", "nope=do_work"), "has no program 'nope' (its programs: func_entry, func_exit)"),
        (("--attach", "func_entry=no_such_function"), "unknown symbol 'no_such_function'"),
    ],
)
def test_bad_user_space_steps_are_one_line(objs, run_cli, argv, message) -> None:
    status, _out, err = run_cli(str(firmware("riscv64")), "--bpf", str(objs["funclatency", "riscv64"]), *argv)
    assert status in (65, 66) and err.count("\n") == 1 and message in err, err


def test_map_size_and_set_reach_the_loaded_object(objs) -> None:
    m = Machine.load(firmware("x86_64"))
    obj = m.load_bpf(objs["funclatency", "x86_64"], globals={"targ_tgid": "0x2a"}, map_sizes={"starts": 77})
    assert obj.maps["starts"].max_entries == 77
    assert obj.maps[".rodata"].lookup(b"\0\0\0\0")[:4] == struct.pack("<i", 42)


EXTERNS = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
extern int LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig;
extern int CONFIG_HZ __kconfig __weak;
extern bool CONFIG_BPF_SYSCALL __kconfig __weak;
extern char CONFIG_TRI __kconfig __weak;
#ifdef STRONG
extern int CONFIG_REQUIRED __kconfig;
#endif
extern const void current_task __ksym;
extern const void no_such_symbol __ksym __weak;
u64 out[8];
SEC("kprobe/do_work")
int read_externs(void *ctx)
{
	out[0] = LINUX_KERNEL_VERSION;
	out[1] = LINUX_HAS_BPF_COOKIE;
	out[2] = CONFIG_HZ;
	out[3] = CONFIG_BPF_SYSCALL;
	out[4] = (u64)&current_task;
	out[5] = (u64)&no_such_symbol;
	out[6] = CONFIG_TRI;
#ifdef STRONG
	out[7] = CONFIG_REQUIRED;
#endif
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def _externs(obj) -> tuple[int, ...]:
    return struct.unpack("<8Q", bytes(obj.maps[".bss"].lookup(b"\0\0\0\0")))


def test_kconfig_and_ksym_externs(objs, tmp_path: Path) -> None:
    m = Machine.load(firmware("riscv64"))
    obj = m.load_bpf(objs["externs", "riscv64"])
    m.run(max_insns=2_000_000)
    # no config: the documented defaults; weak CONFIG_* are 0; ksyms are the image's addresses
    assert _externs(obj)[:7] == ((6 << 16) + (1 << 8), 1, 0, 0, m.image.symbol("current_task").addr, 0, 0)

    m = Machine.load(firmware("riscv64"))
    m.kconfig_source = lambda: "CONFIG_HZ=250\nCONFIG_BPF_SYSCALL=y\nCONFIG_TRI=m\n# CONFIG_REQUIRED is not set\n"
    m.kernel_version = (5 << 16) + (15 << 8) + 7
    obj = m.load_bpf(objs["externs", "riscv64"])
    m.run(max_insns=2_000_000)
    assert _externs(obj)[:4] == ((5 << 16) + (15 << 8) + 7, 1, 250, 1) and _externs(obj)[6] == ord("m")

    (tmp_path / "externs.c").write_text(EXTERNS)
    strong = _build(tmp_path / "externs.c", "riscv64", tmp_path / "strong.o", "-DSTRONG")
    with pytest.raises(BpfError, match=r"extern \(kcfg\) 'CONFIG_REQUIRED': not found in no config"):
        Machine.load(firmware("riscv64")).load_bpf(strong)


def test_stackcount_comm_filter_set_as_a_string(objs) -> None:
    m = Machine.load(firmware("riscv64"))
    obj = m.load_bpf(objs["stackcount", "riscv64"], attach={"on_call": "strlen"}, globals={"targ_comm": "kworker/2"})
    by_comm: collections.Counter = collections.Counter()
    m.kprobe("strlen", pre=lambda p, r: by_comm.update([current_task(m).comm]) or 0)
    assert m.run(max_insns=50_000_000) == 0
    stacks = _stacks(obj)
    assert sum(stacks.values()) == by_comm["kworker/2"] > 0 and len(by_comm) > 1
    assert all(names[1] == "kworker2" for names in stacks)
