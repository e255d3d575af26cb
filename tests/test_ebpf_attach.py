"""eBPF programs compiled with ziglang, attached to the bundled kernels: helpers, loader, output.

Every program below is real C built for the BPF target and run against real kernels; the
expectations come from the kernel itself (Python kprobes on the same sites, the image's symbols,
the firmware's known results) rather than from the eBPF engine.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conformance_suite import require_suite
from fwpaths import ROOT, UNICORN_ARCHES, firmware

from kprobesim.ebpf.loader import BpfError, ctx_reads, load
from kprobesim.errors import ProbeError
from kprobesim.machine import Machine
from kprobesim.task import current_task

INCLUDE = ROOT / "kprobesim" / "ebpf" / "include"
TARGET = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}
ALL_ARCHES = ("riscv64", "x86_64", "loongarch64")
EFAULT, EINVAL, EEXIST = 14, 22, 17
BAD_ADDR = 0x7FF000000000  # unmapped on every board (loongarch's direct mode drops bits 48+)
PRELUDE = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include "kprobesim_tracing.h"\n'

SOURCES = {
    # probe_read of guest strings, unmapped reads, ids, time, IPs
    "reads": r"""
struct event {
	s64 rc, rc_bad, rc_short;
	u64 ip, func_ip, ktime, pid_tgid, task;
	char s[32];
	char bad[8];
	char shrt[4];
	char comm[16];
};
struct event *const event_type __attribute__((unused)) = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 64 * 1024); } events SEC(".maps");

SEC("kprobe/strlen")
int BPF_KPROBE(on_strlen, const char *s)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return 0;
	__builtin_memset(e->bad, 0x55, sizeof(e->bad));
	e->rc = bpf_probe_read_kernel_str(e->s, sizeof(e->s), s);
	e->rc_bad = bpf_probe_read_kernel(e->bad, sizeof(e->bad), (void *)0x7ff000000000ULL);
	e->rc_short = bpf_probe_read_str(e->shrt, sizeof(e->shrt), s);
	e->ip = PT_REGS_IP(ctx);
	e->func_ip = bpf_get_func_ip(ctx);
	e->ktime = bpf_ktime_get_ns();
	e->pid_tgid = bpf_get_current_pid_tgid();
	e->task = (u64)bpf_get_current_task();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}
""",
    # trace_printk formats
    "printk": r"""
u64 done;
SEC("kprobe/strlen")
int formats(struct pt_regs *ctx)
{
	char local[8] = "stack";
	long r;

	if (done++)
		return 0;
	bpf_printk("d=%d i=%i u=%u", -5, 42, -1);
	bpf_printk("x=%x X=%X c=%c", 0xbeef, 0xbeef, 'Z');
	bpf_printk("ld=%ld lu=%lu lx=%lx", -5L, -1L, 0xabcdef0123L);
	bpf_printk("lld=%lld llu=%llu llx=%llx", -7LL, 18446744073709551615ULL, 255ULL);
	bpf_printk("w=[%5d] [%-5d] [%05x] 100%%", 42, 42, 255);
	bpf_printk("s=%s local=%s", (char *)PT_REGS_PARM1(ctx), local);
	bpf_printk("p=%p pS=%pS ps=%ps", (void *)0x1234, (void *)PT_REGS_IP(ctx), (void *)PT_REGS_IP(ctx));
	bpf_printk("fault=[%s]", (char *)0x7ff000000000ULL);
	bpf_printk("five %d %d %d %d %d", 1, 2, 3, 4, 5);
	bpf_printk("newline dropped\n");
	r = bpf_trace_printk("four %d %d %d %d", sizeof("four %d %d %d %d"), 1, 2, 3);
	bpf_printk("too many: %ld", r);
	r = bpf_trace_printk("bad %q", sizeof("bad %q"), 1);
	bpf_printk("bad conversion: %ld", r);
	return 0;
}
""",
    # frame-pointer stacks: kernel, user, kretprobe trampolines
    "stacks": r"""
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1024);
	__uint(key_size, 4);
	__uint(value_size, 32 * 8);
} stacks SEC(".maps");
struct ids { u64 which; s64 kernel, user, got; u64 buf[16]; };
struct ids *const ids_type __attribute__((unused)) = 0;
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 4);
} out SEC(".maps");

