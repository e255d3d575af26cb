"""The bundled kernels run to completion with their golden transcripts, deterministically."""

from __future__ import annotations

import pytest
from fwpaths import ALL_ARCHES, firmware

from kprobesim.machine import Machine


def _run(path, **kw) -> Machine:
    m = Machine.load(path, **kw)
    assert m.run() == 0, m.console
    return m


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_golden_transcript_twice(arch):
    golden = firmware(arch, "transcript.txt").read_text()
    first = _run(firmware(arch))
    assert first.console == golden
    second = _run(firmware(arch))
    assert second.console_bytes == first.console_bytes
    assert second.instructions == first.instructions


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_raw_image_with_system_map(arch, run_cli):
    status, out, err = run_cli("--arch", arch, str(firmware(arch, "kernel.bin")))
    assert (status, err) == (0, "")
    assert out.decode() == firmware(arch, "transcript.txt").read_text()


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_kernel_is_preempted_by_its_timer(arch):
    """The scheduler really is timer-driven: timer interrupts arrive and switch tasks."""
    m = Machine.load(firmware(arch))
    timer, schedule = m.kprobe("timer_interrupt"), m.kprobe("schedule")
    syscalls = m.kprobe("handle_syscall")
    assert m.run() == 0
    assert timer.hits >= 5 and schedule.hits > timer.hits // 2
    assert syscalls.hits >= 6


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_symbols_verb(arch, run_cli):
    status, out, _ = run_cli("symbols", str(firmware(arch)), "do_wor*")
    assert status == 0
    (line,) = out.decode().splitlines()
    assert line.endswith(" T do_work")


def test_budget_stops_the_kernel(run_cli):
    status, out, err = run_cli("--max-insns", "20000", str(firmware("riscv64")))
    assert status == 124 and "instruction budget exhausted after 20000 instructions" in err
    assert out.startswith(b"kprobesim firmware: booting")
