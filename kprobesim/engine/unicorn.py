"""The Unicorn engine (riscv64, x86_64) with an exact executed-instruction counter.

Unicorn counts instructions for ``emu_start(count=N)`` in a C-level hook (``uc->emu_counter``),
which is far cheaper than any Python hook but not exposed by its API. We find that counter's
word inside the engine handle once per process by running a calibration program with known
counts, then read it with ctypes: exact virtual time with nothing hooked per instruction.
"""

from __future__ import annotations

import ctypes
from functools import cache

from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, Uc, UcError
from unicorn.riscv_const import UC_RISCV_REG_PC

_CAL_BASE = 0x10000
_NOP = bytes.fromhex("13000000")  # riscv addi x0, x0, 0
_SCAN_WORDS = 4096


def _words(uc: Uc) -> ctypes.Array:
    return ctypes.cast(uc._uch, ctypes.POINTER(ctypes.c_uint64 * _SCAN_WORDS)).contents


def _calibration_run(count: int) -> list[int]:
    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
    uc.mem_map(_CAL_BASE, 0x1000)
    uc.mem_write(_CAL_BASE, _NOP * 64)
    uc.emu_start(_CAL_BASE, _CAL_BASE + 64 * 4, count=count)
    assert uc.reg_read(UC_RISCV_REG_PC) == _CAL_BASE + 4 * count
    return list(_words(uc))


@cache
def counter_word() -> int:
    """Index of Unicorn's ``emu_counter`` in the engine handle (found by calibration)."""
    runs = {n: _calibration_run(n) for n in (7, 19, 42)}
    candidates = [
        i
        for i in range(_SCAN_WORDS - 1)
        if all(words[i] == n + 1 and words[i + 1] == n for n, words in runs.items())
    ]
    if len(candidates) != 1:
        raise RuntimeError("cannot locate Unicorn's instruction counter (unsupported unicorn build)")
    return candidates[0]


class UnicornEngine(Uc):
    """Placeholder for typing: engines are plain ``Uc`` objects with ``icount`` attached."""

    def icount(self) -> int:  # pragma: no cover - replaced per instance
        raise NotImplementedError

    def stop_after_insn(self) -> None:  # pragma: no cover - replaced per instance
        raise NotImplementedError


def new_unicorn(arch: int, mode: int) -> Uc:
    """A Unicorn engine with ``icount()`` (instructions started by the last ``emu_start``).

    Always pass ``count > 0`` to ``emu_start``: Unicorn only counts in blocks translated
    while a count was active.
    """
    uc = Uc(arch, mode)
    index = counter_word()
    words = _words(uc)
    state: dict[str, int | None] = {"count": 0, "cut": None}
    real_start = uc.emu_start

    def emu_start(begin: int, until: int, timeout: int = 0, count: int = 0) -> None:
        state["count"], state["cut"] = count, None
        words[index] = 0
        real_start(begin, until, timeout, count)

    def icount() -> int:
        if state["cut"] is not None:
            return state["cut"]
        started = words[index]
        count = state["count"]
        # A stop because `count` was reached leaves the counter one past it.
        return count if count and started == count + 1 else started

    def stop_after_insn() -> None:
        """From a device callback: let the running instruction complete (all of its accesses,
        each once) and stop before the next one. ``emu_stop`` would instead leave an MMIO
        access unretired, to run again, device side effects and all, on resume."""
        if state["cut"] is None and state["count"]:
            state["cut"] = words[index]  # started so far, the running instruction included
            words[index] = words[index + 1]  # the count check before the next one stops there

    uc.emu_start = emu_start  # type: ignore[method-assign]
    uc.icount = icount  # type: ignore[attr-defined]
    uc.stop_after_insn = stop_after_insn  # type: ignore[attr-defined]
    return uc


__all__ = ["UcError", "new_unicorn", "counter_word"]