static __always_inline int emit(struct pt_regs *ctx, u64 which)
{
	struct ids i = { .which = which };

	i.kernel = bpf_get_stackid(ctx, &stacks, 0);
	i.user = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	i.got = bpf_get_stack(ctx, i.buf, sizeof(i.buf), 0);
	bpf_perf_event_output(ctx, &out, BPF_F_CURRENT_CPU, &i, sizeof(i));
	return 0;
}

SEC("kprobe/strlen")
int on_strlen(struct pt_regs *ctx) { return emit(ctx, 0); }
SEC("kprobe/handle_syscall")
int on_syscall(struct pt_regs *ctx) { return emit(ctx, 1); }
SEC("kprobe/fib")
int on_fib(struct pt_regs *ctx) { return emit(ctx, 2); }
SEC("kretprobe/fib")
int on_fib_ret(struct pt_regs *ctx) { return emit(ctx, 3); }
""",
    # kretprobe context: return value, return address, function address
    "kret": r"""
struct ret { s64 rc; u64 ip, func_ip; };
struct ret *const ret_type __attribute__((unused)) = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 256 * 1024); } rets SEC(".maps");
SEC("kretprobe/fib")
int BPF_KRETPROBE(fib_ret, long rc)
{
	struct ret r = { rc, PT_REGS_IP(ctx), bpf_get_func_ip(ctx) };

	bpf_ringbuf_output(&rets, &r, sizeof(r), 0);
	return 0;
}
""",
    # override_return at do_work's entry
    "override": r"""
u64 overrides;
SEC("kprobe/do_work")
int fake_do_work(struct pt_regs *ctx)
{
	overrides++;
	bpf_override_return(ctx, 777);
	return 0;
}
""",
    # ring buffer / perf records and printk lines interleaved
    "order": r"""
struct seq { u64 n; u64 tag; };
struct seq *const seq_type __attribute__((unused)) = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4); __uint(value_size, 4); } pe SEC(".maps");
u64 seq;
SEC("kprobe/do_work")
int ordered(struct pt_regs *ctx)
{
	struct seq s = { seq++, 1 }, *r;

	if (s.n >= 20)
		return 0;
	bpf_printk("seq %llu", s.n);
	bpf_ringbuf_output(&rb, &s, sizeof(s), 0);
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (r) {
		r->n = s.n;
		r->tag = 2;
		if (s.n % 3 == 0)
			bpf_ringbuf_discard(r, 0);
		else
			bpf_ringbuf_submit(r, 0);
	}
	s.tag = 3;
	bpf_perf_event_output(ctx, &pe, BPF_F_CURRENT_CPU, &s, sizeof(s));
	return 0;
}
""",
    # a faulting program next to a good one; an endless loop
    "fault": r"""
u64 ok_runs;
SEC("kprobe/do_work")
int crash(struct pt_regs *ctx) { return *(volatile long *)PT_REGS_PARM1(ctx); }
SEC("kprobe/do_work")
int fine(struct pt_regs *ctx) { ok_runs++; return 0; }
SEC("kprobe/sum_array")
int spin(struct pt_regs *ctx)
{
	for (volatile int i = 0; i < 1000000; i++)
		;
	return 0;
}
""",
    # every pt_regs field a libbpf macro reads, through one context pointer
    "ctx": r"""
struct regs { u64 p1, p2, p3, p4, p5, sp, ip, rc, fp, ret; };
struct regs *const regs_type __attribute__((unused)) = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 256 * 1024); } regs SEC(".maps");
static __always_inline void dump(struct pt_regs *ctx)
{
	struct regs r = {
		PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx), PT_REGS_PARM4(ctx),
		PT_REGS_PARM5(ctx), PT_REGS_SP(ctx), PT_REGS_IP(ctx), PT_REGS_RC(ctx), PT_REGS_FP(ctx), 0,
	};
