"""An xv6 file system image (the on-disk format of xv6's ``kernel/fs.h``), written in Python.

Layout, one 1 KiB block per sector: boot block, superblock, log, inode blocks, free bitmap,
then data. Files go into the root directory in the order given; inode 1 is the root.
"""

from __future__ import annotations

import struct

BSIZE = 1024
FSSIZE = 2000  # blocks (param.h)
LOGSIZE = 30  # MAXOPBLOCKS * 3
NINODES = 200
NDIRECT = 12
NINDIRECT = BSIZE // 4
DINODE = struct.Struct("<hhhhI13I")  # type, major, minor, nlink, size, addrs[NDIRECT + 1]
IPB = BSIZE // DINODE.size
DIRENT = struct.Struct("<H14s")
T_DIR, T_FILE = 1, 2


class _Fs:
    def __init__(self) -> None:
        self.img = bytearray(FSSIZE * BSIZE)
        self.ninode_blocks = NINODES // IPB + 1
        nbitmap = FSSIZE // (BSIZE * 8) + 1
        self.inodestart = 2 + LOGSIZE
        self.bmapstart = self.inodestart + self.ninode_blocks
        self.next_block = self.bmapstart + nbitmap
        struct.pack_into(
            "<8I", self.img, BSIZE, 0x10203040, FSSIZE, FSSIZE - self.next_block, NINODES, LOGSIZE, 2,
            self.inodestart, self.bmapstart,
        )
        self.inodes: dict[int, list] = {}

    def alloc_block(self) -> int:
        self.next_block += 1
        return self.next_block - 1

    def new_inode(self, kind: int) -> int:
        inum = len(self.inodes) + 1
        self.inodes[inum] = [kind, 0, 0, 1, 0, [0] * (NDIRECT + 1)]
        return inum

    def append(self, inum: int, data: bytes) -> None:
        ino = self.inodes[inum]
        size, addrs = ino[4], ino[5]
        while data:
            index = size // BSIZE
            if index < NDIRECT:
                if not addrs[index]:
                    addrs[index] = self.alloc_block()
                block = addrs[index]
            else:
                if not addrs[NDIRECT]:
                    addrs[NDIRECT] = self.alloc_block()
                slot = addrs[NDIRECT] * BSIZE + 4 * (index - NDIRECT)
                block = struct.unpack_from("<I", self.img, slot)[0]
                if not block:
                    block = self.alloc_block()
                    struct.pack_into("<I", self.img, slot, block)
            offset = size % BSIZE
            chunk = data[: BSIZE - offset]
            start = block * BSIZE + offset
            self.img[start : start + len(chunk)] = chunk
            size += len(chunk)
            data = data[len(chunk) :]
        ino[4] = size

    def finish(self) -> bytes:
        for inum, (kind, major, minor, nlink, size, addrs) in self.inodes.items():
            at = (self.inodestart + inum // IPB) * BSIZE + (inum % IPB) * DINODE.size
            DINODE.pack_into(self.img, at, kind, major, minor, nlink, size, *addrs)
        bitmap = self.bmapstart * BSIZE
        for b in range(self.next_block):
            self.img[bitmap + b // 8] |= 1 << (b % 8)
        return bytes(self.img)


def make_fs(files: list[tuple[str, bytes]]) -> bytes:
    """The image of a root directory holding ``files`` (name, contents)."""
    fs = _Fs()
    root = fs.new_inode(T_DIR)
    fs.append(root, DIRENT.pack(root, b".") + DIRENT.pack(root, b".."))
    for name, data in files:
        inum = fs.new_inode(T_FILE)
        fs.append(root, DIRENT.pack(inum, name.encode()[:14]))
        fs.append(inum, data)
    ino = fs.inodes[root]
    ino[4] = (ino[4] // BSIZE + 1) * BSIZE  # the root directory's size rounded up a block, as mkfs does
    return fs.finish()
