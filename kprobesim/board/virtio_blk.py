"""virtio-mmio transport (modern v2 and legacy v1) with a virtio block device behind it.

Requests on the split virtqueue complete synchronously when the driver notifies the queue:
the descriptors are read from guest memory, the data moved to or from the disk image, the used
ring updated and the interrupt raised. The disk is a private copy of the file unless the
board was told to write through to it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..machine import Machine

MAGIC, VENDOR = 0x74726976, 0x554D4551
SECTOR = 512
QUEUE_MAX = 1024
F_VERSION_1 = 1 << 32
BLK_F_SEG_MAX, BLK_F_BLK_SIZE, BLK_F_FLUSH = 1 << 2, 1 << 6, 1 << 9
DESC_NEXT, DESC_WRITE, DESC_INDIRECT = 1, 2, 4
T_IN, T_OUT, T_FLUSH, T_GET_ID = 0, 1, 4, 8
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2


class Disk:
    """A disk image: a private copy, or the file itself when writable."""

    def __init__(self, path: str | Path, writable: bool = False) -> None:
        self.path = Path(path)
        self.data = bytearray(self.path.read_bytes())
        self.writable = writable

    def write(self, offset: int, data: bytes) -> None:
        self.data[offset : offset + len(data)] = data
        if self.writable:
            with open(self.path, "r+b") as f:
                f.seek(offset)
                f.write(data)


class _Queue:
    def __init__(self) -> None:
        self.num = 0
        self.ready = False
        self.desc = self.avail = self.used = 0
        self.pfn = 0
        self.align = 4096
        self.last_avail = 0


class VirtioMmio:
    """One virtio-mmio slot: a block device when ``disk`` is given, else an empty slot (ID 0)."""

    SIZE = 0x1000

    def __init__(self, base: int, irq: int, disk: Disk | None = None, legacy: bool = False) -> None:
        self.base, self.irq, self.disk, self.legacy = base, irq, disk, legacy
        self.raise_irq = lambda irq: None
        self.lower_irq = lambda irq: None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.features_sel = self.driver_features_sel = 0
        self.driver_features = 0
        self.queue_sel = 0
        self.isr = 0
        self.page_size = 4096
        self.queue = _Queue()

    @property
    def features(self) -> int:
        return (0 if self.legacy else F_VERSION_1) | BLK_F_SEG_MAX | BLK_F_BLK_SIZE | BLK_F_FLUSH

    def attach(self, machine: Machine) -> None:
        self.machine = machine
        machine.engine.mmio_map(self.base, self.SIZE, self._read, None, self._write, None)

    def _config(self) -> bytes:
        sectors = len(self.disk.data) // SECTOR if self.disk else 0
        # capacity, size_max, seg_max, geometry (c, h, s), blk_size
        return struct.pack("<QIIHBBI", sectors, 0, QUEUE_MAX - 2, 0, 0, 0, SECTOR)

    def _read(self, uc: object, offset: int, size: int, ud: object) -> int:
        if offset >= 0x100:
            if not self.disk:
                return 0
            config = self._config().ljust(0x100, b"\0")
            at = offset - 0x100
            return int.from_bytes(config[at : at + size], "little")
        q = self.queue
        regs = {
            0x000: MAGIC,
            0x004: 1 if self.legacy else 2,
            0x008: 2 if self.disk else 0,
            0x00C: VENDOR,
            0x010: (self.features >> (32 * self.features_sel)) & 0xFFFFFFFF if self.features_sel < 2 else 0,
            0x034: QUEUE_MAX if self.queue_sel == 0 else 0,
            0x040: q.pfn,
            0x044: int(q.ready),
            0x060: self.isr,
            0x070: self.status,
            0x0FC: 0,
        }
        return regs.get(offset, 0)

    def _write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        q = self.queue
        value &= 0xFFFFFFFF
        if offset == 0x014:
            self.features_sel = value
        elif offset == 0x020:
            shift = 32 * self.driver_features_sel
            if self.driver_features_sel < 2:
                self.driver_features = (self.driver_features & ~(0xFFFFFFFF << shift)) | (value << shift)
        elif offset == 0x024:
            self.driver_features_sel = value
        elif offset == 0x028:
            self.page_size = value or 4096
        elif offset == 0x030:
            self.queue_sel = value
        elif self.queue_sel != 0 and offset in (0x038, 0x03C, 0x040, 0x044, 0x080, 0x084, 0x090, 0x094, 0x0A0, 0x0A4):
            return
        elif offset == 0x038:
            q.num = min(value, QUEUE_MAX)
        elif offset == 0x03C:
            q.align = value or 4096
        elif offset == 0x040:  # legacy: the whole ring from one page number
            q.pfn = value
            if value:
                q.desc = value * self.page_size
                q.avail = q.desc + 16 * q.num
                q.used = (q.avail + 6 + 2 * q.num + q.align - 1) & ~(q.align - 1)
                q.ready = True
            else:
                q.ready = False
        elif offset == 0x044:
            q.ready = bool(value & 1)
        elif offset == 0x050:
            if value == 0 and q.ready and self.disk:
                self._process()
        elif offset == 0x064:
            self.isr &= ~value
            if not self.isr:
                self.lower_irq(self.irq)
        elif offset == 0x070:
            if value == 0:
                self._reset()
                self.lower_irq(self.irq)
            else:
                self.status = value
        elif offset in (0x080, 0x084, 0x090, 0x094, 0x0A0, 0x0A4):
            attr = {0x80: "desc", 0x90: "avail", 0xA0: "used"}[offset & ~7]
            old = getattr(q, attr)
            if offset & 4:
                setattr(q, attr, (old & 0xFFFFFFFF) | (value << 32))
            else:
                setattr(q, attr, (old & ~0xFFFFFFFF) | value)

    # -- the queue -------------------------------------------------------------------------------
    def _mem(self, addr: int, size: int) -> bytes:
        return bytes(self.machine.engine.mem_read(addr, size))

    def _chain(self, head: int) -> list[tuple[int, int, int]]:
        q, out, index, table, limit = self.queue, [], head, self.queue.desc, self.queue.num
        for _ in range(QUEUE_MAX):
            addr, length, flags, nxt = struct.unpack("<QIHH", self._mem(table + 16 * index, 16))
            if flags & DESC_INDIRECT:
                table, limit, index = addr, length // 16, 0
                continue
            out.append((addr, length, flags))
            if not flags & DESC_NEXT or nxt >= limit:
                break
            index = nxt
        del q
        return out

    def _process(self) -> None:
        q = self.queue
        avail_idx = struct.unpack("<H", self._mem(q.avail + 2, 2))[0]
        done = False
        while q.last_avail != avail_idx:
            slot = q.avail + 4 + 2 * (q.last_avail % q.num)
            head = struct.unpack("<H", self._mem(slot, 2))[0]
            q.last_avail = (q.last_avail + 1) & 0xFFFF
            written = self._request(self._chain(head))
            used_idx = struct.unpack("<H", self._mem(q.used + 2, 2))[0]
            entry = q.used + 4 + 8 * (used_idx % q.num)
            self.machine.write_phys(entry, struct.pack("<II", head, written))
            self.machine.write_phys(q.used + 2, struct.pack("<H", (used_idx + 1) & 0xFFFF))
            done = True
        if done:
            self.isr |= 1
            self.raise_irq(self.irq)

    def _request(self, chain: list[tuple[int, int, int]]) -> int:
        """Carry out one block request; returns the bytes written into guest memory."""
        assert self.disk is not None
        if len(chain) < 2:
            return 0
        header = b"".join(self._mem(a, n) for a, n, _ in chain[:1])[:16]
        kind, _, sector = struct.unpack("<IIQ", header.ljust(16, b"\0"))
        *data, (status_addr, _, _) = chain[1:]
        offset, written, status = sector * SECTOR, 1, S_OK
        disk = self.disk.data
        for addr, length, _ in data:
            if kind == T_IN:
                if offset + length > len(disk):
                    status = S_IOERR
                    break
                self.machine.write_phys(addr, bytes(disk[offset : offset + length]))
                written += length
            elif kind == T_OUT:
                if offset + length > len(disk):
                    status = S_IOERR
                    break
                self.disk.write(offset, self._mem(addr, length))
            elif kind == T_GET_ID:
                ident = b"kprobesim".ljust(length, b"\0")[:length]
                self.machine.write_phys(addr, ident)
                written += length
            offset += length
        if kind not in (T_IN, T_OUT, T_FLUSH, T_GET_ID):
            status = S_UNSUPP
        self.machine.write_phys(status_addr, bytes([status]))
        return written
