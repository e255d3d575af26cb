"""The pc board's time base: one retired instruction is one nanosecond of virtual time.

The TSC, the 8254's 1.193182 MHz input and the RTC all derive from it, so a run is deterministic
and the kernel's TSC calibration against the PIT finds a 1 GHz TSC.
"""

from __future__ import annotations

NS_PER_INSN = 1
TSC_HZ = 1_000_000_000
PIT_HZ = 1_193_182
NS_PER_S = 1_000_000_000


def pit_ticks(now: int) -> int:
    """8254 input clock ticks since reset at virtual time ``now``."""
    return now * NS_PER_INSN * PIT_HZ // NS_PER_S


def pit_time(ticks: int) -> int:
    """The first virtual time at which ``ticks`` PIT ticks have passed."""
    return -(-ticks * NS_PER_S // (PIT_HZ * NS_PER_INSN))


def tsc(now: int) -> int:
    return now * NS_PER_INSN * TSC_HZ // NS_PER_S
