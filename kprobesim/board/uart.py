"""NS16550 UART (transmit side) on MMIO or I/O ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine


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
