"""Kprobes on instructions that access devices (issue 17): stepped out of line, an MMIO or port
access happens exactly once, with its side effects, at the same virtual time as unprobed."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import pytest
from fwpaths import firmware
from unicorn import UC_HOOK_CODE

from kprobesim import board
from kprobesim.machine import Machine
from kprobesim.probes.insn import Kind

ARCH_VARIANTS = [("riscv64", None), ("x86_64", "tf"), ("x86_64", "int3"), ("loongarch64", None)]
# The firmware functions that touch the board: UART output, the exit device, the interrupt
# controller, and timer programming (CLINT mtimecmp, the PIT, LoongArch's timer CSRs).
DEVICE_FUNCS = "arch_putc arch_exit arch_init arch_timer_init arch_timer_rearm".split()
# Every device entry point of the bundled boards (MMIO callbacks and port handlers).
_ENTRIES = [
    (board.Uart16550, "_read"), (board.Uart16550, "_write"), (board.Clint, "_read"),
    (board.Clint, "_write"), (board.TestExit, "_write"), (board.PortExit, "_write"), (board.Pit, "_write"),
]  # fmt: skip


@contextlib.contextmanager
def device_log() -> Iterator[list[tuple]]:
    """Record every device access: (device, entry, offset, value, virtual time, pc)."""
    log: list[tuple] = []
    saved = [(cls, name, cls.__dict__[name]) for cls, name in _ENTRIES]

    def wrap(cls: type, name: str, fn):  # noqa: ANN001, ANN202
        def logged(self, *args):  # noqa: ANN001, ANN202
            m = self.machine
            result = fn(self, *args)
            offset, value = (args[1], args[-1]) if len(args) > 3 else (args[0], args[-1])
            value = result if name == "_read" else value
            log.append((cls.__name__, name, offset, value, m.now(), m.pc))
            return result

        return logged

    for cls, name, fn in saved:
        setattr(cls, name, wrap(cls, name, fn))
    try:
        yield log
    finally:
        for cls, name, fn in saved:
            setattr(cls, name, fn)


@functools.cache
def reference(arch: str):
    """The unprobed run: transcript, status, instructions, device log, executions per address."""
    with device_log() as log:
        m = Machine.load(firmware(arch))
        counts: dict[int, int] = {}
        last: list[tuple[int, int] | None] = [None]

        def count(uc, addr, size, ud):  # noqa: ANN001, ANN202
            key = (addr, m.now())  # an unmask point stops before its instruction, which then runs
            if key != last[0]:
                counts[addr] = counts.get(addr, 0) + 1
            last[0] = key

        for name in DEVICE_FUNCS:
            sym = m.image.symbol(name)
            m.engine.hook_add(UC_HOOK_CODE, count, None, sym.addr, sym.addr + sym.size - 1)
        status = m.run()
    return m.console, status, m.instructions, tuple(log), counts


def probed_run(arch: str, variant: str | None, addrs: list[int]) -> tuple[Machine, list, tuple]:
    with device_log() as log:
        m = Machine.load(firmware(arch), step_variant=variant)
        probes = [m.kprobe(a) for a in addrs]
        status = m.run()
    return m, probes, (m.console, status, m.instructions, tuple(_unprobed_pcs(m, log)))


def _unprobed_pcs(m: Machine, log: list[tuple]) -> list[tuple]:
    """The log with an access made from a kprobe slot reported at the probed instruction."""
    slots = {site.slot: site.addr for site in m.probes.sites.values() if site.slot is not None}
    return [e[:5] + (slots.get(e[5], e[5]) if m.arch.sim_base <= e[5] else e[5],) for e in log]


def _accepted(m: Machine, name: str) -> list[int]:
    reg = m.probes
    sym = m.image.symbol(name)
    starts = reg.decode.boundaries(reg.original(sym.addr, sym.size), sym.addr)
    return [a for a in starts if reg.classify(a).kind is not Kind.REJECT]


@pytest.mark.parametrize("arch", ["riscv64", "x86_64", "loongarch64"])
def test_each_device_access_happens_once(arch):
    """The oracle itself: every access of the unprobed run is a distinct event (a replayed
    access would repeat its device, offset, value and virtual time), and the timer, UART and
    exit all appear."""
    _, _, _, log, _ = reference(arch)
    assert len(set(log)) == len(log)
    devices = {e[0] for e in log}
    assert {"Uart16550"} < devices and devices & {"TestExit", "PortExit"}
    if arch != "loongarch64":  # LoongArch's timer is CPU state (CSRs), not a device
        assert devices & {"Clint", "Pit"}


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_every_boundary_of_the_device_functions_probed_at_once(arch, variant):
    """Probes on all accepted boundaries of the functions that touch the board change nothing:
    transcript, status, virtual time and the device log (each access once, same time)."""
    console, status, insns, log, counts = reference(arch)
    m = Machine.load(firmware(arch), step_variant=variant)
    addrs = [a for name in DEVICE_FUNCS for a in _accepted(m, name)]
    m, probes, seen = probed_run(arch, variant, addrs)
    assert seen == (console, status, insns, log)
    for p in probes:
        assert (p.hits, p.missed) == (counts.get(p.addr, 0), 0), hex(p.addr)
    assert all(counts.get(m.image.symbol(name).addr) for name in DEVICE_FUNCS)


@pytest.mark.parametrize(("arch", "variant"), ARCH_VARIANTS)
def test_each_device_access_probed_alone(arch, variant):
    """One probe at a time on each instruction that accessed a device (its slot then is the
    first of the slot pages): the run is the unprobed one, device log included."""
    console, status, insns, log, counts = reference(arch)
    pcs = sorted({e[5] for e in log})
    m = Machine.load(firmware(arch), step_variant=variant)
    pcs = [pc for pc in pcs if m.probes.classify(pc).kind is not Kind.REJECT]
    assert pcs
    for pc in pcs:
        m, (probe,), seen = probed_run(arch, variant, [pc])
        assert seen == (console, status, insns, log), hex(pc)
        assert probe.hits == len({e[4] for e in log if e[5] == pc}), hex(pc)
