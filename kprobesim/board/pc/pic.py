"""Intel 8259A programmable interrupt controller, the PC's master/slave pair (ports 0x20, 0xA0).

Edge-triggered, fully nested mode as Linux programs it: ICW1-ICW4 set the vector base (ICW2,
Linux puts IRQ0 at 0x30), OCW1 the mask, OCW2 end-of-interrupt, OCW3 which of IRR/ISR a read of
the command port returns. The slave's output is the master's IRQ 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...machine import Machine


class Chip8259:
    """One 8259A."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.irr = self.isr = self.imr = 0
        self.level = 0  # input lines as last set (edges latch IRR)
        self.base = 0
        self.read_isr = False
        self.auto_eoi = False
        self.init_step = 0  # 0: ready; 2..4: expecting ICW2..ICW4
        self.needs_icw4 = False
        self.single = False

    def set_line(self, irq: int, high: bool) -> None:
        bit = 1 << irq
        if high and not self.level & bit:
            self.irr |= bit
        self.level = self.level | bit if high else self.level & ~bit

    def highest(self) -> int | None:
        """The request the chip would raise now (fully nested: none at or above an in-service one)."""
        pending = self.irr & ~self.imr
        for irq in range(8):
            if self.isr & (1 << irq):
                return None
            if pending & (1 << irq):
                return irq
        return None

    def ack(self, irq: int) -> None:
        bit = 1 << irq
        self.irr &= ~bit
        if not self.auto_eoi:
            self.isr |= bit

    def write_cmd(self, value: int) -> None:
        if value & 0x10:  # ICW1
            self.reset()
            self.init_step = 2
            self.needs_icw4 = bool(value & 1)
            self.single = bool(value & 2)
        elif value & 0x08:  # OCW3
            if value & 0x02:
                self.read_isr = bool(value & 1)
        else:  # OCW2
            cmd, irq = value >> 5, value & 7
            if cmd == 1:  # non-specific EOI: the highest-priority in-service one
                for i in range(8):
                    if self.isr & (1 << i):
                        self.isr &= ~(1 << i)
                        break
            elif cmd == 3:  # specific EOI
                self.isr &= ~(1 << irq)

    def write_data(self, value: int) -> None:
        if self.init_step == 2:
            self.base = value & 0xF8
            self.init_step = 3 if not self.single else (4 if self.needs_icw4 else 0)
        elif self.init_step == 3:
            self.init_step = 4 if self.needs_icw4 else 0
        elif self.init_step == 4:
            self.auto_eoi = bool(value & 2)
            self.init_step = 0
        else:
            self.imr = value & 0xFF

    def read_cmd(self) -> int:
        return self.isr if self.read_isr else self.irr

    def state(self) -> dict:
        return dict(vars(self))


class Pic8259Pair:
    """The master (IRQ 0-7) and slave (IRQ 8-15, cascaded on IRQ 2) 8259As."""

    CASCADE = 2

    def __init__(self) -> None:
        self.master, self.slave = Chip8259(), Chip8259()
        self.sources: list = []  # devices with ``update(now)`` that drive lines before a look
        self.machine: Machine | None = None

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        # chips by name, looked up at each access: a snapshot's restore replaces the chip objects
        for base, name in ((0x20, "master"), (0xA0, "slave")):
            machine.add_port(
                base,
                2,
                lambda off, size, name=name: self._read(getattr(self, name), off),
                lambda off, size, value, name=name: self._write(getattr(self, name), off, value),
            )
        machine.add_port(0x4D0, 2, lambda off, size: 0, lambda off, size, v: None)  # ELCR: all edge

    def _read(self, chip: Chip8259, offset: int) -> int:
        return chip.imr if offset else chip.read_cmd()

    def _write(self, chip: Chip8259, offset: int, value: int) -> None:
        if offset:
            chip.write_data(value)
        else:
            chip.write_cmd(value)
        self.changed()

    def set_irq(self, irq: int, high: bool) -> None:
        """A device drives line ``irq`` (0-15)."""
        if irq < 8:
            self.master.set_line(irq, high)
        else:
            self.slave.set_line(irq - 8, high)
        self.changed()

    def _cascade(self) -> None:
        """The slave's output is a level on the master's IRQ 2."""
        bit = 1 << self.CASCADE
        if self.slave.highest() is not None:
            self.master.irr |= bit
        else:
            self.master.irr &= ~bit

    def changed(self) -> None:
        """Lines or masks moved: end the slice if the CPU now has an interrupt to look at."""
        self._cascade()
        if self.machine is not None and self.master.highest() is not None:
            self.machine.cut_slice()

    def pending_vector(self) -> int | None:
        irq = self.master.highest()
        if irq is None:
            return None
        if irq == self.CASCADE and not self.master.single:
            sirq = self.slave.highest()
            if sirq is None:
                return None
            return self.slave.base + sirq
        return self.master.base + irq

    def acknowledge(self) -> None:
        """The CPU took the interrupt (INTA): IRR -> ISR on the chips that raised it."""
        irq = self.master.highest()
        if irq is None:
            return
        self.master.ack(irq)
        if irq == self.CASCADE:
            sirq = self.slave.highest()
            if sirq is not None:
                self.slave.ack(sirq)
        self._cascade()
