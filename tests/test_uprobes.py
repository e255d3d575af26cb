"""Uprobes and uretprobes on the bundled kernels' user program ``init`` (issue 14)."""

from __future__ import annotations

import functools
import json
import struct
import subprocess
import sys

import pytest
from fwpaths import ALL_ARCHES, ROOT, firmware
from unicorn import UC_HOOK_CODE

from kprobesim.errors import ProbeError
from kprobesim.machine import Machine
from kprobesim.probes import uprobes as uprobes_mod
from kprobesim.probes.insn import Kind
from kprobesim.probes.userprog import user_program

# Every arch with each of its step variants (x86_64: the TF debug trap and a second int3).
ARCH_VARIANTS = [(a, v) for a in ALL_ARCHES for v in {"x86_64": ("tf", "int3")}.get(a, (None,))]
PCREL = {"riscv64": ("auipc",), "loongarch64": ("pcaddu12i", "pcalau12i", "pcaddi"), "x86_64": ("rip",)}
BRANCHES = {
    "riscv64": ("beq", "bne", "blt", "bge", "beqz", "bnez", "c.beqz", "c.bnez", "blez", "bgez", "bltz", "bgtz"),
    "loongarch64": ("beq", "bne", "blt", "bge", "bltu", "bgeu", "beqz", "bnez"),
    "x86_64": ("je", "jne", "jl", "jle", "jg", "jge", "jb", "jbe", "ja", "jae", "js", "jns"),
}


@functools.cache
def reference(arch: str) -> tuple[str, int, int, dict[int, int]]:
    """The unprobed run: transcript, status, instructions, executions of every user address."""
    m = Machine.load(firmware(arch))
    prog = user_program(m.image)
    assert prog is not None
    counts: dict[int, int] = {}
    last: list[tuple[int, int] | None] = [None]

    def count(uc, addr, size, ud):
        key = (addr, m.now())
        if key != last[0]:
            counts[addr] = counts.get(addr, 0) + 1
        last[0] = key

    m.engine.hook_add(UC_HOOK_CODE, count, None, prog.lo, prog.hi - 1)
    status = m.run()
    return m.console, status, m.instructions, counts


def accepted(m: Machine) -> list[tuple[int, str]]:
    """(address, instruction text) of every probeable instruction of the user program."""
    up = m.uprobes
    prog = user_program(m.image)
    out = []
    for sym in prog.functions:
        for addr in up.decode.boundaries(up.original(sym.addr, sym.size), sym.addr):
            d = up.decode.decode(up.original(addr, 16), addr, **up._decode_kw)
            if d.kind is not Kind.REJECT:
                out.append((addr, d.text))
    return out


def _mnemonic(text: str) -> str:
    return text.split()[0] if text else ""


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_every_user_instruction_probed_is_transparent(arch, variant):
    """Uprobes on every accepted instruction of every user function (entries, middles, the
    PC-relative and branch instructions among them) change nothing and count each execution."""
    console, status, insns, counts = reference(arch)
    m = Machine.load(firmware(arch), step_variant=variant)
    places = accepted(m)
    prog = user_program(m.image)
    texts = [t for _, t in places]
    assert any(_mnemonic(t) in PCREL[arch] or "rip" in t for t in texts), texts
    assert any(_mnemonic(t) in BRANCHES[arch] for t in texts), texts
    assert {a for a, _ in places} >= {s.addr for s in prog.functions}
    probes = [m.uprobe(f"init:{addr - prog.lo:#x}") for addr, _ in places]
    assert m.run() == status == 0
    assert m.console == console
    assert m.instructions == insns
    for p in probes:
        assert p.hits == counts.get(p.addr, 0), p.symbol
    executed = [p for p in probes if p.hits]
    assert len(executed) > 0.8 * len(probes)
    assert not m.uprobes.steps and all(
        area.in_use == {min(area.in_use)} for area in m.uprobes._xol.values()
    )  # only the trampoline slot stays


