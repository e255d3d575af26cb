"""Kprobes and kretprobes on the bundled kernels: the arch matrix of issue 4."""

from __future__ import annotations

import dataclasses
import functools

import pytest
from fwpaths import firmware
from unicorn import UC_HOOK_CODE

from kprobesim.errors import BudgetExhausted, GuestFault, ProbeError
from kprobesim.machine import Machine
from kprobesim.probes.insn import Kind

ARCHES = ("riscv64", "x86_64", "loongarch64")
TARGETS = (
    "do_work fib sum_array memcpy strlen schedule handle_syscall timer_interrupt "
    "pcrel_load pcrel_addr call_first branch_first jump_first indirect_first"
).split()
EXTRA_TARGETS = {
    "riscv64": ["c_addi16sp_first"],
    "x86_64": ["pushf_first"],
    "loongarch64": ["pcaddu18i_first"],
}


@functools.cache
def reference(arch: str):
    """An unprobed run: transcript, status, instruction count, executions per address."""
    m = Machine.load(firmware(arch))
    counts: dict[int, int] = {}
    last: list[tuple[int, int] | None] = [None]

    def count(uc, addr, size, ud):
        # Unicorn re-runs a store a device stopped: the same (address, time) twice in a row.
        key = (addr, m.now())
        if key != last[0]:
            counts[addr] = counts.get(addr, 0) + 1
        last[0] = key

    for name in TARGETS + EXTRA_TARGETS[arch]:
        sym = m.image.symbol(name)
        m.engine.hook_add(UC_HOOK_CODE, count, None, sym.addr, sym.addr + sym.size - 1)
    status = m.run()
    return m.console, status, m.instructions, counts


def _accepted(m: Machine, name: str) -> list[int]:
    reg = m.probes
    sym = m.image.symbol(name)
    starts = reg.decode.boundaries(reg.original(sym.addr, sym.size), sym.addr)
    return [a for a in starts if reg.classify(a).kind is not Kind.REJECT]


# Every arch with each of its step variants (x86_64: the TF debug trap and a second int3).
ARCH_VARIANTS = [(a, v) for a in ARCHES for v in {"x86_64": ("tf", "int3")}.get(a, (None,))]


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_transparency_every_boundary_of_every_target(arch, variant):
    """Empty probes on all accepted boundaries of a target change nothing; hits = executions."""
    console, status, insns, counts = reference(arch)
    for name in TARGETS + EXTRA_TARGETS[arch]:
        m = Machine.load(firmware(arch), step_variant=variant)
        probes = [m.kprobe(addr) for addr in _accepted(m, name)]
        assert probes, name
        assert m.run() == status, (name, m.console)
        assert m.console == console, name
        assert m.instructions == insns, name
        for p in probes:
            assert p.hits == counts.get(p.addr, 0), (name, hex(p.addr))


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_all_targets_probed_at_once(arch, variant):
    console, status, insns, counts = reference(arch)
    m = Machine.load(firmware(arch), step_variant=variant)
    probes = [m.kprobe(a) for n in TARGETS + EXTRA_TARGETS[arch] for a in _accepted(m, n)]
    assert m.run() == status and m.console == console and m.instructions == insns
    assert all(p.hits == counts.get(p.addr, 0) for p in probes)


@pytest.mark.parametrize("arch", ARCHES)
def test_do_work_arguments_and_fib_returns(arch):
    m = Machine.load(firmware(arch))
    args: list[tuple[int, int]] = []
    m.kprobe("do_work", pre=lambda p, r: args.append((r.arg(1), r.arg(2))))
    rets: list[int] = []
    calls = m.kprobe("fib")
    rp = m.kretprobe("fib", handler=lambda inst, r: rets.append(r.retval), maxactive=64)
    assert m.run() == 0
    assert (1, 2) in args and len(args) == 557
    assert rp.missed == 0 and rp.hits == calls.hits == len(rets)
    assert 144 in rets and set(rets) <= {0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987}


