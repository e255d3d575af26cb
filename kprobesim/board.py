"""The board: RAM, console UART, exit device and timers, all on virtual time.

Virtual time is the number of guest instructions retired since reset, so every run is
deterministic. Devices never hook instructions: MMIO devices use Unicorn's ``mmio_map``,
port devices the engine's IN/OUT hooks, and timers tell the run loop their next deadline
so it can end an ``emu_start`` slice exactly there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .machine import Machine

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


@dataclass
class Uart16550:
    """An NS16550 transmit side: THR at +0, LSR at +5 always 'empty' (bytes reach the console)."""

    base: int
    ports: bool = False  # x86 I/O ports instead of MMIO

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        if self.ports:
            machine.add_port(self.base, 8, self._read, self._write)
        else:  # MMIO is mapped by pages; the registers may sit inside one (0x1fe001e0)
            self._page = self.base & ~0xFFF
            machine.engine.mmio_map(self._page, 0x1000, self._mmio_read, None, self._mmio_write, None)

    def _read(self, offset: int, size: int) -> int:
        return 0x60 if offset == 5 else 0  # LSR: transmitter empty

    def _write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.machine.console_write(bytes([value & 0xFF]))

    def _mmio_read(self, uc: object, offset: int, size: int, ud: object) -> int:
        return self._read(self._page + offset - self.base, size)

    def _mmio_write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        self._write(self._page + offset - self.base, size, value)


@dataclass
class TestExit:
    """SiFive test device semantics: 0x5555 = pass, ``code << 16 | 0x3333`` = fail with ``code``."""

    base: int

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.engine.mmio_map(self.base, 0x1000, self._read, None, self._write, None)

    def _read(self, uc: object, offset: int, size: int, ud: object) -> int:
        return 0

    def _write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        if offset != 0:
            return
        kind = value & 0xFFFF
        if kind == 0x5555:
            self.machine.guest_exit(0)
        elif kind == 0x3333:
            self.machine.guest_exit((value >> 16) & 0xFFFF or 1)
        elif kind == 0x7777:  # reset: treat as a failed run the guest asked to end
            self.machine.guest_exit(1)


@dataclass
class PortExit:
    """Exit through an I/O port (isa-debug-exit's place): the value written is the status."""

    port: int

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(self.port, 1, lambda off, size: 0, self._write)

    def _write(self, offset: int, size: int, value: int) -> None:
        self.machine.guest_exit(value & 0xFF)


class Clint:
    """RISC-V CLINT for hart 0: ``mtime`` is virtual time, ``mtimecmp`` raises interrupt 7."""

    IRQ = 7
    MTIMECMP = 0x4000
    MTIME = 0xBFF8

    def __init__(self, base: int) -> None:
        self.base = base
        self.mtimecmp = NEVER

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.engine.mmio_map(self.base, 0x10000, self._read, None, self._write, None)
        machine.add_timer(self)

    def _read(self, uc: object, offset: int, size: int, ud: object) -> int:
        if self.MTIMECMP <= offset < self.MTIMECMP + 8:
            value, shift = self.mtimecmp, (offset - self.MTIMECMP) * 8
        elif self.MTIME <= offset < self.MTIME + 8:
            value, shift = self.machine.now(), (offset - self.MTIME) * 8
        else:
            return 0
        return (value >> shift) & ((1 << (size * 8)) - 1)

    def _write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        if not self.MTIMECMP <= offset < self.MTIMECMP + 8:
            return
        shift = (offset - self.MTIMECMP) * 8
        mask = ((1 << (size * 8)) - 1) << shift
        self.mtimecmp = (self.mtimecmp & ~mask) | ((value << shift) & mask)
        self.machine.timer_changed()

    def deadline(self) -> int:
        return self.mtimecmp

    def pending(self, now: int) -> int | None:
        return self.IRQ if now >= self.mtimecmp else None

    def delivered(self, now: int) -> None:
        """Level-triggered: pending until the guest moves ``mtimecmp``."""


class Pit:
    """i8254 channel 0 in rate-generator mode: IRQ0 (vector 32) every ``reload`` ticks.

    One tick is one retired instruction. The pending edge is latched until taken.
    """

    VECTOR = 32

    def __init__(self) -> None:
        self.reload = 0
        self.next_fire = NEVER
        self.latched = False
        self._low: int | None = None

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(0x40, 4, lambda off, size: 0, self._write)
        machine.add_port(0x20, 2, lambda off, size: 0, lambda off, size, value: None)  # PIC, EOI
        machine.add_port(0xA0, 2, lambda off, size: 0, lambda off, size, value: None)
        machine.add_timer(self)

    def _write(self, offset: int, size: int, value: int) -> None:
        if offset == 3:  # mode/command: a new count follows, low byte first
            self._low = None
            return
        if offset != 0:
            return
        if self._low is None:
            self._low = value & 0xFF
            return
        self.reload = ((value & 0xFF) << 8 | self._low) or 0x10000
        self._low = None
        self.next_fire = self.machine.now() + self.reload
        self.machine.timer_changed()

    def deadline(self) -> int:
        return self.machine.now() if self.latched else self.next_fire

    def pending(self, now: int) -> int | None:
        if now >= self.next_fire:
            self.latched = True
            missed = (now - self.next_fire) // self.reload + 1
            self.next_fire += missed * self.reload
        return self.VECTOR if self.latched else None

    def delivered(self, now: int) -> None:
        self.latched = False