def _priv(arch: str, regs) -> int:
    """The current privilege level, 0 for the most privileged."""
    if arch == "riscv64":  # straight from the engine: Regs lifts the privilege for CSR reads
        from unicorn.riscv_const import UC_RISCV_REG_PRIV

        return 3 - regs._engine.reg_read(UC_RISCV_REG_PRIV)
    if arch == "x86_64":
        return regs["cs"] & 3
    return regs["crmd"] & 3


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_step_runs_in_user_mode_in_the_xol_area(arch, variant):
    """The copied instruction executes at user privilege in the XOL page, which is neither a
    kprobe slot page nor RAM; kprobes in the kernel meanwhile are not counted missed."""
    _, _, _, counts = reference(arch)
    m = Machine.load(firmware(arch), step_variant=variant)
    kp = m.kprobe("handle_syscall")
    up = m.uprobe("init:u_strlen")  # its first instruction steps out of line on every arch
    assert m.uprobes.sites[up.addr].decision.kind is Kind.OOL
    area = m.uprobes.xol(1)
    page = min(area.in_use) & ~0xFFF
    seen: list[tuple[int, int]] = []
    from kprobesim.probes.regs import Regs

    regs = Regs(m)
    m.engine.hook_add(UC_HOOK_CODE, lambda uc, a, s, d: seen.append((a, _priv(arch, regs))), None, page, page + 0xFFF)
    assert m.run() == 0
    ram, size = m.arch.ram
    assert seen and all(p == 3 for _, p in seen) and not ram <= page < ram + size
    assert all(a not in m.probes.slots.in_use for a, _ in seen)
    assert up.hits == counts[up.addr] == 1 and kp.hits == 11 and kp.missed == 0


def _fire_timer_now(m: Machine, regs) -> None:
    """Make the board's timer due at once (the next slice starts with its interrupt)."""
    if m.arch.name == "loongarch64":
        regs["tval"] = 0  # the CPU's constant timer counts down to its interrupt
        return
    (timer,) = m._timers
    if hasattr(timer, "mtimecmp"):
        timer.mtimecmp = m.now()  # riscv CLINT
    else:
        timer.next_fire = m.now()  # x86 PIT
    m.timer_changed()  # as a device does: the handler runs inside the slice, which ends here


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_task_preempted_inside_its_xol_slot(arch, variant):
    """A timer interrupt taken while the user task stands in its XOL slot (interrupts are not
    masked for uprobes; riscv U-mode takes M-mode interrupts whatever MIE says): the kernel runs
    its handler, a kernel kprobe in it is not counted missed, the task finishes its step."""
    console, status, _, counts = reference(arch)
    m = Machine.load(firmware(arch), step_variant=variant)
    up = m.uprobe("init:u_strlen", lambda p, regs: _fire_timer_now(m, regs))
    assert m.uprobes.sites[up.addr].decision.kind is Kind.OOL
    prog = user_program(m.image)
    strlen = prog.function("u_strlen")
    others = [m.uprobe(f"init:{a - prog.lo:#x}") for a, _ in accepted(m) if strlen.addr < a < strlen.addr + strlen.size]
    preempted: list[int] = []

    def in_slot(pc: int) -> None:
        if any(0 <= pc - st.slot < st.xol.size for st in m.uprobes.steps.values()):
            preempted.append(pc)

    if arch == "loongarch64":  # the engine takes the CPU timer's interrupt itself: ERA holds the PC
        kp = m.kprobe("timer_interrupt", lambda p, regs: in_slot(regs["era"]))
    else:
        kp = m.kprobe("timer_interrupt")
        deliver = m.traps.interrupt

        def interrupt(irq):
            pc = m.pc
            taken = deliver(irq)
            if taken is True:
                in_slot(pc)
            return taken

        m.traps.interrupt = interrupt
    assert m.run() == status == 0 and m.console == console
    assert len(preempted) == 1 and kp.missed == 0 and kp.hits > 0
    assert up.hits == 1 and others and all(p.hits == counts.get(p.addr, 0) for p in others)
    assert not m.uprobes.steps


