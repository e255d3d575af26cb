"""Exit devices: the SiFive test device (MMIO) and an isa-debug-exit-style port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine


@dataclass
class TestExit:
    """SiFive test device semantics: 0x5555 = pass, ``code << 16 | 0x3333`` = fail with ``code``
    (as QEMU's, which exits with ``code`` even when it is 0)."""

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
            self.machine.guest_exit((value >> 16) & 0xFFFF)
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
