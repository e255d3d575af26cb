"""Map types beyond arrays and hashes, with Linux's semantics.

- ``QUEUE`` / ``STACK`` (``kernel/bpf/queue_stack_maps.c``): no keys; programs push, pop and
  peek (``bpf_map_push_elem`` with ``BPF_EXIST`` drops the oldest element when full); user space
  looks up (peeks) and updates (pushes).
- ``LPM_TRIE`` (``kernel/bpf/lpm_trie.c``): keys are ``{u32 prefixlen; u8 data[]}``; a lookup
  finds the longest stored prefix that covers the key's first ``prefixlen`` bits.
- ``BLOOM_FILTER`` (``kernel/bpf/bloom_filter.c``): no keys; push sets ``nr_hash_funcs`` bits
  (``map_extra``, default 5) chosen by Linux's ``jhash``/``jhash2``, peek answers 0 ("maybe
  present") or -ENOENT ("certainly absent"). Linux seeds the hash randomly unless
  ``BPF_F_ZERO_SEED``; here the seed is always 0, so runs are reproducible.
- ``PROG_ARRAY``: slots holding programs for ``bpf_tail_call``; values are program fds.
- ``CGROUP_ARRAY``: slots for cgroup fds; the machine's kernel has no cgroups, so no fd is
  valid (updates give -EBADF) and every slot stays empty.
"""

from __future__ import annotations

import errno
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .maps import (
    _ACCESS_FLAGS,
    BPF_ANY,
    BPF_EXIST,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    KMALLOC_MAX_SIZE,
    BpfMap,
    MapError,
)

LPM_DATA_SIZE_MAX = 256
LPM_KEY_SIZE_MIN = 4 + 1
LPM_KEY_SIZE_MAX = 4 + LPM_DATA_SIZE_MAX
_LPM_NODE = 40  # struct lpm_trie_node before its data (bounds the value size, as Linux does)
BLOOM_DEFAULT_HASHES = 5
JHASH_INITVAL = 0xDEADBEEF
_M32 = 0xFFFFFFFF


def _bad(m: BpfMap, what: str, err: int = errno.EINVAL) -> MapError:
    return MapError(err, f"map {m.name!r}: {what} ({errno.errorcode[err]})")


# ----------------------------------------------------------------------------------------------
# Queue and stack
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class QueueStackMap(BpfMap):
    """``BPF_MAP_TYPE_QUEUE`` (FIFO) and ``BPF_MAP_TYPE_STACK`` (LIFO)."""

    def _validate(self) -> None:
        if self.key_size != 0:
            raise _bad(self, f"{self.type_name} key_size must be 0, not {self.key_size}")
        if self.value_size <= 0 or self.max_entries <= 0:
            raise _bad(self, f"{self.type_name} needs value_size and max_entries > 0")
        if self.value_size > KMALLOC_MAX_SIZE:
            raise _bad(self, f"value_size {self.value_size} is over {KMALLOC_MAX_SIZE}", errno.E2BIG)
        if self.flags & ~(BPF_F_NUMA_NODE | _ACCESS_FLAGS):
            raise _bad(self, f"bad flags {self.flags:#x}")
        self._charge(self.value_size * (self.max_entries + 1))
        self._elems: deque[bytes] = deque()  # oldest first

    @property
    def lifo(self) -> bool:
        return self.map_type == 23  # BPF_MAP_TYPE_STACK

    def push(self, value: bytes, flags: int = BPF_ANY) -> int:
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            return -errno.EINVAL
        if len(self._elems) >= self.max_entries:
            if not flags & BPF_EXIST:
                return -errno.E2BIG
            self._elems.popleft()  # the oldest goes, for a stack too
        self._elems.append(bytes(value[: self.value_size]).ljust(self.value_size, b"\0"))
        return 0

    def peek(self) -> bytes | None:
        if not self._elems:
            return None
        return self._elems[-1] if self.lifo else self._elems[0]

    def pop(self) -> bytes | None:
        if not self._elems:
            return None
        return self._elems.pop() if self.lifo else self._elems.popleft()

    # user-space view: BPF_MAP_LOOKUP_ELEM peeks, BPF_MAP_UPDATE_ELEM pushes
    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        v = self.peek()
        return None if v is None else bytearray(v)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return self.push(value, flags)

    def values(self) -> list[bytes]:
        """The elements in the order pops return them."""
        return list(reversed(self._elems)) if self.lifo else list(self._elems)

    def items(self) -> list[tuple[bytes, bytes | list[bytes]]]:
        """Position in pop order (a u32) and value, for the exit dump."""
        return [(struct.pack("<I", i), v) for i, v in enumerate(self.values())]

    def __len__(self) -> int:
        return len(self._elems)