ENTRY_HITS = {"u_write": 6, "u_strlen": 1, "u_puts": 1, "u_report": 5, "u_append_num": 5, "u_append_str": 15,
              "u_rsum": 41, "user_main": 1}


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_uretprobes_same_returns_on_every_arch(arch):
    """u_rsum recurses 41 calls deep (beyond a kretprobe's default maxactive of 10): every
    return is seen, innermost first; u_strlen/u_write return the same values everywhere."""
    m = Machine.load(firmware(arch))
    rsum: list[int] = []
    writes: list[int] = []
    callers = set()
    rp = m.uretprobe("init:u_rsum", lambda inst, regs: (rsum.append(regs.retval), callers.add(inst.ret_addr)))
    wp = m.uretprobe("init:u_write", lambda inst, regs: writes.append(regs.retval))
    lp = m.uretprobe("init:u_strlen", lambda inst, regs: writes.append(-regs.retval))
    calls = m.uprobe("init:u_rsum")
    entries = {f: m.uprobe(f"init:{f}") for f in ENTRY_HITS if f != "u_rsum"}
    console, status, insns, _ = reference(arch)
    assert m.run() == status and m.console == console and m.instructions == insns
    assert rsum == [k * (k + 1) // 2 for k in range(41)]
    assert rp.hits == calls.hits == 41 and rp.missed == 0 and rp.active == 0
    prog = user_program(m.image)
    assert all(prog.contains(c) for c in callers) and len(callers) == 2  # u_rsum itself and user_main
    lines = [len(line) + 1 for line in console.splitlines() if line.startswith("init: ")]
    assert {f: p.hits for f, p in entries.items()} | {"u_rsum": calls.hits} == ENTRY_HITS  # firmware/README.md
    assert len(lines) == 6 and writes == [-lines[0], *lines] and wp.hits == 6 and lp.hits == 1


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_uretprobe_depth_limit_counts_missed(arch, monkeypatch):
    monkeypatch.setattr(uprobes_mod, "MAX_URETPROBE_DEPTH", 20)
    m = Machine.load(firmware(arch))
    rets: list[int] = []
    rp = m.uretprobe("init:u_rsum", lambda inst, regs: rets.append(regs.retval))
    assert m.run() == 0 and m.console == reference(arch)[0]
    assert rp.hits == 20 and rp.missed == 21 and rp.active == 0
    # the 20 outermost activations were hijacked: their returns come last, innermost first
    assert rets == [k * (k + 1) // 2 for k in range(21, 41)]


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_trace_reports_pid_comm_and_linux_format(arch, run_cli):
    status, out, err = run_cli(
        str(firmware(arch)),
        "-p", "p:len init:u_strlen s=+0($arg1):ustring",
        "-p", "r:ret init:u_write n=$retval:s64",
        "-p", "p init:0x0",
        "--format", "json", "--stats",
    )  # fmt: skip
    assert status == 0, err
    records = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    events = [e for e in records if e["type"] != "stats"]
    lens = [e for e in events if e.get("event") == "len"]
    rets = [e for e in events if e.get("event") == "ret"]
    firsts = [e for e in events if e.get("event") == "p_init_0x0"]
    assert len(lens) == 1 and lens[0]["args"]["s"] == "init: hello from user mode\n"
    console = reference(arch)[0]
    assert [e["args"]["n"] for e in rets] == [len(x) + 1 for x in console.splitlines() if x.startswith("init: ")]
    assert len(firsts) == 6  # u_write is the first function of the program
    for e in lens + rets + firsts:
        assert (e["pid"], e["comm"]) == (1, "init")
    assert {e["type"] for e in rets} == {"uretprobe"} and {e["type"] for e in lens} == {"uprobe"}
    m = Machine.load(firmware(arch))
    prog = user_program(m.image)
    write = next(s for s in prog.functions if s.name == "u_write")
    assert firsts[0]["location"] == f"{write.addr:#x}"
    caller, func = rets[0]["location"].split(" <- ")
    assert int(func, 16) == write.addr and prog.contains(int(caller, 16))
    stats = {e["event"]: e["hits"] for e in records if e["type"] == "stats"}
    assert stats == {"len": 1, "ret": 6, "p_init_0x0": 6}


BAD_SPECS = [
    ("p /bin/sh:0x10", 66, "no such file '/bin/sh'"),
    ("p init:0x3", 66, "not on an instruction boundary of u_write (EILSEQ)"),
    ("p init:u_rsum+0x1", 66, "not on an instruction boundary of u_rsum (EILSEQ)"),
    ("p init:do_work", 66, "do_work is kernel text, not in init"),
    ("p init:0x4000", 66, "offset 0x4000 is outside init"),
    ("p init:nosuch", 66, "init has no function 'nosuch'"),
    ("r init:u_rsum+4", 67, "return probes go on a function entry"),
    ("r4 init:u_rsum", 67, "uretprobes take no MAXACTIVE"),
    ("p init:", 67, "bad uprobe location 'init:'"),
]


@pytest.mark.parametrize(("spec", "status", "text"), BAD_SPECS)
def test_bad_specs_one_line(spec, status, text, run_cli):
    code, out, err = run_cli(str(firmware("x86_64")), "-p", spec)
    assert code == status and out == b""
    assert err.count("\n") == 1 and text in err, err


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_kernel_address_and_rejected_instruction(arch, run_cli):
    m = Machine.load(firmware(arch))
    kmain = m.image.symbol("kmain").addr
    code, _, err = run_cli(str(firmware(arch)), "-p", f"p init:{kmain:#x}")
    assert code == 66 and "kmain" in err and "is a kernel address" in err and err.count("\n") == 1
    with pytest.raises(ProbeError, match="is user text, not kernel text: use a uprobe"):
        m.kprobe("u_rsum")
    prog = user_program(m.image)
    up = m.uprobes
    write = prog.function("u_write")
    rejected = [
        a for a in up.decode.boundaries(up.original(write.addr, write.size), write.addr)
        if up.decode.decode(up.original(a, 16), a, **up._decode_kw).kind is Kind.REJECT
    ]  # fmt: skip
    assert rejected  # the system call instruction
    with pytest.raises(ProbeError, match=r"cannot probe '.*': .*\(EINVAL\)"):
        m.uprobe(f"init:{rejected[0] - prog.lo:#x}")


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_handler_moving_pc_skips_the_instruction_and_unregister(arch):
    """A handler that sets the PC skips the step (Linux); disable/unregister restore the bytes."""
    m = Machine.load(firmware(arch))
    prog = user_program(m.image)
    rsum = prog.function("u_rsum")
    orig = m.read(rsum.addr, 4)
    seen = []

    def shortcut(p, regs):  # return 820 from u_rsum(40) at once, as if it had run
        seen.append(regs.arg(1))
        if regs.arg(1) == 40:
            regs.retval = 820
            spec = m.arch.module("regs")
            if spec.RA_REG:
                regs.pc = regs[spec.RA_REG]
            else:
                regs.pc = int.from_bytes(regs.read_mem(regs.sp, 8), "little")
                regs["rsp"] = regs.sp + 8

    up = m.uprobe("init:u_rsum", shortcut)
    assert m.read(rsum.addr, 4) != orig
    up.disable()
    assert m.read(rsum.addr, 4) == orig
    up.enable()
    assert m.run() == 0 and m.console == reference(arch)[0]
    assert seen == [40] and up.hits == 1
    up.unregister()
    assert m.read(rsum.addr, 4) == orig and not m.uprobes.sites


BPF_SOURCE = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct rec { s64 kind, value, pid_tgid; char s[32]; };
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 64 * 1024); } events SEC(".maps");

