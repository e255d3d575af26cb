"""The probe-hit fast path: x86 boosted slots (the copy jumps back, no trap ends the step) and
hits handled inside the engine's trap hook, checked against unprobed runs also when slices end
at every few instructions (inside boosted slots, between a hit and its step)."""

from __future__ import annotations

import pytest
from fwpaths import firmware
from kprobesim.arch.x86_64 import decode as dec
from kprobesim.arch.x86_64 import step

from kprobesim import machine as machine_mod
from kprobesim.machine import Machine
from kprobesim.probes.insn import DictRegView, Kind

ORIG = 0x100000
SLOT = 0x4000_0000
VARIANTS = ("tf", "int3")
ARCH_VARIANTS = [("riscv64", None), ("x86_64", "tf"), ("x86_64", "int3"), ("loongarch64", None)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_boost_slot_is_the_copy_and_a_jump_back(variant):
    d = dec.decode(bytes.fromhex("55") + b"\x90" * 8, ORIG, variant)  # push rbp
    code = step.boost_slot(d, SLOT)
    assert code is not None and code[:1] == b"\x55" and code[1] == 0xE9
    assert SLOT + 6 + int.from_bytes(code[2:6], "little", signed=True) == ORIG + 1
    rip = dec.decode(bytes.fromhex("488b0510000000") + b"\x90" * 8, ORIG, variant)  # mov rax, [rip+0x10]
    code = step.boost_slot(rip, SLOT)
    assert code is not None
    assert SLOT + 7 + int.from_bytes(code[3:7], "little", signed=True) == ORIG + 7 + 0x10  # re-based


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "hexcode",
    [
        "e800000000",  # call rel32: pushes the slot's address
        "c3",  # ret
        "7400",  # jcc rel8
        "0f8400000000",  # jcc rel32
        "ffd0",  # call rax
        "ffe0",  # jmp rax
        "9c",  # pushf: its pushed flags need the step's fix-up
        "fa",  # cli: changes IF
        "f3a4",  # rep movsb: interruptible between iterations
        "f4",  # hlt: an interrupt would return into the slot
        "e440",  # in al, 0x40: a device access stops the engine inside the slot
        "ee",  # out dx, al
    ],
)
def test_not_boosted(variant, hexcode):
    d = dec.decode(bytes.fromhex(hexcode) + b"\x90" * 8, ORIG, variant)
    if d.kind is Kind.OOL:
        assert step.boost_slot(d, SLOT) is None, d.text


def test_boost_needs_the_guest_tf_clear():
    assert step.boost_allowed(DictRegView({"rflags": 0x202}))
    assert not step.boost_allowed(DictRegView({"rflags": 0x302}))


@pytest.mark.parametrize("variant", VARIANTS)
def test_boosted_unless_a_post_handler_waits(variant):
    m = Machine.load(firmware("x86_64"), step_variant=variant)
    fib = m.kprobe("fib")
    posted: list[int] = []
    work = m.kprobe("do_work", post=lambda p, r: posted.append(r.pc))
    ref = Machine.load(firmware("x86_64"), step_variant=variant)
    assert m.run() == ref.run() and m.console == ref.console and m.instructions == ref.instructions
    sites = m.probes.sites
    assert sites[fib.addr].boost and sites[fib.addr].decision.kind is Kind.OOL
    assert fib.hits == 2296 and not sites[work.addr].boost and len(posted) == work.hits > 0
    assert posted[0] == sites[work.addr].decision.end  # post-handlers see the resume address


def _run(arch: str, variant: str | None, probe: bool) -> tuple[int, str, int, list[int]]:
    m = Machine.load(firmware(arch), step_variant=variant)
    probes = []
    if probe:
        for name in ("fib", "do_work", "timer_interrupt", "sum_array"):
            sym = m.image.symbol(name)
            reg = m.probes
            for addr in reg.decode.boundaries(reg.original(sym.addr, sym.size), sym.addr):
                if reg.classify(addr).kind is not Kind.REJECT:
                    probes.append(m.kprobe(addr))
        m.kretprobe("fib", handler=lambda i, r: None, maxactive=64)
    status = m.run()
    return status, m.console, m.instructions, [p.hits for p in probes]


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_transparent_with_slices_ending_everywhere(arch, variant, monkeypatch):
    """Slices of a few instructions end at every kind of point of a hit (right after the break,
    inside a boosted copy, before its jump back, inside a step): the guest sees the same run."""
    status, console, insns, _ = _run(arch, variant, probe=False)
    monkeypatch.setattr(machine_mod, "SLICE", 13)
    monkeypatch.setattr(machine_mod, "POLL", 5)
    short = _run(arch, variant, probe=True)
    assert short[:3] == (status, console, insns)
    monkeypatch.undo()
    assert _run(arch, variant, probe=True) == short  # hits too: the slicing changes nothing
