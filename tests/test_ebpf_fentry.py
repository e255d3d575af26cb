"""fentry/fexit programs (``tests/ebpf/tracing/fentry.c``, built by Debian's clang) on the three
bundled kernels, against Python kprobes and kretprobes on the same functions, and against the
functions themselves (do_work's and fib's results computed in Python). Struct fields read
through BTF-typed pointers (wake_up's ``struct task *`` argument, bpf_get_current_task_btf())
against the guest memory Python reads. Loads through BTF-typed pointers that fault read 0
(Linux's BPF_PROBE_MEM), in both engines.

Cost: one firmware run per arch (~3-10 s of CPU on loongarch64's P-code engine).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from fwpaths import ALL_ARCHES, ROOT, firmware

from kprobesim.ebpf.loader import BpfError
from kprobesim.ebpf.memory import Memory
from kprobesim.ebpf.vm import VM
from kprobesim.machine import Machine
from kprobesim.task import current_task

SRC = ROOT / "tests" / "ebpf" / "tracing" / "fentry.c"
INCLUDE = ROOT / "kprobesim" / "ebpf" / "include"
TARGET = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}
EVENT = struct.Struct("<4Q2I16s")
M64 = (1 << 64) - 1


def build(arch: str, out: Path, source: str | None = None) -> Path:
    src = SRC
    if source is not None:
        src = out.with_suffix(".c")
        src.write_text(source)
    cmd = ["clang", "-target", "bpf", "-O2", "-g", "-c", f"-D__TARGET_ARCH_{TARGET[arch]}", f"-I{INCLUDE}",
           "-I/usr/include", "-Wall", str(src), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


def do_work(a: int, b: int) -> int:
    """firmware/kernel/work.c's do_work, on 64-bit two's complement."""
    r = a
    for i in range(8):
        r = (r * 3 + (b ^ i)) & M64
    return r


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_fentry_fexit_agree_with_kprobes(arch: str, tmp_path: Path) -> None:
    m = Machine.load(firmware(arch))
    enter, leave, wakes, fibs, tasks = [], [], [], [], []

    def on_work(p, regs):
        enter.append((regs.arg(1), regs.arg(2)))
        tasks.append(current_task(m).pid)
        return 0

    def save(inst, regs):
        inst.data["args"] = (regs.arg(1), regs.arg(2))
        return 0

    def on_wake(p, regs):
        t = regs.arg(1)
        pid, = struct.unpack("<I", m.read(t, 4))
        wakes.append((t, pid, m.read(t + 8, 16)))
        return 0

    m.kprobe("do_work", pre=on_work)
    m.kretprobe("do_work", handler=lambda inst, regs: leave.append((*inst.data["args"], regs.retval)), entry=save)
    m.kprobe("wake_up", pre=on_wake)
    m.kretprobe("fib", handler=lambda inst, regs: fibs.append((inst.data["args"][0], regs.retval)), entry=save,
                maxactive=64)
    obj = m.load_bpf(build(arch, tmp_path / "fentry.o"))
    assert m.run() == 0
    assert not [p.last_error for p in obj.programs.values() if p.errors]
    events = [EVENT.unpack_from(r.data) for r in obj.records]
    by_kind = {k: [e for e in events if e[0] == k] for k in (1, 2, 3, 4)}
    assert [(e[1], e[2]) for e in by_kind[1]] == enter and len(enter) > 20
    assert [e[5] for e in by_kind[1]] == tasks  # bpf_get_current_task_btf()->pid
    assert {0, 2, 4} <= set(tasks)  # boot tests (swapper), kworker/0 and kworker/2 call it
    assert [(e[1], e[2], e[3]) for e in by_kind[2]] == leave
    assert all(ret == do_work(a, b) for a, b, ret in leave)
    assert [(e[1], e[4], e[6]) for e in by_kind[3]] == wakes and wakes  # t, t->pid, t->comm
    assert {c.split(b"\0")[0] for _, _, c in wakes} == {b"init"}  # kmain wakes the user task (tasks[1]) once
    assert [(e[1], e[3]) for e in by_kind[4]] == fibs and len(fibs) > 1000
    assert all(ret == fib(n) for n, ret in fibs)
    assert obj.runtime.memory.probe_faults == 0
    assert obj.programs["work_exit"].kind == "fexit" and obj.programs["work_exit"].tracing.slots == 3


def test_fentry_refusals(tmp_path: Path) -> None:
    """Loads Linux refuses, refused at load with the verifier's words; fmod_ret not loaded."""
    head = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n' \
           'char LICENSE[] SEC("license") = "GPL";\n'
    cases = {
        "beyond_args": ('SEC("fentry/do_work") int p(u64 *ctx) { return ctx[2]; }',
                        "invalid bpf_context access off=16 size=8 (func 'do_work' doesn't have 3-th argument)"),
        "retval_in_fentry": ('SEC("fentry/fib") int p(u64 *ctx) { return ctx[1]; }',
                             "doesn't have 2-th argument"),
        "narrow_ptr": ('SEC("fentry/wake_up") int p(u32 *ctx) { return ctx[0]; }',
                       "func 'wake_up' size 4 must be 8"),
        "write_field": ('SEC("fentry/wake_up") int BPF_PROG(p, struct task *t) { t->pid = 1; return 0; }',
                        "only read is supported"),
        "no_btf_func": ('SEC("fentry/no_such_function") int p(u64 *ctx) { return 0; }',
                        "failed to find kernel BTF type ID of 'no_such_function'"),
        "fexit_returns_1": ('SEC("fexit/fib") int BPF_PROG(p, long n, long r) { return 1; }',
                            "At program exit the register R0 has smin=1 smax=1 should have been in [0, 0]"),
        "override": ('SEC("fentry/do_work") int p(struct pt_regs *ctx) { return bpf_override_return(ctx, 1); }',
                     "cannot use helper bpf_override_return#58"),
    }
    for name, (src, msg) in cases.items():
        m = Machine.load(firmware("riscv64"))
        with pytest.raises(BpfError, match=None) as e:
            m.load_bpf(build("riscv64", tmp_path / f"{name}.o", head + src))
        assert msg in str(e.value), (name, str(e.value))
    m = Machine.load(firmware("riscv64"))
    obj = m.load_bpf(build("riscv64", tmp_path / "mix.o", head + 'SEC("fmod_ret/do_work") int a(u64 *ctx) '
                           '{ return 0; }\nSEC("fexit/do_work") int BPF_PROG(b, long x, long y, long r) '
                           '{ return 0; }'))
    assert list(obj.programs) == ["b"] and "fmod_ret programs replace" in obj.skipped[0]
    with pytest.raises(BpfError, match="verified against its function's prototype at load"):
        obj.attach("b", "fib")