#if !defined(__TARGET_ARCH_x86)
	r.ret = PT_REGS_RET(ctx);
#endif
	bpf_ringbuf_output(&regs, &r, sizeof(r), 0);
}
SEC("kprobe/do_work")
int on_work(struct pt_regs *ctx) { dump(ctx); return 0; }
SEC("kretprobe/fib")
int on_fib(struct pt_regs *ctx) { dump(ctx); return 0; }
""",
    # a hash map and an array read back through the Python API
    "count": r"""
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u64);
} by_pid SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} totals SEC(".maps");
const volatile u64 step = 3;
SEC("kprobe/do_work")
int count(struct pt_regs *ctx)
{
	u32 pid = bpf_get_current_pid_tgid(), zero = 0;
	u64 one = 1, *v = bpf_map_lookup_elem(&by_pid, &pid);

	if (v)
		*v += 1;
	else
		bpf_map_update_elem(&by_pid, &pid, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&totals, &zero);
	if (v)
		*v += step;
	return 0;
}
""",
    # load-time refusals
    "bad_helper": r"""
static long (*unknown_helper)(void) = (void *)9999;
SEC("kprobe/do_work")
int bad(struct pt_regs *ctx) { return unknown_helper(); }
""",
    "bad_fp": r"""
SEC("kprobe/fib")
int writes_fp(struct pt_regs *ctx) { asm volatile("r10 = 0"); return 0; }
""",
    "bad_sym": r"""
SEC("kprobe/do_work")
int good(struct pt_regs *ctx) { return 0; }
SEC("kprobe/no_such_function")
int missing(struct pt_regs *ctx) { return 0; }
""",
    "bad_section": r"""
SEC("uprobe/libc:malloc")
int up(struct pt_regs *ctx) { return 0; }
""",
    "bad_override": r"""
SEC("kretprobe/do_work")
int late(struct pt_regs *ctx) { bpf_override_return(ctx, 1); return 0; }
""",
    "bad_override_off": r"""
