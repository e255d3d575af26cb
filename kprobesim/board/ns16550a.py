"""NS16550A UART with both directions, DLAB, FIFO flags and its interrupt (QEMU ``virt``'s).

Transmitted bytes reach the console at once (THR empty is always true). Received bytes come
from a :class:`ConsoleInput` the board wires in; the line to the interrupt controller is raised
when a receive or transmit-empty interrupt becomes due and lowered when none is.
"""

from __future__ import annotations

from collections.abc import Callable

IER_RDI, IER_THRI = 1, 2
IIR_NONE, IIR_THRI, IIR_RDI = 0x01, 0x02, 0x04
LCR_DLAB = 0x80
LSR_DR, LSR_THRE, LSR_TEMT = 0x01, 0x20, 0x40


class Ns16550a:
    """Registers at ``base`` + 0..7 (byte-wide, QEMU's layout)."""

    def __init__(self, base: int, irq: int) -> None:
        self.base = base
        self.irq = irq
        self.ier = self.lcr = self.mcr = self.scr = self.fcr = 0
        self.dll, self.dlm = 0, 0
        self.rx: bytearray = bytearray()
        self.thr_pending = False
        self.raise_irq: Callable[[int], None] = lambda irq: None
        self.lower_irq: Callable[[int], None] = lambda irq: None
        self.on_read_rx: Callable[[], None] = lambda: None  # the input side learns a byte was taken

    def attach(self, machine: object) -> None:
        self.machine = machine
        machine.engine.mmio_map(self.base, 0x1000, self._read, None, self._write, None)  # type: ignore[attr-defined]

    def receive(self, data: bytes) -> None:
        """Bytes arrive on the line (typed input)."""
        self.rx += data
        self._update(event=True)

    def _iir(self) -> int:
        if self.ier & IER_RDI and self.rx:
            return IIR_RDI
        if self.ier & IER_THRI and self.thr_pending:
            return IIR_THRI
        return IIR_NONE

    def _update(self, event: bool = False) -> None:
        if self._iir() == IIR_NONE:
            self.lower_irq(self.irq)
        elif event:
            self.raise_irq(self.irq)

    def _read(self, uc: object, offset: int, size: int, ud: object) -> int:
        if offset == 0:
            if self.lcr & LCR_DLAB:
                return self.dll
            if not self.rx:
                return 0
            byte = self.rx.pop(0)
            self._update()
            self.on_read_rx()
            return byte
        if offset == 1:
            return self.dlm if self.lcr & LCR_DLAB else self.ier
        if offset == 2:
            iir = self._iir()
            if iir == IIR_THRI:  # reading the IIR that reports it clears the THR-empty interrupt
                self.thr_pending = False
                self._update()
            return iir | (0xC0 if self.fcr & 1 else 0)
        if offset == 3:
            return self.lcr
        if offset == 4:
            return self.mcr
        if offset == 5:
            return LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)
        if offset == 6:
            return 0xB0  # DCD, DSR, CTS
        if offset == 7:
            return self.scr
        return 0

    def _write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        value &= 0xFF
        if offset == 0:
            if self.lcr & LCR_DLAB:
                self.dll = value
                return
            self.machine.console_write(bytes([value]))  # type: ignore[attr-defined]
            self.thr_pending = True
            self._update(event=True)
        elif offset == 1:
            if self.lcr & LCR_DLAB:
                self.dlm = value
                return
            newly_thri = value & IER_THRI and not self.ier & IER_THRI
            self.ier = value & 0x0F
            if newly_thri:
                self.thr_pending = True
            self._update(event=True)
        elif offset == 2:
            self.fcr = value & 0xC9
            if value & 2:
                self.rx.clear()
                self.on_read_rx()
            self._update()
        elif offset == 3:
            self.lcr = value
        elif offset == 4:
            self.mcr = value & 0x1F
        elif offset == 7:
            self.scr = value