static void emit(s64 kind, s64 value, const char *user)
{
	struct rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r)
		return;
	r->kind = kind;
	r->value = value;
	r->pid_tgid = bpf_get_current_pid_tgid();
	__builtin_memset(r->s, 0, sizeof(r->s));
	if (user)
		bpf_probe_read_user_str(r->s, sizeof(r->s), user);
	bpf_ringbuf_submit(r, 0);
}

SEC("uprobe/init:u_strlen")
int BPF_KPROBE(on_strlen, const char *s) { emit(1, 0, s); return 0; }

SEC("uretprobe/init:u_rsum")
int BPF_KRETPROBE(on_rsum, long rc) { emit(2, rc, 0); return 0; }

SEC("uprobe/init:u_rsum")
int BPF_KPROBE(on_rsum_entry, long n) { emit(3, n, 0); return 0; }

char LICENSE[] SEC("license") = "GPL";
"""
BPF_TARGET = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}


def _compile_bpf(source: str, arch: str, tmp_path) -> object:
    src, obj = tmp_path / "up.c", tmp_path / "up.o"
    src.write_text(source)
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", "-O2", "-g", "-c",
           f"-I{ROOT / 'kprobesim' / 'ebpf' / 'include'}", "-I/usr/include", f"-D__TARGET_ARCH_{BPF_TARGET[arch]}",
           str(src), "-o", str(obj)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return obj


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_ebpf_uprobe_and_uretprobe_sections(arch, tmp_path):
    """A libbpf-style object (clang, Debian's libbpf headers) with uprobe/uretprobe sections:
    bpf_probe_read_user_str reads the user string, PT_REGS_RC the returns, the ids the task."""
    obj = _compile_bpf(BPF_SOURCE, arch, tmp_path)
    m = Machine.load(firmware(arch))
    loaded = m.load_bpf(obj)
    assert m.run() == 0 and m.console == reference(arch)[0]
    recs = [struct.unpack("<3q32s", r.data) for r in loaded.records]
    strings = [s.split(b"\0")[0].decode() for k, _, _, s in recs if k == 1]
    assert strings == ["init: hello from user mode\n"]
    assert [v for k, v, _, _ in recs if k == 2] == [k * (k + 1) // 2 for k in range(41)]
    assert [v for k, v, _, _ in recs if k == 3] == list(range(40, -1, -1))
    assert {p for _, _, p, _ in recs} == {1 << 32 | 1}
    assert loaded.programs["on_rsum"].hits == 41


def test_compare_agrees_on_uprobes_across_arches():
    """``compare`` runs uprobe specs on every arch: hits and fetched values agree."""
    from kprobesim.compare import compare

    result = compare(
        ["p:len init:u_strlen s=+0($arg1):ustring", "r:rs init:u_rsum ret=$retval:s64", "p:w init:u_write n=$arg2:u64"],
        None, {}, 5_000_000, 120.0, [],
    )  # fmt: skip
    assert result.agree
    rows = json.dumps(result.as_dict())
    assert '"rs"' in rows and '"len"' in rows


STORES = ("sd", "c.sd", "c.sdsp", "st.d", "push")


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_fault_inside_the_slot_is_reported_at_the_probed_instruction(arch, variant):
    """The stepped store faults (its handler pointed sp at unmapped memory): the kernel gets the
    fault at the probed user address, not in the XOL slot (Linux aborts the XOL step), and the
    slot is given back."""
    m = Machine.load(firmware(arch), step_variant=variant)
    prog = user_program(m.image)
    write = prog.function("u_write")
    store = next(a for a, t in accepted(m) if write.addr <= a < write.addr + write.size and _mnemonic(t) in STORES)
    spec = m.arch.module("regs")

    def break_stack(p, regs):
        regs[spec.SP_REG] = 0x7FF000000000  # unmapped on every board

    up = m.uprobe(f"init:{store - prog.lo:#x}", break_stack)
    assert m.uprobes.sites[store].decision.kind is Kind.OOL
    status = m.run()
    assert status != 0 and up.hits == 1
    assert "PANIC: unexpected trap cause=" in m.console and f"pc={store:x} task=init" in m.console, m.console[-200:]
    assert not m.uprobes.steps and all(area.in_use == {min(area.in_use)} for area in m.uprobes._xol.values())


def test_ebpf_bare_uprobe_section_attached_at_run_time(tmp_path, run_cli):
    """A bare ``SEC("uprobe")`` program loads unattached, as libbpf leaves it; ``--attach``
    gives it a user function (bpf_program__attach_uprobe's part)."""
    source = BPF_SOURCE.split("struct rec")[0] + (
        'u64 calls;\nSEC("uprobe")\nint BPF_KPROBE(count_it) { __sync_fetch_and_add(&calls, 1); return 0; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    obj = _compile_bpf(source, "x86_64", tmp_path)
    code, out, err = run_cli(str(firmware("x86_64")), "--bpf", str(obj), "--attach", "count_it=init:u_rsum")
    assert code == 0, err
    assert b"@.bss: {calls=41}" in out


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_uretprobes_chained_through_a_tail_call(arch):
    """u_puts tail-calls u_write: u_write's uretprobe finds the trampoline as its return address
    (u_puts's was hijacked first); both returns are reported once, to the real caller."""
    m = Machine.load(firmware(arch))
    puts: list[tuple[int, int]] = []
    write: list[tuple[int, int]] = []
    p = m.uretprobe("init:u_puts", lambda inst, regs: puts.append((regs.retval, inst.ret_addr)))
    w = m.uretprobe("init:u_write", lambda inst, regs: write.append((regs.retval, inst.ret_addr)))
    assert m.run() == 0 and m.console == reference(arch)[0]
    prog = user_program(m.image)
    callers = [prog.containing(ret).name for _, ret in write]
    assert p.hits == 1 and w.hits == 6 and puts == write[:1]
    assert callers == ["user_main"] + ["u_report"] * 5  # u_puts left no frame of its own