SEC("kprobe/do_work+0x4")
int inside(struct pt_regs *ctx) { bpf_override_return(ctx, 1); return 0; }
""",
}

# (program, arches) to build; x86_64 offsets of do_work differ, so bad_override_off is riscv only
BUILDS = [(name, arch) for name in SOURCES for arch in UNICORN_ARCHES if name != "bad_override_off"]
BUILDS += [("reads", "loongarch64"), ("bad_override_off", "riscv64")]


#: One worker runs the module: the objects are compiled (~5 s of CPU) once, not once per worker.
pytestmark = pytest.mark.xdist_group("attach-objects")


def _compile(name: str, arch: str, outdir: Path) -> Path:
    src = outdir / f"{name}.c"
    if not src.exists():
        src.write_text(PRELUDE + SOURCES[name] + '\nchar LICENSE[] SEC("license") = "GPL";\n')
    out = outdir / f"{name}.{arch}.o"
    cmd = [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        "-target",
        "bpfel-freestanding",
        "-O2",
        "-g",
        "-c",
        f"-I{INCLUDE}",
        "-I/usr/include",
        f"-D__TARGET_ARCH_{TARGET[arch]}",
        str(src),
        "-o",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def objs(tmp_path_factory) -> dict[tuple[str, str], Path]:
    outdir = tmp_path_factory.mktemp("bpf")
    for name in SOURCES:  # write the sources first: the threads share them
        (outdir / f"{name}.c").write_text(PRELUDE + SOURCES[name] + '\nchar LICENSE[] SEC("license") = "GPL";\n')
    with ThreadPoolExecutor(8) as pool:
        paths = pool.map(lambda b: _compile(b[0], b[1], outdir), BUILDS)
        return dict(zip(BUILDS, paths, strict=True))


def machine(arch: str) -> Machine:
    return Machine.load(firmware(arch))


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode()


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_probe_read_ids_time_and_ips(arch, objs):
    m = machine(arch)
    seen = []

    def pre(p, regs):
        s = m.read(regs.arg(1), 64).split(b"\0", 1)[0].decode()
        seen.append((m.now(), current_task(m), s))
        return 0

    m.kprobe("strlen", pre=pre)  # runs before the program on every hit: same time, same task
    obj = m.load_bpf(objs["reads", arch])
    assert m.run() == 0
    strlen = m.image.symbol("strlen").addr
    layout = struct.Struct("<3q5Q32s8s4s16s")
    events = [layout.unpack_from(r.data) for r in obj.records]
    assert len(events) == len(seen) == obj.programs["on_strlen"].runs == 28
    assert "hello, kprobes" in {s for _, _, s in seen}
    times = [e[5] for e in events]
    assert times == sorted(times) and times == [t for t, _, _ in seen]
    for (rc, rc_bad, rc_short, ip, func_ip, _, pid_tgid, task, s, bad, shrt, comm), (_, t, guest) in zip(
        events, seen, strict=True
    ):
        assert cstr(s) == guest[:31] and rc == min(len(guest), 31) + 1
        assert rc_bad == -EFAULT and bad == bytes(8)  # the destination is zeroed
        assert rc_short == min(len(guest), 3) + 1 and cstr(shrt) == guest[:3]
        assert ip == func_ip == strlen
        assert pid_tgid == (t.tgid << 32 | t.pid) and task == t.addr
        assert cstr(comm) == (t.comm if t.addr else "")
    assert {cstr(e[11]) for e in events} >= {"swapper", "kworker/2"}
    # each record is printed as hex and decoded with BTF
    line = next(x for x in m.trace_lines if "hello, kprobes" in x)
    assert re.search(r"bpf_ringbuf: events: [0-9a-f]{8} .* \| struct event \{rc=15, rc_bad=-14, ", line)


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_trace_printk_formats(arch, objs):
    m = machine(arch)
    m.load_bpf(objs["printk", arch])
    assert m.run() == 0
    lines = [x for x in m.trace_lines if "bpf_trace_printk" in x]
    assert re.match(r"^ +(\S+)-(\d+) \[000\] d\.\.\.\. +\d+\.\d{6}: bpf_trace_printk: ", lines[0])
    msgs = [x.split("bpf_trace_printk: ", 1)[1] for x in lines]
    size = m.image.symbol("strlen").size
    first = m.image.lookup(m.image.symbol("strlen").addr)
    assert first is not None
    assert msgs == [
        "d=-5 i=42 u=4294967295",
        "x=beef X=BEEF c=Z",
        "ld=-5 lu=18446744073709551615 lx=abcdef0123",
        "lld=-7 llu=18446744073709551615 llx=ff",
        "w=[   42] [42   ] [000ff] 100%",
        "s=swapper local=stack",  # the first strlen() is the boot task's name
        f"p=0000000000001234 pS=strlen+0x0/{size:#x} ps=strlen",
        "fault=[]",
        "five 1 2 3 4 5",  # more than 3 arguments: libbpf uses bpf_trace_vprintk
        "newline dropped",
        f"too many: -{EINVAL}",
        f"bad conversion: -{EINVAL}",
    ]


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_get_stackid_walks_frame_pointers(arch, objs):
    m = machine(arch)
    spec = m.arch.module("regs")
    callers = []

    def pre(p, regs):  # the return address at entry: ra, or [sp] on x86_64
        ra = regs[spec.RA_REG] if spec.RA_REG else int.from_bytes(regs.read_mem(regs.sp, 8), "little")
        callers.append(ra)
        return 0

    m.kprobe("strlen", pre=pre)
    obj = m.load_bpf(objs["stacks", arch])
    assert m.run() == 0
    stacks = obj.maps["stacks"]
    events: dict[int, list[tuple[int, int, list[int]]]] = {0: [], 1: [], 2: [], 3: []}
    for r in obj.records:
        which, kernel, user, got, *buf = struct.unpack("<Q3q16Q", r.data)
        frames = buf[: got // 8]
        assert got > 0 and (kernel < 0 or stacks.stack(kernel)[:16] == frames)  # get_stackid == get_stack
        assert kernel >= 0 or kernel == -EEXIST  # a bucket taken by another stack
        events[which].append((kernel, user, frames))

    def names(frames: list[int]) -> list[str]:
        return [m.image.describe(ip) for ip in frames]

    assert [len(events[i]) for i in range(4)] == [28, 11, 2296, 2296] and len(callers) == 28
    for (_, user, frames), ra in zip(events[0], callers, strict=True):
        assert names(frames)[0] == "strlen"
        assert frames[1] == ra  # the caller, although strlen's frame does not exist yet
        assert user == -EFAULT  # no user context (kernel threads, boot)
    full = [stacks.stack(k) for k, _, _ in events[0] if k >= 0]
    assert full and all(names(f)[-1].split("+")[0] in ("_start", "kthread_trampoline") for f in full)
    # handle_syscall runs for the user task: its user stack is the code that made the call
    assert all(names(f)[0] == "handle_syscall" for _, _, f in events[1])
    user = [stacks.stack(u) for _, u, _ in events[1] if u != -EEXIST]
    assert len(user) > 5 and {names(f)[-1].split("+")[0] for f in user} == {"user_main"}
    # fib's recursion returns through kretprobe trampolines: the walk puts the real addresses back
    fib = m.image.symbol("fib")
    for which in (2, 3):
        for _, _, frames in events[which]:
            assert all(m.image.lookup(ip) is not None for ip in frames)
    assert max(sum(n.startswith("fib+") for n in names(f)) for _, _, f in events[2]) >= 8
    # a kretprobe's stack starts at the return address: inside fib for the recursive calls
    assert sum(fib.addr < f[0] < fib.addr + fib.size for _, _, f in events[3]) > 2000


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_kretprobe_context(arch, objs):
    m = machine(arch)
    expected = []
    m.kretprobe("fib", handler=lambda inst, regs: expected.append((regs.retval, inst.ret_addr)), maxactive=64)
    obj = m.load_bpf(objs["kret", arch])
    assert m.run() == 0
    fib = m.image.symbol("fib").addr
    got = [struct.unpack("<qQQ", r.data) for r in obj.records]
    assert len(got) == len(expected) == 2296
    assert [(rc, ip) for rc, ip, _ in got] == [(rc - (1 << 64) if rc >> 63 else rc, ip) for rc, ip in expected]
    assert {f for _, _, f in got} == {fib} and 144 in {rc for rc, _, _ in got}


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_override_return_changes_the_kernel(arch, objs):
    m = machine(arch)
    seen = []
    # a kretprobe placed first sees the overridden return (its trampoline is where we return to)
    m.kretprobe("do_work", handler=lambda inst, regs: seen.append(regs.retval), maxactive=64)
    obj = m.load_bpf(objs["override", arch])
    status = m.run()
    assert status == 2 and "FAIL: check 2 (do_work)" in m.console  # do_work(1, 2) != 13445
    assert "do_work(1, 2) = 777" in m.console
    assert obj.programs["fake_do_work"].runs == 557 and seen == [777] * 557
    assert "@.bss: {overrides=557}" in obj.format_maps()


def test_override_return_only_at_a_kprobe_on_function_entry(objs):
    with pytest.raises(BpfError, match="bpf_override_return needs a kprobe at a function's entry"):
        load(machine("riscv64"), objs["bad_override", "riscv64"])
    m = machine("riscv64")
    with pytest.raises(BpfError, match=r"inside' \(kprobe/do_work\+0x4\): bpf_override_return needs"):
        load(m, objs["bad_override_off", "riscv64"])
    assert not m.probes.sites


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_records_and_printk_lines_in_order(arch, objs):
    m = machine(arch)
    obj = m.load_bpf(objs["order", arch])
    assert m.run() == 0
    got = []
    for line in m.trace_lines:
        if "bpf_trace_printk: seq " in line:
            got.append(("printk", int(line.rsplit(" ", 1)[1])))
        elif m_ := re.search(r"(bpf_ringbuf|bpf_perf_output): (rb|pe): .* \| struct seq \{n=(\d+), tag=(\d)\}", line):
            got.append((m_[1], int(m_[3]), int(m_[4])))
    want = []
    for n in range(20):
        want += [("printk", n), ("bpf_ringbuf", n, 1)]
        if n % 3:
            want.append(("bpf_ringbuf", n, 2))  # discarded records never reach a consumer
        want.append(("bpf_perf_output", n, 3))
    assert got == want
    assert [(r.kind, r.map_name) for r in obj.records][:3] == [
        ("bpf_ringbuf", "rb"),
        ("bpf_perf_output", "pe"),
        ("bpf_ringbuf", "rb"),
    ]
    assert obj.maps["rb"].consumer_pos == obj.maps["rb"].producer_pos  # everything consumed


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_runtime_fault_stops_only_that_program(arch, objs):
    # Linux's verifier (and kprobesim's) refuses the crashing program at load...
    with pytest.raises(BpfError, match=r"program 'crash' \(kprobe/do_work\): verifier: insn 1: R1 invalid mem "
                                       r"access 'scalar'"):
        load(machine(arch), objs["fault", arch])
    # ... and without the verifier, the run-time checks stop it at its first fault
    m = machine(arch)
    obj = load(m, objs["fault", arch], budget=5000, verify=False)
    assert m.run() == 0
    assert m.console.endswith(firmware(arch, "transcript.txt").read_text().splitlines()[-1] + "\n")
    crash, fine, spin = (obj.programs[n] for n in ("crash", "fine", "spin"))
    assert crash.runs == crash.errors == 557 and fine.runs == 557 and fine.errors == 0
    assert spin.runs == spin.errors == 9
    faults = [x for x in m.trace_lines if x.startswith("bpf: ")]
    assert faults == [
        "bpf: crash: pc 1: invalid read of 8 bytes at 0x1 (null pointer dereference)",
        faults[1],
    ] and re.fullmatch(r"bpf: spin: pc \d+: instruction budget of 5000 exhausted", faults[1])
    assert "@.bss: {ok_runs=557}" in obj.format_maps()


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_context_fields_and_engines_agree(arch, objs):
    """Only the pt_regs fields a program reads are built per hit: it sees the same values as
    with the whole structure, in the interpreter as in the translator."""
    runs = {}
    for engine, lazy in (("translate", True), ("interp", False)):
        m = machine(arch)
        obj = load(m, objs["ctx", arch], engine=engine, lazy_ctx=lazy)
        assert m.run() == 0
        runs[engine] = [r.data for r in obj.records]
        assert obj.programs["on_work"].insns > 0
    assert runs["translate"] == runs["interp"] and len(runs["interp"]) == 557 + 2296
    assert (1, 2) in {struct.unpack_from("<QQ", r) for r in runs["interp"]}  # do_work(1, 2)
    obj = load(machine(arch), objs["ctx", arch])
    assert ctx_reads(obj.programs["on_work"].vm.program)  # known: a few fields only


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_python_api_maps(arch, objs):
    m = machine(arch)
    obj = m.load_bpf(objs["count", arch])
    assert m.run() == 0
    counts = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in obj.maps["by_pid"].items()}
    assert counts == {0: 1, 2: 300, 4: 256}
    totals = obj.maps["totals"].items()
    assert int.from_bytes(totals[0][1], "little") == 3 * 557 and len(totals) == 4
    assert set(obj.maps) == {"by_pid", "totals", ".rodata"}
    text = obj.format_maps()
    assert "@by_pid:\n0: 1\n2: 300\n4: 256\n" in text and "@totals:\n0: 1671\n" in text
    assert ".rodata" not in text


def test_load_errors_are_one_line(objs, run_cli, tmp_path):
    elf = str(firmware("riscv64"))
    cases = [
        (
            "bad_helper",
            BpfError.exit_status,
            "program 'bad' (kprobe/do_work): verifier: insn 0: invalid func unknown#9999",
        ),
        (
            "bad_fp",
            BpfError.exit_status,
            "program 'writes_fp' (kprobe/fib): verifier: insn 0: frame pointer r10 is read only",
        ),
        (
            "bad_sym",
            ProbeError.exit_status,
            "program 'missing' (kprobe/no_such_function): unknown symbol 'no_such_function'",
        ),
        ("bad_section", ProbeError.exit_status, "program 'up' (uprobe/libc:malloc): libc:malloc: no such file 'libc'"),
    ]
    for name, status, message in cases:
        code, out, err = run_cli(elf, "--bpf", str(objs[name, "riscv64"]))
        assert code == status and err.count("\n") == 1 and message in err, (name, err)
        assert out == b""  # refused before the kernel ran
    (tmp_path / "junk.o").write_bytes(b"\x01\x02" * 100)
    code, _, err = run_cli(elf, "--bpf", str(tmp_path / "junk.o"))
    assert code == 65 and err == f"kprobesim: {tmp_path / 'junk.o'}: not an ELF file\n"
    code, _, err = run_cli(elf, "--bpf", str(tmp_path / "none.o"))
    assert code == 65 and "none.o: no such file" in err and err.count("\n") == 1
    code, _, err = run_cli(elf, "--bpf", str(firmware("riscv64")))  # an ELF, not for BPF
    assert code == 65 and "expected EM_BPF" in err
    # nothing stays attached after a refusal
    m = machine("x86_64")
    with pytest.raises(ProbeError):
        m.load_bpf(objs["bad_sym", "x86_64"])
    assert not m.probes.sites and m.run() == 0


def test_cli_bpf_text_json_and_stats(objs, run_cli):
    elf = str(firmware("x86_64"))
    code, out, _ = run_cli(
        elf,
        "--bpf",
        str(objs["count", "x86_64"]),
        "--bpf",
        str(objs["order", "x86_64"]),
        "-p",
        "p:dw do_work",
        "--stats",
    )
    text = out.decode()
    assert code == 0 and "@by_pid:\n0: 1\n2: 300\n4: 256\n" in text
    assert re.search(r"^  bpf:count +557 +0$", text, re.M) and re.search(r"^  dw +557 +0$", text, re.M)
    assert text.index("checksum:") < text.index("@by_pid:")
    lines = text.splitlines()
    first_dw = next(i for i, x in enumerate(lines) if ": dw: (do_work" in x)
    assert "bpf_trace_printk: seq 0" in lines[first_dw + 1]  # one trace stream, in order
    code, out, _ = run_cli(elf, "--format", "json", "--bpf", str(objs["order", "x86_64"]))
    records = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    printk = [r for r in records if r.get("event") == "bpf_trace_printk"]
    assert printk[0]["msg"] == "seq 0" and printk[0]["comm"] == "swapper"
    rb = next(r for r in records if r.get("event") == "bpf_ringbuf")
    assert rb["map"] == "rb" and rb["value"] == "struct seq {n=0, tag=1}" and rb["data"] == "00" * 8 + "01" + "00" * 7
    assert {"map": ".bss", "type": "array", "value": "{seq=557}"} in records
    assert {"map": ".rodata", "type": "array"} not in [{k: r[k] for k in ("map", "type") if k in r} for r in records]


def test_ebpf_test_verb(run_cli, tmp_path):
    suite = require_suite()
    files = [str(suite / n) for n in ("add.data", "lddw.data", "div64-by-zero-reg.data", "call_local.data")]
    code, out, _ = run_cli("ebpf-test", *files)
    assert code == 0 and out.decode().splitlines() == [f"PASS {Path(f).name}" for f in files]
    (tmp_path / "wrong.data").write_text("-- asm\nmov %r0, 1\nexit\n-- result\n0x2\n")
    code, out, err = run_cli("ebpf-test", files[0], str(tmp_path / "wrong.data"))
    lines = out.decode().splitlines()
    assert code == 1 and lines[0] == "PASS add.data"
    assert lines[1].startswith("FAIL wrong.data: expected 0x2, interp 0x1") and "1 failed" in err