@pytest.mark.parametrize("engine", ["interp", "translate"])
def test_btf_pointer_loads_read_guest_memory_and_zero_on_faults(engine: str) -> None:
    """The engines' BPF_PROBE_MEM loads: guest memory through Memory.guest_read, 0 and a count
    when it faults (the instruction at pc 1 is the probe load; pc 2 an ordinary one)."""
    guest = {0x8000_1000: b"\x11\x22\x33\x44\x55\x66\x77\x88"}
    mem = Memory()
    mem.guest_read = lambda addr, n: guest.get(addr, b"")[:n] or None
    vm = VM("mov %r0, %r1\nldxdw %r0, [%r0+0]\nexit", memory=mem, engine=engine)
    vm.use(engine, frozenset({1}))
    assert vm.run(0x8000_1000) == 0x8877665544332211
    assert mem.probe_faults == 0
    assert vm.run(0xDEAD_0000) == 0 and mem.probe_faults == 1 and mem.last_probe_fault == (1, 0xDEAD_0000, 8)
    vm.use(engine, frozenset())  # an ordinary load faults
    with pytest.raises(Exception, match="read"):
        vm.run(0x8000_1000)


def test_fentry_target_given_at_load(tmp_path: Path) -> None:
    """A bare SEC("fentry") takes its function from --attach before load (libbpf's
    bpf_program__set_attach_target); without one it is refused, naming the way to give it."""
    src = ('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n'
           'char LICENSE[] SEC("license") = "GPL";\nu64 seen;\n'
           'SEC("fentry") int BPF_PROG(p, long n) { seen += n; return 0; }\n')
    obj_path = build("x86_64", tmp_path / "bare.o", src)
    with pytest.raises(BpfError, match=r"attaches to a function's entry: SEC\(\"fentry/FUNC\"\) or --attach p=FUNC"):
        Machine.load(firmware("x86_64")).load_bpf(obj_path)
    m = Machine.load(firmware("x86_64"))
    calls = []
    m.kprobe("fib", pre=lambda p, regs: calls.append(regs.arg(1)) or 0)
    obj = m.load_bpf(obj_path, attach={"p": "fib"})
    assert m.run() == 0
    assert obj.programs["p"].runs == len(calls) > 1000
    assert struct.unpack("<Q", obj.maps[".bss"].lookup(bytes(4)))[0] == sum(calls)


def test_func_arg_helpers(tmp_path: Path) -> None:
    """bpf_get_func_arg/_ret/_arg_cnt read the trampoline context: the same values as BPF_PROG's,
    -EINVAL past the arguments, -EOPNOTSUPP for the return value in fentry (Linux's inlined
    helpers); kprobe programs may not call them."""
    head = ('#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_tracing.h>\n'
            'char LICENSE[] SEC("license") = "GPL";\n')
    src = head + r"""
u64 bad, runs, cnt;
s64 einval, eopnotsupp;
SEC("fexit/do_work") int BPF_PROG(x, long a, long b, long ret)
{
	u64 v = 0, r = 0;

	cnt = bpf_get_func_arg_cnt(ctx);
	if (bpf_get_func_arg(ctx, 1, &v) || v != b)
		bad++;
	if (bpf_get_func_ret(ctx, &r) || r != ret)
		bad++;
	einval = bpf_get_func_arg(ctx, 2, &v);
	runs++;
	return 0;
}
SEC("fentry/do_work") int BPF_PROG(y, long a)
{
	u64 r;

	eopnotsupp = bpf_get_func_ret(ctx, &r);
	return 0;
}
"""
    m = Machine.load(firmware("x86_64"))
    obj = m.load_bpf(build("x86_64", tmp_path / "args.o", src))
    assert m.run() == 0
    text = obj.format_maps()
    assert f"runs={obj.programs['x'].runs}" in text and obj.programs["x"].runs > 20
    for want in ("bad=0", "cnt=2", "einval=-22", "eopnotsupp=-95"):
        assert want in text, text
    with pytest.raises(BpfError, match=r"cannot use helper bpf_get_func_arg_cnt#185"):
        Machine.load(firmware("x86_64")).load_bpf(build("x86_64", tmp_path / "kp.o", head + (
            'SEC("kprobe/do_work") int z(void *ctx) { return bpf_get_func_arg_cnt(ctx); }')))