# ----------------------------------------------------------------------------------------------
# Longest-prefix-match trie
# ----------------------------------------------------------------------------------------------


def _masked(data: bytes, bits: int) -> bytes:
    whole, rest = divmod(bits, 8)
    out = bytearray(data[:whole])
    if rest:
        out.append(data[whole] & (0xFF << (8 - rest)) & 0xFF)
    return bytes(out)


@dataclass(eq=False)
class LpmTrieMap(BpfMap):
    """``BPF_MAP_TYPE_LPM_TRIE``: elements keyed by prefix; lookups by longest match."""

    def _validate(self) -> None:
        allowed = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | _ACCESS_FLAGS
        if self.max_entries <= 0:
            raise _bad(self, "bad max_entries 0")
        if not self.flags & BPF_F_NO_PREALLOC:
            raise _bad(self, "an lpm_trie needs BPF_F_NO_PREALLOC in map_flags")
        if self.flags & ~allowed:
            raise _bad(self, f"bad flags {self.flags:#x}")
        if not LPM_KEY_SIZE_MIN <= self.key_size <= LPM_KEY_SIZE_MAX:
            raise _bad(self, f"lpm_trie key_size {self.key_size} is not in {LPM_KEY_SIZE_MIN}..{LPM_KEY_SIZE_MAX}")
        vmax = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - _LPM_NODE
        if not 1 <= self.value_size <= vmax:
            raise _bad(self, f"lpm_trie value_size {self.value_size} is not in 1..{vmax}")
        self.data_size = self.key_size - 4
        self.max_prefixlen = 8 * self.data_size
        # (prefixlen, masked prefix) -> (the key as given, value)
        self._elems: dict[tuple[int, bytes], tuple[bytes, bytearray]] = {}

    def _split(self, key: bytes) -> tuple[int, bytes]:
        return struct.unpack_from("<I", key)[0], bytes(key[4 : self.key_size])

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        if len(key) < self.key_size:
            return None
        plen, data = self._split(key)
        for bits in range(min(plen, self.max_prefixlen), -1, -1):
            hit = self._elems.get((bits, _masked(data, bits)))
            if hit is not None:
                return hit[1]
        return None

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        if flags > BPF_EXIST:
            return -errno.EINVAL
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return -errno.EINVAL
        ident = (plen, _masked(data, plen))
        old = self._elems.get(ident)
        if old is not None and flags == BPF_NOEXIST:
            return -errno.EEXIST
        if old is None and flags == BPF_EXIST:
            return -errno.ENOENT
        if old is None and len(self._elems) >= self.max_entries:
            return -errno.ENOSPC
        self._elems[ident] = (bytes(key[: self.key_size]), bytearray(value[: self.value_size]))
        return 0

    def delete(self, key: bytes) -> int:
        plen, data = self._split(key)
        if plen > self.max_prefixlen:
            return -errno.EINVAL
        return 0 if self._elems.pop((plen, _masked(data, plen)), None) is not None else -errno.ENOENT

    def keys(self) -> list[bytes]:
        return [k for k, _ in self._elems.values()]

    def lookup_percpu(self, key: bytes) -> list[bytearray] | None:
        plen, data = self._split(key)
        hit = self._elems.get((plen, _masked(data, plen)))
        return None if hit is None else [hit[1]]

    def elements(self) -> list[tuple[bytes, bytearray]]:
        """``(key, value)`` of every element (the value aliases the map's storage)."""
        return list(self._elems.values())