@pytest.mark.parametrize("arch", ARCHES)
def test_maxactive_counts_missed(arch):
    m = Machine.load(firmware(arch))
    rp = m.kretprobe("fib", handler=lambda inst, r: None, maxactive=2)
    calls = m.kprobe("fib")
    assert m.run() == 0
    assert rp.missed > 0 and rp.hits + rp.missed == calls.hits


@pytest.mark.parametrize("arch", ARCHES)
def test_entry_handler_nonzero_skips_return(arch):
    m = Machine.load(firmware(arch))
    seen = []
    rp = m.kretprobe(
        "do_work",
        handler=lambda i, r: seen.append(i.data["a"]),
        entry=lambda i, r: i.data.update(a=r.arg(1)) or r.arg(1) != 1,
    )
    assert m.run() == 0
    assert seen and set(seen) == {1} and rp.hits == len(seen)


@pytest.mark.parametrize("arch", ARCHES)
def test_kretprobe_overrides_return_value(arch):
    """A return handler writing the return value changes the kernel's behaviour (its check fails)."""
    m = Machine.load(firmware(arch), console=None)
    m.kretprobe("pcrel_load", handler=lambda i, r: setattr(r, "retval", 7))
    assert m.run() != 0
    assert "pcrel_load() = 7\n" in m.console


@pytest.mark.parametrize("arch", ARCHES)
def test_pre_handler_moving_pc_skips_the_instruction(arch):
    """pre returning non-zero: the handler emulated a return; the function body never runs."""
    m = Machine.load(firmware(arch))
    spec = m.arch.module("regs")

    def fake_return(p, r):
        r.retval = 42  # what jump_first(37) returns anyway
        if spec.RA_REG:
            r.pc = r[spec.RA_REG]
        else:
            r.pc = int.from_bytes(r.read_mem(r.sp, 8), "little")
            r[spec.SP_REG] = r.sp + 8
        return 1

    p = m.kprobe("jump_first", pre=fake_return)
    body = m.kprobe(_accepted(m, "jump_first")[1])
    assert m.run() == 0
    assert p.hits >= 1 and body.hits == 0


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("target", ["pcrel_load", "pcrel_addr", "call_first", "branch_first", "indirect_first"])
def test_pc_relative_first_instructions_are_right(arch, target, monkeypatch):
    """Probed at their first instruction they give the right values; stepping them out of line
    unchanged (a planted bug: raw copy, resume at addr+len) is caught by the same checks."""
    m = Machine.load(firmware(arch))
    p = m.kprobe(target)
    callee = m.kprobe("indirect_target")  # a witness: its hits must not turn into misses
    assert m.run() == 0 and p.hits >= 1 and callee.missed == 0

    bad = Machine.load(firmware(arch))
    reg = bad.probes
    real = reg.decode.decode
    pc = reg.spec.PC_REG

    def ool(code, addr, **kw):
        return dataclasses.replace(real(code, addr, **kw), kind=Kind.OOL)

    monkeypatch.setattr(reg.decode, "decode", ool)
    monkeypatch.setattr(reg.step, "make_slot", lambda d, slot: d.raw + reg.step.step_break())
    monkeypatch.setattr(reg.step, "after_step", lambda d, regs, slot, saved=None: regs.__setitem__(pc, d.end))
    bad.kprobe(target)
    witness = bad.kprobe("indirect_target")
    try:
        status = bad.run(max_insns=5_000_000)
    except (GuestFault, BudgetExhausted):
        return  # the run derails visibly
    assert status != 0 or bad.console != m.console or (witness.hits, witness.missed) != (callee.hits, 0)


@pytest.mark.parametrize("arch", ARCHES)
def test_aggregation_order_enable_disable_unregister(arch):
    m = Machine.load(firmware(arch))
    order: list[str] = []
    a = m.kprobe("do_work", pre=lambda p, r: order.append("a"), post=lambda p, r: order.append("A"))
    b = m.kprobe("do_work", pre=lambda p, r: order.append("b"))
    c = m.kprobe("fib")
    c.disable()
    d = m.kprobe("strlen")
    d.unregister()
    assert m.run() == 0
    assert order[:3] == ["a", "b", "A"]
    assert a.hits == b.hits == 557 and c.hits == 0 and d.hits == 0
    assert m.probes.original(c.addr, 4) == m.read(c.addr, 4)  # disabled: not armed


