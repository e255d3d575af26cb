"""Intel 8254 programmable interval timer (ports 0x40-0x43) and port 0x61 on virtual time.

Channel 0 drives IRQ 0 (modes 0 and 2/3, as Linux's PIT clockevent uses them); channel 2 is
gated by port 0x61 bit 0 and its output reads back as port 0x61 bit 5, which is what Linux's
TSC calibration against the PIT watches. Counts are read with the byte sequencing of the access
mode, latched by the counter-latch and read-back commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...board import NEVER
from .clock import pit_ticks, pit_time

if TYPE_CHECKING:
    from ...machine import Machine
    from .pic import Pic8259Pair


class Channel:
    """One 16-bit down counter."""

    def __init__(self) -> None:
        self.mode = 0
        self.access = 3  # 1 low byte, 2 high byte, 3 low then high
        self.reload = 0x10000
        self.start: int | None = None  # PIT tick at which counting began (None: not counting)
        self.gate = True
        self.write_low: int | None = None
        self.read_high = False
        self.latched: list[int] = []

    def elapsed(self, ticks: int) -> int:
        return 0 if self.start is None else max(0, ticks - self.start)

    def count(self, ticks: int) -> int:
        n, e = self.reload, self.elapsed(ticks)
        if self.start is None:
            return n & 0xFFFF
        if self.mode in (2, 3):
            step = 2 if self.mode == 3 else 1
            period = n // step if self.mode == 3 else n
            return (n - step * (e % max(1, period))) & 0xFFFF
        return (n - e) & 0xFFFF

    def output(self, ticks: int) -> bool:
        if self.start is None:
            return self.mode != 0
        n, e = self.reload, self.elapsed(ticks)
        if self.mode == 2:
            return e % n != n - 1
        if self.mode == 3:
            return e % n < (n + 1) // 2
        return e >= n

    def next_edge(self, ticks: int) -> int | None:
        """PIT tick of the next rising output edge after ``ticks`` (IRQ 0 for channel 0)."""
        if self.start is None or not self.gate:
            return None
        n, e = self.reload, self.elapsed(ticks)
        if self.mode in (2, 3):
            return self.start + (e // n + 1) * n
        return self.start + n if e < n else None

    def bytes_of(self, value: int) -> list[int]:
        if self.access == 1:
            return [value & 0xFF]
        if self.access == 2:
            return [value >> 8 & 0xFF]
        return [value & 0xFF, value >> 8 & 0xFF]


class Pit8254:
    """Three channels; channel 0 raises IRQ 0 on the PIC, channel 2 is behind port 0x61."""

    def __init__(self, pic: Pic8259Pair) -> None:
        self.pic = pic
        self.channels = [Channel(), Channel(), Channel()]
        self.speaker = 0
        self.irq_tick: int | None = None  # channel 0's next IRQ edge (PIT ticks)

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.add_port(0x40, 4, self._read, self._write)
        machine.add_port(0x61, 1, self._read61, self._write61)

    def _ticks(self) -> int:
        return pit_ticks(self.machine.now())

    # -- ports ----------------------------------------------------------------------------------
    def _write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == 3:
            self._control(value)
            return
        ch = self.channels[offset]
        if ch.access == 3 and ch.write_low is None:
            ch.write_low = value
            return
        if ch.access == 3:
            reload = (value << 8) | (ch.write_low or 0)
            ch.write_low = None
        elif ch.access == 1:
            reload = value
        else:
            reload = value << 8
        ch.reload = reload or 0x10000
        ch.start = self._ticks() + 1 if ch.gate else None
        if offset == 0:
            self._rearm()

    def _control(self, value: int) -> None:
        sel = value >> 6
        if sel == 3:  # read-back: latch the counts of the selected channels
            if not value & 0x20:
                for i in range(3):
                    if value & (2 << i):
                        ch = self.channels[i]
                        ch.latched = ch.bytes_of(ch.count(self._ticks()))
            return
        ch = self.channels[sel]
        access = (value >> 4) & 3
        if access == 0:  # counter latch
            if not ch.latched:
                ch.latched = ch.bytes_of(ch.count(self._ticks()))
            return
        ch.access, ch.mode = access, (value >> 1) & 7
        if ch.mode > 5:
            ch.mode -= 4
        ch.start, ch.write_low, ch.read_high, ch.latched = None, None, False, []
        if sel == 0:
            self._rearm()

    def _read(self, offset: int, size: int) -> int:
        if offset == 3:
            return 0xFF
        ch = self.channels[offset]
        if ch.latched:
            return ch.latched.pop(0)
        data = ch.bytes_of(ch.count(self._ticks()))
        if len(data) == 1:
            return data[0]
        value = data[1] if ch.read_high else data[0]
        ch.read_high = not ch.read_high
        return value

    def _read61(self, offset: int, size: int) -> int:
        ticks = self._ticks()
        ch2 = self.channels[2]
        refresh = (self.machine.now() // 15085) & 1  # DRAM refresh toggle, every 15.085 us
        return (
            int(ch2.gate) | self.speaker << 1 | refresh << 4 | int(ch2.output(ticks)) << 5
        )

    def _write61(self, offset: int, size: int, value: int) -> None:
        ch2 = self.channels[2]
        gate = bool(value & 1)
        if gate and not ch2.gate and ch2.start is None and ch2.write_low is None:
            ch2.start = self._ticks() + 1  # a counter loaded while gated starts on the rising gate
        ch2.gate = gate
        self.speaker = (value >> 1) & 1

    # -- IRQ 0 -----------------------------------------------------------------------------------
    def _rearm(self) -> None:
        self.irq_tick = self.channels[0].next_edge(self._ticks())
        self.machine.timer_changed()

    def deadline(self) -> int:
        return NEVER if self.irq_tick is None else pit_time(self.irq_tick)

    def update(self, now: int) -> None:
        """Raise IRQ 0 if channel 0's output rose by ``now``."""
        if self.irq_tick is None or pit_time(self.irq_tick) > now:
            return
        self.pic.set_irq(0, True)
        self.pic.set_irq(0, False)
        self.irq_tick = self.channels[0].next_edge(pit_ticks(now))

    def state(self) -> dict:
        return {"channels": [dict(vars(c)) for c in self.channels], "speaker": self.speaker, "irq_tick": self.irq_tick}