# ----------------------------------------------------------------------------------------------
# Bloom filter
# ----------------------------------------------------------------------------------------------


def _rol(v: int, s: int) -> int:
    return ((v << s) | (v >> (32 - s))) & _M32


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M32; a ^= _rol(c, 4); c = (c + b) & _M32  # noqa: E702
    b = (b - a) & _M32; b ^= _rol(a, 6); a = (a + c) & _M32  # noqa: E702
    c = (c - b) & _M32; c ^= _rol(b, 8); b = (b + a) & _M32  # noqa: E702
    a = (a - c) & _M32; a ^= _rol(c, 16); c = (c + b) & _M32  # noqa: E702
    b = (b - a) & _M32; b ^= _rol(a, 19); a = (a + c) & _M32  # noqa: E702
    c = (c - b) & _M32; c ^= _rol(b, 4); b = (b + a) & _M32  # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & _M32  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & _M32  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & _M32  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & _M32  # noqa: E702
    return c


def jhash(key: bytes, initval: int) -> int:
    """Bob Jenkins' lookup3 hash of bytes, as Linux's ``jhash()``."""
    n = len(key)
    a = b = c = (JHASH_INITVAL + n + initval) & _M32
    pos = 0
    while n > 12:
        x, y, z = struct.unpack_from("<III", key, pos)
        a, b, c = _mix((a + x) & _M32, (b + y) & _M32, (c + z) & _M32)
        pos, n = pos + 12, n - 12
    if n == 0:
        return c
    tail = key[pos:].ljust(12, b"\0")
    x, y, z = struct.unpack("<III", tail)
    return _final((a + x) & _M32, (b + y) & _M32, (c + z) & _M32)


def jhash2(words: tuple[int, ...], initval: int) -> int:
    """lookup3 of 32-bit words, as Linux's ``jhash2()``."""
    n = len(words)
    a = b = c = (JHASH_INITVAL + (n << 2) + initval) & _M32
    pos = 0
    while n > 3:
        a, b, c = _mix((a + words[pos]) & _M32, (b + words[pos + 1]) & _M32, (c + words[pos + 2]) & _M32)
        pos, n = pos + 3, n - 3
    if n == 0:
        return c
    rest = (*words[pos:], 0, 0)[:3]
    return _final((a + rest[0]) & _M32, (b + rest[1]) & _M32, (c + rest[2]) & _M32)