@pytest.mark.parametrize("arch", ARCHES)
def test_unregister_inside_step_is_safe(arch):
    """Unregistering from a post-handler (the CPU is in the slot) frees the slot after the step."""
    m = Machine.load(firmware(arch))
    p = m.kprobe("do_work", post=lambda p, r: p.unregister())
    slots = m.probes.slots
    assert m.run() == 0
    assert p.hits == 1 and not slots.in_use


@pytest.mark.parametrize("arch", ARCHES)
def test_placement_errors(arch):
    m = Machine.load(firmware(arch))
    with pytest.raises(ProbeError, match="unknown symbol 'no_such_fn'"):
        m.kprobe("no_such_fn")
    starts = set(_accepted(m, "do_work"))
    sym = m.image.symbol("do_work")
    inside = next(off for off in range(1, sym.size) if sym.addr + off not in starts)
    with pytest.raises(ProbeError, match="not on an instruction boundary of do_work"):
        m.kprobe(f"do_work+{inside:#x}")
    blacklisted = sorted(m.probes.blacklist)[0]
    with pytest.raises(ProbeError, match="blacklisted"):
        m.kprobe(blacklisted)


# sum_array's array load and the register holding its pointer, per arch
ARRAY_LOAD = {"riscv64": ("0(a0)", "a0"), "x86_64": ("[rdi", "rdi"), "loongarch64": ("$a5, -8", "a5")}


@pytest.mark.parametrize("arch", ARCHES)
def test_fault_in_a_step_is_reported_at_the_probe(arch):
    """A stepped load made to fault (its pointer bent by the pre-handler) enters the guest's trap
    handler as a fault of the probed instruction, not of the slot (Linux kprobe_fault_handler)."""
    m = Machine.load(firmware(arch))
    reg = m.probes
    pattern, ptr = ARRAY_LOAD[arch]
    load = next(a for a in _accepted(m, "sum_array") if pattern in reg.classify(a).text)
    assert reg.classify(load).kind is Kind.OOL
    base, size = m.arch.ram
    p = m.kprobe(load, pre=lambda p, r: r.__setitem__(ptr, base + size + 0x1000) or 0)
    status = m.run()
    assert p.hits == 1 and status == 99, m.console
    assert f"pc={load:x}" in m.console and "PANIC: unexpected trap" in m.console
    assert not reg.steps


@pytest.mark.parametrize("arch", ARCHES)
def test_hit_while_stepping_counts_as_missed(arch):
    """Without the fault fix-up the faulting step runs the guest's panic path, which prints:
    the probe on printk is then hit while a step is in progress - missed, no handlers run.
    (The post-handler makes the step end with a trap, as Linux does: no boosted slot on x86.)"""
    m = Machine.load(firmware(arch))
    reg = m.probes
    m.exception_fixups.remove(reg._on_exception)
    pattern, ptr = ARRAY_LOAD[arch]
    load = next(a for a in _accepted(m, "sum_array") if pattern in reg.classify(a).text)
    base, size = m.arch.ram
    m.kprobe(load, pre=lambda p, r: r.__setitem__(ptr, base + size + 0x1000) or 0, post=lambda p, r: None)
    calls: list[int] = []
    printk = m.kprobe("printk", pre=lambda p, r: calls.append(1))
    before = Machine.load(firmware(arch))
    ref = before.kprobe("printk")
    assert m.run() == 99 and "PANIC: unexpected trap" in m.console
    assert printk.missed == 1 and printk.hits == len(calls)
    before.run()
    assert printk.hits < ref.hits  # the run ended early, and the panic's printk was not a hit


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@pytest.mark.parametrize("arch", ARCHES)
def test_kretprobe_instances_follow_their_task_under_preemption(arch):
    """fib runs in several kthreads that the timer preempts mid-recursion: every return must be
    matched to its own call (its argument, its task), never another thread's instance."""
    from kprobesim.task import current_task

    m = Machine.load(firmware(arch))
    bad: list[tuple[int, int, str, str]] = []
    preempted_inside = []

    def entry(inst, regs):
        inst.data.update(n=regs.arg(1), task=current_task(m).comm)

    def ret(inst, regs):
        n, who = inst.data["n"], current_task(m).comm
        if regs.retval != _fib(n) or who != inst.data["task"]:
            bad.append((n, regs.retval, inst.data["task"], who))

    rp = m.kretprobe("fib", handler=ret, entry=entry, maxactive=128)
    m.kprobe("schedule", pre=lambda p, r: preempted_inside.append(rp.active))
    assert m.run() == 0
    assert rp.hits > 1000 and rp.missed == 0 and not bad
    assert max(preempted_inside) > 0  # some switches happened with fib activations live


