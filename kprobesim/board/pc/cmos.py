"""MC146818 CMOS RTC (ports 0x70/0x71): a clock that starts at a fixed date and runs on virtual
time (so runs are reproducible), BCD 24-hour format, and the NVRAM bytes a PC BIOS leaves."""

from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING

from .clock import NS_PER_INSN, NS_PER_S

if TYPE_CHECKING:
    from ...machine import Machine

EPOCH = calendar.timegm((2026, 1, 1, 0, 0, 0, 0, 0, 0))  # the RTC's time at reset


def _bcd(v: int) -> int:
    return (v // 10) << 4 | v % 10


class CmosRtc:
    """Index port 0x70 (bit 7: NMI mask), data port 0x71."""

    def __init__(self, ram_size: int) -> None:
        self.index = 0
        self.nvram = bytearray(128)
        self.nvram[0x0A] = 0x26  # 32.768 kHz base, 1024 Hz rate
        self.nvram[0x0B] = 0x02  # 24-hour, BCD, no interrupts
        self.nvram[0x0D] = 0x80  # valid RAM and time
        ext = min((ram_size - 0x100000) // 1024, 0xFFFF)  # KiB above 1 MiB
        self.nvram[0x15:0x17] = (640).to_bytes(2, "little")
        self.nvram[0x17:0x19] = self.nvram[0x30:0x32] = ext.to_bytes(2, "little")
        above16 = max(0, ram_size - 0x1000000) // 0x10000
        self.nvram[0x34:0x36] = min(above16, 0xFFFF).to_bytes(2, "little")

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(0x70, 2, self._read, self._write)

    def _time(self) -> time.struct_time:
        return time.gmtime(EPOCH + self.machine.now() * NS_PER_INSN // NS_PER_S)

    def _read(self, offset: int, size: int) -> int:
        if offset == 0:
            return 0xFF
        i = self.index
        if i <= 9 or i == 0x32:
            t = self._time()
            fields = {0: t.tm_sec, 2: t.tm_min, 4: t.tm_hour, 6: t.tm_wday + 2 if t.tm_wday < 6 else 1,
                      7: t.tm_mday, 8: t.tm_mon, 9: t.tm_year % 100, 0x32: t.tm_year // 100}
            if i in fields:
                v = fields[i]
                return v if self.nvram[0x0B] & 4 else _bcd(v)
            return self.nvram[i]  # alarm registers
        if i == 0x0C:
            value, self.nvram[0x0C] = self.nvram[0x0C], 0  # interrupt flags clear on read
            return value
        return self.nvram[i]

    def _write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            self.index = value & 0x7F
        elif self.index not in (0x0C, 0x0D) and self.index > 9:
            self.nvram[self.index] = value & 0xFF
        elif self.index in (1, 3, 5):  # alarms
            self.nvram[self.index] = value & 0xFF

    def state(self) -> dict:
        return {"index": self.index, "nvram": bytes(self.nvram)}
