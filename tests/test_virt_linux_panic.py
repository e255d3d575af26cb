"""A Linux kernel panic ends the run as one report: the reason, the last console lines, status 125.

From the shared snapshot at ``/init``'s first instruction (``linux/rvguest.py``), init is made
to jump to address 0: Linux kills it with SIGSEGV, and the death of init is a real panic
("Attempted to kill init!"). The snapshot's kernel runs with ``panic=-1`` (it restarts at once,
through SBI SRST); with ``panic_timeout`` set to 0 in guest memory it prints its end line and
spins forever instead. Both end as a GuestPanic within a few M instructions (~1 s of CPU each).
"""

from __future__ import annotations

import pytest
from linux import rvguest

from kprobesim.errors import GuestPanic
from kprobesim.guest.panic import GRACE

pytestmark = pytest.mark.xdist_group(rvguest.XDIST_GROUP)
REASON = "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b"


def _kill_init(riscv_linux: rvguest.RiscvLinux, panic_timeout: int | None) -> tuple[GuestPanic, int]:
    m = riscv_linux.restore()
    if panic_timeout is not None:
        m.write(m.image.resolve("panic_timeout"), panic_timeout.to_bytes(4, "little", signed=True))
    m.pc = 0  # init's first instruction fetch faults: SIGSEGV for pid 1
    start = m.instructions
    with pytest.raises(GuestPanic) as caught:
        m.run(max_insns=rvguest.RUN_BUDGET, timeout=600)
    return caught.value, m.instructions - start


@pytest.mark.parametrize("panic_timeout", [None, 0], ids=["panic=-1 restarts", "panic=0 spins"])
def test_init_killed_is_reported_with_the_last_console_lines(
    riscv_linux: rvguest.RiscvLinux, panic_timeout: int | None
) -> None:
    error, spent = _kill_init(riscv_linux, panic_timeout)
    assert error.exit_status == 125
    assert error.line().startswith(f"kprobesim: guest kernel panic: {REASON} (after ")
    assert "\n" not in error.line()
    last = error.last_lines
    at = next(i for i, line in enumerate(last) if line.endswith(REASON))  # the panic line, with its stamp
    assert at == 3 and any(line.endswith("Call Trace:") for line in last), last
    assert any(" do_exit+0x" in line for line in last), last  # the call trace: init died in do_exit
    assert "Comm: init" in last[at + 1], last
    # the report comes at the kernel's own end: its restart (panic=-1) or its end line (panic=0),
    # well before the grace the watch allows
    assert spent < GRACE, spent
    if panic_timeout == 0:
        assert last[-1].endswith(f"---[ end {REASON} ]---"), last
    else:
        assert not any("---[ end Kernel panic" in line for line in last), last