@dataclass(eq=False)
class BloomFilterMap(BpfMap):
    """``BPF_MAP_TYPE_BLOOM_FILTER``: ``map_extra``'s low 4 bits are the number of hashes."""

    map_extra: int = 0

    def _validate(self) -> None:
        if self.key_size != 0 or self.value_size <= 0 or self.max_entries <= 0:
            raise _bad(self, "a bloom_filter needs key_size 0, value_size and max_entries > 0")
        if self.flags & ~(BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | _ACCESS_FLAGS):
            raise _bad(self, f"bad flags {self.flags:#x}")
        if self.map_extra & ~0xF:
            raise _bad(self, f"bad map_extra {self.map_extra:#x} (the number of hashes is 1..15)")
        self.nr_hashes = self.map_extra & 0xF or BLOOM_DEFAULT_HASHES
        nr_bits = self.max_entries * self.nr_hashes // 5 * 7  # bits = entries * hashes / ln(2)
        if nr_bits > 1 << 31:
            nr_bits = 1 << 31
        elif nr_bits <= 64:
            nr_bits = 64
        else:
            nr_bits = 1 << (nr_bits - 1).bit_length()
        self.mask = nr_bits - 1
        self._charge(nr_bits // 8)
        self._bits: set[int] = set()  # the set bits (sparse: a big filter costs what it holds)
        self._words = self.value_size // 4 if self.value_size % 4 == 0 else 0

    def _hash(self, value: bytes, i: int) -> int:
        if self._words:
            h = jhash2(struct.unpack(f"<{self._words}I", value), i)
        else:
            h = jhash(value, i)
        return h & self.mask

    def push(self, value: bytes, flags: int = BPF_ANY) -> int:
        if flags != BPF_ANY:
            return -errno.EINVAL
        value = bytes(value[: self.value_size])
        self._bits.update(self._hash(value, i) for i in range(self.nr_hashes))
        return 0

    def contains(self, value: bytes) -> bool:
        """Peek: False means certainly absent, True maybe present."""
        value = bytes(value[: self.value_size])
        return all(self._hash(value, i) in self._bits for i in range(self.nr_hashes))

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        return None

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return self.push(value, flags)


# ----------------------------------------------------------------------------------------------
# Arrays of programs and of cgroups
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class FdArrayMap(BpfMap):
    """Common part of ``PROG_ARRAY`` and ``CGROUP_ARRAY``: u32 keys, u32 fd values."""

    def _validate(self) -> None:
        if self.key_size != 4 or self.value_size != 4:
            raise _bad(self, f"{self.type_name} needs key_size 4 and value_size 4")
        if self.max_entries <= 0:
            raise _bad(self, "bad max_entries 0")
        if self.flags & ~(BPF_F_NUMA_NODE | _ACCESS_FLAGS):
            raise _bad(self, f"bad flags {self.flags:#x}")
        self._charge(8 * self.max_entries)
        self.slots: dict[int, tuple[int, object]] = {}  # index -> (fd, what it refers to)
        #: ``fd -> object or None``: the loader's table of program fds.
        self.resolve_fd: Callable[[int], object | None] = lambda fd: None

    def _index(self, key: bytes) -> int | None:
        if len(key) != 4:
            return None
        i = struct.unpack("<I", key)[0]
        return i if i < self.max_entries else None

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        if flags > BPF_EXIST:
            return -errno.EINVAL
        i = self._index(key)
        if i is None:
            return -errno.E2BIG
        if flags == BPF_NOEXIST:
            return -errno.EEXIST  # every slot of an array exists
        fd = struct.unpack("<i", bytes(value[:4]))[0]
        target = self.resolve_fd(fd)
        if target is None:
            return -errno.EBADF
        self.slots[i] = (fd, target)
        return 0

    def delete(self, key: bytes) -> int:
        i = self._index(key)
        if i is None:
            return -errno.E2BIG
        return 0 if self.slots.pop(i, None) is not None else -errno.ENOENT

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        i = self._index(key)
        if i is None or i not in self.slots:
            return None
        return bytearray(struct.pack("<i", self.slots[i][0]))

    def keys(self) -> list[bytes]:
        return [struct.pack("<I", i) for i in sorted(self.slots)]

    def target(self, index: int) -> object | None:
        slot = self.slots.get(index)
        return None if slot is None else slot[1]


@dataclass(eq=False)
class ProgArrayMap(FdArrayMap):
    """``BPF_MAP_TYPE_PROG_ARRAY``: the programs ``bpf_tail_call`` jumps to."""


@dataclass(eq=False)
class CgroupArrayMap(FdArrayMap):
    """``BPF_MAP_TYPE_CGROUP_ARRAY``: the machine has no cgroups, so its slots stay empty."""


MAP_CLASSES: dict[int, type[BpfMap]] = {
    3: ProgArrayMap,
    8: CgroupArrayMap,
    11: LpmTrieMap,
    22: QueueStackMap,
    23: QueueStackMap,
    30: BloomFilterMap,
}
