"""The board: RAM, console UART, exit device and timers, all on virtual time.

Virtual time is the number of guest instructions retired since reset, so every run is
deterministic. Devices never hook instructions: MMIO devices use Unicorn's ``mmio_map``,
port devices the engine's IN/OUT hooks, and timers tell the run loop their next deadline
so it can end an ``emu_start`` slice exactly there. One module a device; this module holds the
interfaces they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..machine import Machine

NEVER = 1 << 63

class Device(Protocol):
    """Something on the board; ``attach`` wires it to the machine's engine."""

    def attach(self, machine: Machine) -> None: ...


class Timer(Protocol):
    """A device that raises an interrupt at a virtual time."""

    def deadline(self) -> int:
        """Virtual time at which the next interrupt becomes pending (NEVER if none)."""
        ...

    def pending(self, now: int) -> int | None:
        """The interrupt line pending at ``now``, if any."""
        ...

    def delivered(self, now: int) -> None:
        """The interrupt was taken (edge-triggered sources clear here)."""
        ...


from .clint import Clint  # noqa: E402
from .exit import PortExit, TestExit  # noqa: E402
from .pit import Pit  # noqa: E402
from .uart import Uart16550  # noqa: E402

__all__ = ["NEVER", "Clint", "Device", "Pit", "PortExit", "TestExit", "Timer", "Uart16550"]
