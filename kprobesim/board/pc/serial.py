"""8250/16550A UART (COM1 at port 0x3f8, IRQ 4) with every register readable as Linux probes it.

Linux's 8250 driver identifies the chip by writing and reading back IER, SCR and LCR (DLAB for
the divisor latch), by the FIFO bits of IIR, and by loopback (MCR bit 4 reflects the modem
outputs in MSR and sends transmitted bytes to the receiver). Transmission is instant: THR is
always empty. Input (``--input``) is offered one byte at a time once the guest enables the
receive interrupt, a new byte when it has read the previous one, so none is lost to an overrun
however late the driver opens the port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...machine import Machine
    from .pic import Pic8259Pair

IER_RDI, IER_THRI, IER_MSI = 1, 2, 8
MCR_OUT2, MCR_LOOP = 8, 0x10
LSR_DR, LSR_THRE, LSR_TEMT = 1, 0x20, 0x40


class Serial8250:
    """COM1: a 16550A with its FIFO, the IRQ gated by MCR OUT2 as on the PC."""

    def __init__(self, pic: Pic8259Pair, base: int = 0x3F8, irq: int = 4, data: bytes = b"") -> None:
        self.pic, self.base, self.irq = pic, base, irq
        self.input = bytearray(data)
        self.rx = bytearray()
        self.ier = self.lcr = self.mcr = self.scr = self.fcr = 0
        self.dll, self.dlm = 12, 0
        self.thre_pending = False
        self.msr_delta = 0
        self.line = False

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(self.base, 8, self._read, self._write)

    # -- state -----------------------------------------------------------------------------------
    def _feed(self) -> None:
        """Offer the next input byte when the guest listens and has taken the last one."""
        if not self.rx and self.input and self.ier & IER_RDI and not self.mcr & MCR_LOOP:
            self.rx.append(self.input.pop(0))

    def _iir(self) -> int:
        fifo = 0xC0 if self.fcr & 1 else 0
        if self.ier & IER_RDI and self.rx:
            return fifo | 0x04
        if self.ier & IER_THRI and self.thre_pending:
            return fifo | 0x02
        if self.ier & IER_MSI and self.msr_delta:
            return fifo | 0x00
        return fifo | 0x01

    def _msr(self) -> int:
        if self.mcr & MCR_LOOP:  # RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD
            m = self.mcr
            return (m & 2) << 3 | (m & 1) << 5 | (m & 4) << 4 | (m & 8) << 4 | self.msr_delta
        return 0xB0 | self.msr_delta  # DCD, DSR, CTS asserted (a terminal is attached)

    def _update(self) -> None:
        self._feed()
        line = not self._iir() & 1 and bool(self.mcr & MCR_OUT2)
        if line != self.line:
            self.line = line
            self.pic.set_irq(self.irq, line)

    # -- ports -----------------------------------------------------------------------------------
    def _read(self, offset: int, size: int) -> int:
        dlab = self.lcr & 0x80
        value = 0
        if offset == 0:
            if dlab:
                value = self.dll
            elif self.rx:
                value = self.rx.pop(0)
        elif offset == 1:
            value = self.dlm if dlab else self.ier
        elif offset == 2:
            value = self._iir()
            if value & 0x0F == 0x02:
                self.thre_pending = False  # reading IIR clears a THRE interrupt
        elif offset == 3:
            value = self.lcr
        elif offset == 4:
            value = self.mcr
        elif offset == 5:
            value = LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)
        elif offset == 6:
            value = self._msr()
            self.msr_delta = 0
        elif offset == 7:
            value = self.scr
        self._update()
        return value

    def _write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        dlab = self.lcr & 0x80
        if offset == 0:
            if dlab:
                self.dll = value
            else:
                if self.mcr & MCR_LOOP:
                    self.rx.append(value)
                else:
                    self.machine.console_write(bytes([value]))
                self.thre_pending = True  # sent at once: THR empty again
        elif offset == 1:
            if dlab:
                self.dlm = value
            else:
                if value & IER_THRI and not self.ier & IER_THRI:
                    self.thre_pending = True
                self.ier = value & 0x0F
        elif offset == 2:
            if value & 2:
                self.rx.clear()
            self.fcr = value & 0xC9
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            self.mcr = value & 0x1F
        elif offset == 7:
            self.scr = value
        self._update()

    def state(self) -> dict:
        skip = ("pic", "machine")
        return {k: (bytes(v) if isinstance(v, bytearray) else v) for k, v in vars(self).items() if k not in skip}