@pytest.mark.parametrize("arch", ARCHES)
def test_snapshot_restore_replays_with_other_probes(arch):
    m = Machine.load(firmware(arch))
    snap = m.snapshot()
    assert m.run() == 0
    first = (m.console, m.instructions)
    for target in ("do_work", "fib", "schedule"):
        m.restore(snap)
        p = m.kprobe(target)
        assert m.run() == 0 and (m.console, m.instructions) == first and p.hits > 0
    m.restore(snap)
    assert m.run() == 0 and (m.console, m.instructions) == first
    fresh = Machine.load(firmware(arch))
    q = fresh.kprobe("fib")
    fresh.run()
    m.restore(snap)
    p = m.kprobe("fib")
    m.run()
    assert p.hits == q.hits


@pytest.mark.parametrize("arch", ARCHES)
def test_slot_pages_are_not_guest_writable(arch):
    """A guest store into a kprobe page faults into the guest; the slot keeps its code."""
    m = Machine.load(firmware(arch))
    reg = m.probes
    pattern, ptr = ARRAY_LOAD[arch]
    store_ok = m.kprobe("do_work")  # gives the machine a live slot
    slot = reg.sites[store_ok.addr].slot
    before = m.read(slot, reg.slots.size)
    memcpy_dst = m.arch.module("regs").ARG_REGS[0]
    # the first memcpy runs at boot, before the kernel has a trap vector: bend a later one
    m.kprobe("memcpy", pre=lambda p, r: p.hits == 3 and r.__setitem__(memcpy_dst, slot) or 0)
    status = m.run()
    assert status == 99 and "PANIC: unexpected trap" in m.console
    assert m.read(slot, reg.slots.size) == before


@pytest.mark.parametrize("arch", ARCHES)
def test_two_kretprobes_on_one_function_both_see_the_real_caller(arch):
    m = Machine.load(firmware(arch))
    callers: list[tuple[str, int]] = []
    a = m.kretprobe("do_work", handler=lambda i, r: callers.append(("a", i.ret_addr)))
    b = m.kretprobe("do_work", handler=lambda i, r: callers.append(("b", i.ret_addr)))
    assert m.run() == 0
    assert a.hits == b.hits == 557 and not a.missed and not b.missed
    tramp = m.probes.trampoline
    assert all(addr != tramp and m.image.lookup(addr) for _, addr in callers)
    assert [who for who, _ in callers[:2]] == ["b", "a"]  # the most recent instance first


@pytest.mark.parametrize("arch", ARCHES)
def test_first_nonzero_pre_handler_ends_the_chain(arch):
    m = Machine.load(firmware(arch))
    spec = m.arch.module("regs")
    ran: list[str] = []

    def fake_return(p, r):
        ran.append("first")
        r.retval = 42
        if spec.RA_REG:
            r.pc = r[spec.RA_REG]
        else:
            r.pc = int.from_bytes(r.read_mem(r.sp, 8), "little")
            r[spec.SP_REG] = r.sp + 8
        return 1

    first = m.kprobe("jump_first", pre=fake_return)
    second = m.kprobe("jump_first", pre=lambda p, r: ran.append("second"))
    assert m.run() == 0
    assert "second" not in ran and first.hits >= 1 and second.hits == 0
