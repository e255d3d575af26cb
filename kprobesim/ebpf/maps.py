"""eBPF maps with Linux semantics.

Every map is created with :func:`create_map`. Values live in ``bytearray`` objects that stay the
same object for the lifetime of an element, so the VM can map the buffer returned by
:meth:`BpfMap.lookup` as a memory region: program stores through the pointer update the map, and
overwriting an existing element through :meth:`BpfMap.update` copies into that same buffer.

Errors follow the kernel: operations return 0 or a negative errno; invalid map parameters raise
:class:`MapError` at creation time. Sizes are refused as Linux refuses them (E2BIG for a key or
value too large to copy, ENOMEM for a map whose up-front kernel memory cannot be had: more than
:data:`MAP_MEMORY_LIMIT`), at once. Storage is allocated lazily: an array element or a hash
element takes host memory when first touched, so a large map that fits costs what it holds.
"""

from __future__ import annotations

import errno
import struct
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

# enum bpf_map_type (include/uapi/linux/bpf.h)
BPF_MAP_TYPE_UNSPEC = 0
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_STACK_TRACE = 7
BPF_MAP_TYPE_CGROUP_ARRAY = 8
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_QUEUE = 22
BPF_MAP_TYPE_STACK = 23
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_BLOOM_FILTER = 30

MAP_TYPE_NAMES: dict[int, str] = {
    BPF_MAP_TYPE_UNSPEC: "unspec",
    BPF_MAP_TYPE_HASH: "hash",
    BPF_MAP_TYPE_ARRAY: "array",
    BPF_MAP_TYPE_PROG_ARRAY: "prog_array",
    BPF_MAP_TYPE_PERF_EVENT_ARRAY: "perf_event_array",
    BPF_MAP_TYPE_PERCPU_HASH: "percpu_hash",
    BPF_MAP_TYPE_PERCPU_ARRAY: "percpu_array",
    BPF_MAP_TYPE_STACK_TRACE: "stack_trace",
    BPF_MAP_TYPE_CGROUP_ARRAY: "cgroup_array",
    BPF_MAP_TYPE_LRU_HASH: "lru_hash",
    BPF_MAP_TYPE_LRU_PERCPU_HASH: "lru_percpu_hash",
    BPF_MAP_TYPE_LPM_TRIE: "lpm_trie",
    BPF_MAP_TYPE_ARRAY_OF_MAPS: "array_of_maps",
    BPF_MAP_TYPE_HASH_OF_MAPS: "hash_of_maps",
    BPF_MAP_TYPE_QUEUE: "queue",
    BPF_MAP_TYPE_STACK: "stack",
    BPF_MAP_TYPE_RINGBUF: "ringbuf",
    BPF_MAP_TYPE_BLOOM_FILTER: "bloom_filter",
}

# Update flags (bpf_map_update_elem)
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# Map creation flags
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12

_ACCESS_FLAGS = BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG

# bpf_get_stackid flags
BPF_F_SKIP_FIELD_MASK = 0xFF
BPF_F_USER_STACK = 1 << 8
BPF_F_FAST_STACK_CMP = 1 << 9
BPF_F_REUSE_STACKID = 1 << 10
PERF_MAX_STACK_DEPTH = 127

# bpf_perf_event_output flags
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK

# Ring buffer
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3
PAGE_SIZE = 4096
#: Page index of the data area inside ``struct bpf_ringbuf`` (header, consumer, producer pages).
RINGBUF_DATA_PGOFF = 3

#: The kernel-internal ENOTSUPP errno returned by unsupported map operations.
ENOTSUPP = 524

#: Linux's limits on what one map may ask for (x86_64/riscv64/loongarch64 defaults).
KMALLOC_MAX_SIZE = 1 << 22  # the largest kmalloc: bound of key + value sizes (E2BIG beyond)
PCPU_MIN_UNIT_SIZE = 32 << 10  # bound of a per-CPU value (E2BIG beyond)
MAX_BPF_STACK = 512  # bound of a hash key (programs build keys on the stack)
RINGBUF_MAX_DATA_SZ = ((1 << 24) - 3 - 1) * PAGE_SIZE  # 32-bit page offsets in record headers
#: The kernel memory one map may take at creation (arrays, hash buckets and preallocated
#: elements, ring buffers): beyond it the map is refused with ENOMEM, as a kernel whose vmalloc
#: cannot satisfy the request refuses it.
MAP_MEMORY_LIMIT = 1 << 30
_HTAB_ELEM = 48  # struct htab_elem before the key (hash maps' per-element overhead)


class MapError(ValueError):
    """Invalid map parameters or misuse; ``errno`` holds the kernel's (positive) errno."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


def _round8(n: int) -> int:
    return (n + 7) & ~7


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n < 1 << 40 else f"{n / (1 << 40):.0f} TiB"


def _key_bytes(key: bytes | bytearray | memoryview) -> bytes:
    return bytes(key)


@dataclass(eq=False)
class BpfMap:
    """Base class: attributes shared by every map type.

    ``btf`` / ``btf_key_type_id`` / ``btf_value_type_id`` are optional metadata used by printers.
    """

    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    name: str = ""
    ncpus: int = 1
    btf: object | None = field(default=None, repr=False)
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0

    def __post_init__(self) -> None:
        if self.ncpus < 1:
            raise MapError(errno.EINVAL, f"map {self.name!r}: ncpus must be >= 1")
        self._validate()

    # -- hooks -------------------------------------------------------------------------------
    def _validate(self) -> None:
        pass

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.map_type, str(self.map_type))

    @property
    def percpu(self) -> bool:
        return self.map_type in (
            BPF_MAP_TYPE_PERCPU_ARRAY,
            BPF_MAP_TYPE_PERCPU_HASH,
            BPF_MAP_TYPE_LRU_PERCPU_HASH,
        )

    @property
    def rdonly_prog(self) -> bool:
        """True if programs may only read the map (``.rodata``)."""
        return bool(self.flags & BPF_F_RDONLY_PROG)

    def _check_basic(self, key_size_ok: bool = True) -> None:
        if not key_size_ok:
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad key_size {self.key_size}")
        if self.value_size <= 0:
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad value_size {self.value_size}")
        if self.max_entries <= 0:
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad max_entries {self.max_entries}")
        if self.max_entries > 0xFFFFFFFF:
            raise MapError(errno.E2BIG, f"map {self.name!r}: max_entries {self.max_entries} is not a u32 (E2BIG)")
        if self.percpu and _round8(self.value_size) > PCPU_MIN_UNIT_SIZE:
            raise MapError(
                errno.E2BIG,
                f"map {self.name!r}: per-CPU value_size {self.value_size} is over {PCPU_MIN_UNIT_SIZE} bytes (E2BIG)",
            )

    def _charge(self, nbytes: int) -> None:
        """Refuse (ENOMEM) a map whose kernel memory at creation would be ``nbytes`` > the limit."""
        if nbytes > MAP_MEMORY_LIMIT:
            raise MapError(
                errno.ENOMEM,
                f"map {self.name!r}: {self.type_name} of {self.max_entries} entries needs {_mib(nbytes)} "
                f"of kernel memory at creation, more than the {_mib(MAP_MEMORY_LIMIT)} a map may take (ENOMEM)",
            )

    def _check_key(self, key: bytes) -> bool:
        return len(key) == self.key_size

    # -- generic API (overridden) --------------------------------------------------------------
    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        """Return the live value buffer for ``key`` (this CPU's slot for per-CPU maps)."""
        return None

    def lookup_percpu(self, key: bytes) -> list[bytearray] | None:
        """Return the live per-CPU value buffers (a one-element list for shared maps)."""
        v = self.lookup(key)
        return None if v is None else [v]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        """Insert or overwrite ``key`` (program-side semantics for per-CPU maps: one slot)."""
        return -errno.EINVAL

    def delete(self, key: bytes) -> int:
        return -errno.EINVAL

    def keys(self) -> list[bytes]:
        return []

    def items(self) -> list[tuple[bytes, bytes | list[bytes]]]:
        """User-side dump: ``(key, value)``, or ``(key, [value per CPU])`` for per-CPU maps."""
        out: list[tuple[bytes, bytes | list[bytes]]] = []
        for k in self.keys():
            vals = self.lookup_percpu(k)
            if vals is None:
                continue
            out.append((k, [bytes(v) for v in vals] if self.percpu else bytes(vals[0])))
        return out

    def get_next_key(self, key: bytes | None) -> bytes | None:
        """Linux ``BPF_MAP_GET_NEXT_KEY``: the first key if ``key`` is None or absent."""
        ks = self.keys()
        if key is None:
            return ks[0] if ks else None
        key = _key_bytes(key)
        try:
            i = ks.index(key)
        except ValueError:
            return ks[0] if ks else None
        return ks[i + 1] if i + 1 < len(ks) else None

    def nonzero_items(self) -> list[tuple[bytes, bytes | list[bytes]]]:
        """:meth:`items` without the entries whose every value is all zero bytes (cheap for big arrays)."""
        return [(k, v) for k, v in self.items() if any(any(x) for x in (v if isinstance(v, list) else [v]))]

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys())


# ----------------------------------------------------------------------------------------------
# Arrays
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ArrayMap(BpfMap):
    """``BPF_MAP_TYPE_ARRAY`` / ``BPF_MAP_TYPE_PERCPU_ARRAY``: preallocated, zero-filled."""

    def _validate(self) -> None:
        self._check_basic(self.key_size == 4)
        if self.flags & ~(_ACCESS_FLAGS | BPF_F_MMAPABLE | BPF_F_NUMA_NODE | BPF_F_PRESERVE_ELEMS
                          | BPF_F_INNER_MAP):
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad flags {self.flags:#x}")
        if self.percpu and self.flags & BPF_F_MMAPABLE:
            raise MapError(errno.EINVAL, f"map {self.name!r}: per-CPU arrays are not mmapable")
        if self.value_size > KMALLOC_MAX_SIZE:
            raise MapError(
                errno.E2BIG, f"map {self.name!r}: value_size {self.value_size} is over {KMALLOC_MAX_SIZE} bytes (E2BIG)"
            )
        elem = _round8(self.value_size)
        self._charge(self.max_entries * (8 + self.ncpus * elem if self.percpu else elem))
        # Elements are zero until touched: each is made on first access (and then kept, so a
        # pointer a program holds stays valid).
        self._values: dict[int, list[bytearray]] = {}

    def _slots(self, i: int) -> list[bytearray]:
        slots = self._values.get(i)
        if slots is None:
            slots = self._values[i] = [bytearray(self.value_size) for _ in range(self.ncpus if self.percpu else 1)]
        return slots

    def _index(self, key: bytes) -> int | None:
        if len(key) != 4:
            return None
        return struct.unpack("<I", key)[0]

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        i = self._index(_key_bytes(key))
        if i is None or i >= self.max_entries:
            return None
        if not self.percpu:
            return self._slots(i)[0]
        return self._slots(i)[cpu] if 0 <= cpu < self.ncpus else None

    def lookup_percpu(self, key: bytes) -> list[bytearray] | None:
        i = self._index(_key_bytes(key))
        if i is None or i >= self.max_entries:
            return None
        return self._slots(i)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        if flags > BPF_EXIST:  # BPF_F_LOCK needs a bpf_spin_lock in the value: unsupported
            return -errno.EINVAL
        key = _key_bytes(key)
        if len(key) != 4 or len(value) != self.value_size:
            return -errno.EINVAL
        i = self._index(key)
        assert i is not None
        if i >= self.max_entries:
            return -errno.E2BIG
        if flags == BPF_NOEXIST:
            return -errno.EEXIST
        if self.percpu and not 0 <= cpu < self.ncpus:
            return -errno.EINVAL
        slots = self._slots(i)
        slots[cpu if self.percpu else 0][:] = value
        return 0

    def update_percpu(self, key: bytes, values: Sequence[bytes], flags: int = BPF_ANY) -> int:
        """User-side update of every CPU's slot (``len(values) == ncpus``)."""
        if not self.percpu:
            return self.update(key, values[0], flags) if len(values) == 1 else -errno.EINVAL
        if len(values) != self.ncpus:
            return -errno.EINVAL
        for cpu, v in enumerate(values):
            rc = self.update(key, v, flags, cpu)
            if rc:
                return rc
        return 0

    def delete(self, key: bytes) -> int:
        return -errno.EINVAL

    def keys(self) -> list[bytes]:
        return [struct.pack("<I", i) for i in range(self.max_entries)]

    def items(self) -> list[tuple[bytes, bytes | list[bytes]]]:
        zero = bytes(self.value_size)
        out: list[tuple[bytes, bytes | list[bytes]]] = []
        for i in range(self.max_entries):
            slots = self._values.get(i)
            vals = [bytes(v) for v in slots] if slots is not None else [zero] * (self.ncpus if self.percpu else 1)
            out.append((struct.pack("<I", i), vals if self.percpu else vals[0]))
        return out

    def nonzero_items(self) -> list[tuple[bytes, bytes | list[bytes]]]:
        out: list[tuple[bytes, bytes | list[bytes]]] = []
        for i in sorted(self._values):
            vals = [bytes(v) for v in self._values[i]]
            if any(any(v) for v in vals):
                out.append((struct.pack("<I", i), vals if self.percpu else vals[0]))
        return out

    def get_next_key(self, key: bytes | None) -> bytes | None:
        if key is None:
            return struct.pack("<I", 0)
        i = self._index(_key_bytes(key))
        if i is None or i >= self.max_entries:
            return struct.pack("<I", 0)
        return struct.pack("<I", i + 1) if i + 1 < self.max_entries else None

    def __len__(self) -> int:
        return self.max_entries


# ----------------------------------------------------------------------------------------------
# Hash tables (plain, per-CPU, LRU)
# ----------------------------------------------------------------------------------------------


_LRU_TYPES = (BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH)


@dataclass(eq=False)
class HashMap(BpfMap):
    """Hash maps: ``HASH``, ``PERCPU_HASH``, ``LRU_HASH`` and ``LRU_PERCPU_HASH``.

    Iteration order is insertion order (deterministic). LRU maps evict the least recently used
    element (lookups and updates make an element most recent) instead of failing with -E2BIG.
    Overwriting an existing element copies into its existing buffer.
    """

    def _validate(self) -> None:
        self._check_basic(self.key_size > 0)
        if self.key_size > MAX_BPF_STACK:
            raise MapError(errno.E2BIG, f"map {self.name!r}: key_size {self.key_size} is over {MAX_BPF_STACK} (E2BIG)")
        if self.key_size + self.value_size >= KMALLOC_MAX_SIZE - _HTAB_ELEM:
            raise MapError(
                errno.E2BIG,
                f"map {self.name!r}: key_size + value_size {self.key_size + self.value_size} is over "
                f"{KMALLOC_MAX_SIZE - _HTAB_ELEM} bytes (E2BIG)",
            )
        allowed = _ACCESS_FLAGS | BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ZERO_SEED
        if self.lru:
            allowed = (allowed & ~BPF_F_NO_PREALLOC) | BPF_F_NO_COMMON_LRU
        if self.flags & ~allowed:
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad flags {self.flags:#x}")
        # Linux allocates the bucket array, and unless BPF_F_NO_PREALLOC every element, at
        # creation: that is what must fit. Elements here are made on insertion either way.
        elem = _HTAB_ELEM + _round8(self.key_size) + (8 if self.percpu else _round8(self.value_size))
        prealloc = not self.flags & BPF_F_NO_PREALLOC or self.lru
        per_elem = elem + (self.ncpus * _round8(self.value_size) if self.percpu else 0)
        self._charge(_pow2(self.max_entries) * 16 + (self.max_entries * per_elem if prealloc else 0))
        self._elems: OrderedDict[bytes, list[bytearray]] = OrderedDict()
        #: Number of elements evicted so far (LRU maps).
        self.evictions = 0

    @property
    def lru(self) -> bool:
        return self.map_type in _LRU_TYPES

    def _touch(self, key: bytes) -> None:
        if self.lru:
            self._elems.move_to_end(key)

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        if key.__class__ is not bytes:  # (a helper's lookup: already bytes, on every hit)
            key = _key_bytes(key)
        slots = self._elems.get(key)
        if slots is None:
            return None
        if self.map_type in _LRU_TYPES:
            self._elems.move_to_end(key)
        if self.percpu:
            return slots[cpu] if 0 <= cpu < self.ncpus else None
        return slots[0]

    def lookup_percpu(self, key: bytes) -> list[bytearray] | None:
        return self._elems.get(_key_bytes(key))

    def peek(self, key: bytes) -> list[bytearray] | None:
        """Like :meth:`lookup_percpu` (never refreshes LRU recency)."""
        return self._elems.get(_key_bytes(key))

    def _insert_check(self, key: bytes, flags: int) -> tuple[list[bytearray] | None, int]:
        op = flags
        if op > BPF_EXIST:  # BPF_F_LOCK needs a bpf_spin_lock in the value: unsupported
            return None, -errno.EINVAL
        if len(key) != self.key_size:
            return None, -errno.EINVAL
        slots = self._elems.get(key)
        if slots is not None and op == BPF_NOEXIST:
            return None, -errno.EEXIST
        if slots is None and op == BPF_EXIST:
            return None, -errno.ENOENT
        if slots is None and len(self._elems) >= self.max_entries:
            if not self.lru:
                return None, -errno.E2BIG
            self._elems.popitem(last=False)
            self.evictions += 1
        return slots, 0

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        key = _key_bytes(key)
        if len(value) != self.value_size:
            return -errno.EINVAL
        if self.percpu and not 0 <= cpu < self.ncpus:
            return -errno.EINVAL
        slots, rc = self._insert_check(key, flags)
        if rc:
            return rc
        if slots is None:
            n = self.ncpus if self.percpu else 1
            slots = [bytearray(self.value_size) for _ in range(n)]
            self._elems[key] = slots
        else:
            self._touch(key)
        slots[cpu if self.percpu else 0][:] = value
        return 0

    def update_percpu(self, key: bytes, values: Sequence[bytes], flags: int = BPF_ANY) -> int:
        """User-side update of every CPU's slot (``len(values) == ncpus``)."""
        if not self.percpu:
            return self.update(key, values[0], flags) if len(values) == 1 else -errno.EINVAL
        key = _key_bytes(key)
        if len(values) != self.ncpus or any(len(v) != self.value_size for v in values):
            return -errno.EINVAL
        slots, rc = self._insert_check(key, flags)
        if rc:
            return rc
        if slots is None:
            slots = [bytearray(self.value_size) for _ in range(self.ncpus)]
            self._elems[key] = slots
        else:
            self._touch(key)
        for s, v in zip(slots, values, strict=True):
            s[:] = v
        return 0

    def delete(self, key: bytes) -> int:
        key = _key_bytes(key)
        if len(key) != self.key_size:
            return -errno.EINVAL
        if self._elems.pop(key, None) is None:
            return -errno.ENOENT
        return 0

    def keys(self) -> list[bytes]:
        return list(self._elems)

    def lru_order(self) -> list[bytes]:
        """Keys from least to most recently used."""
        return list(self._elems)

    def __len__(self) -> int:
        return len(self._elems)


# ----------------------------------------------------------------------------------------------
# Ring buffer
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Reservation:
    pos: int
    size: int
    buf: bytearray


@dataclass(eq=False)
class RingBufMap(BpfMap):
    """``BPF_MAP_TYPE_RINGBUF`` with the kernel's record layout.

    ``data`` is the ring's data area (``max_entries`` bytes). Each record starts with an 8-byte
    header: ``u32 len`` (bit 31 busy, bit 30 discarded) and ``u32 pg_off``; records are 8-byte
    aligned and may wrap around. Positions (``producer_pos``, ``consumer_pos``) grow without
    bound like the kernel's and are masked into ``data``. A reservation returns its own buffer
    (the kernel maps the data area twice so records are contiguous; here the sample is copied into
    the ring on submit).
    """

    def _validate(self) -> None:
        size = self.max_entries
        if self.key_size or self.value_size:
            raise MapError(errno.EINVAL, f"map {self.name!r}: ringbuf key/value size must be 0")
        if size <= 0 or size & (size - 1) or size % PAGE_SIZE:
            raise MapError(
                errno.EINVAL,
                f"map {self.name!r}: ringbuf size {size} must be a power of 2 multiple of "
                f"{PAGE_SIZE}",
            )
        if self.flags & ~_ACCESS_FLAGS & ~BPF_F_NUMA_NODE:
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad flags {self.flags:#x}")
        if size > RINGBUF_MAX_DATA_SZ:
            raise MapError(errno.E2BIG, f"map {self.name!r}: ringbuf size {size} is over {RINGBUF_MAX_DATA_SZ} (E2BIG)")
        self._charge(size)
        self.data = bytearray(size)
        self.mask = size - 1
        self.producer_pos = 0
        self.consumer_pos = 0
        self._pending: dict[int, _Reservation] = {}
        #: Reservations/outputs that failed for lack of space.
        self.dropped = 0

    def _write(self, pos: int, blob: bytes) -> None:
        off = pos & self.mask
        first = min(len(blob), len(self.data) - off)
        self.data[off : off + first] = blob[:first]
        if first < len(blob):
            self.data[: len(blob) - first] = blob[first:]

    def _read(self, pos: int, n: int) -> bytes:
        off = pos & self.mask
        first = min(n, len(self.data) - off)
        out = bytes(self.data[off : off + first])
        if first < n:
            out += bytes(self.data[: n - first])
        return out

    def _hdr_len(self, pos: int) -> int:
        return struct.unpack("<I", self._read(pos, 4))[0]

    def reserve(self, size: int, flags: int = 0) -> tuple[int, bytearray] | None:
        """``bpf_ringbuf_reserve``: ``(record position, sample buffer)`` or None if no room."""
        if flags or size < 0 or size > self.mask + 1:
            return None
        total = _round8(size + BPF_RINGBUF_HDR_SZ)
        if total > len(self.data) or size >= BPF_RINGBUF_DISCARD_BIT:
            self.dropped += 1
            return None
        pos = self.producer_pos
        if pos + total - self.consumer_pos > self.mask:
            self.dropped += 1
            return None
        pg_off = RINGBUF_DATA_PGOFF + ((pos & self.mask) >> 12)
        self._write(pos, struct.pack("<II", size | BPF_RINGBUF_BUSY_BIT, pg_off))
        self.producer_pos = pos + total
        buf = bytearray(size)
        self._pending[pos] = _Reservation(pos, size, buf)
        return pos, buf

    def _commit(self, pos: int, discard: bool) -> None:
        rec = self._pending.pop(pos, None)
        if rec is None:
            raise MapError(errno.EINVAL, f"ringbuf {self.name!r}: no reserved record at {pos}")
        if not discard:
            self._write(pos + BPF_RINGBUF_HDR_SZ, bytes(rec.buf))
        new_len = rec.size | (BPF_RINGBUF_DISCARD_BIT if discard else 0)
        self._write(pos, struct.pack("<I", new_len))

    def submit(self, pos: int, flags: int = 0) -> None:
        """``bpf_ringbuf_submit`` of the record reserved at ``pos``."""
        self._commit(pos, False)

    def discard(self, pos: int, flags: int = 0) -> None:
        """``bpf_ringbuf_discard`` of the record reserved at ``pos``."""
        self._commit(pos, True)

    def output(self, data: bytes, flags: int = 0) -> int:
        """``bpf_ringbuf_output``: 0, -EINVAL on bad flags, -EAGAIN when there is no room."""
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -errno.EINVAL
        r = self.reserve(len(data))
        if r is None:
            return -errno.EAGAIN
        pos, buf = r
        buf[:] = data
        self.submit(pos)
        return 0

    def query(self, flags: int) -> int:
        """``bpf_ringbuf_query``."""
        if flags == BPF_RB_AVAIL_DATA:
            return self.producer_pos - self.consumer_pos
        if flags == BPF_RB_RING_SIZE:
            return len(self.data)
        if flags == BPF_RB_CONS_POS:
            return self.consumer_pos
        if flags == BPF_RB_PROD_POS:
            return self.producer_pos
        return 0

    def drain(self, limit: int | None = None) -> list[bytes]:
        """Consume committed records in order (stops at a busy one); discarded ones are skipped."""
        out: list[bytes] = []
        while self.consumer_pos < self.producer_pos:
            hdr = self._hdr_len(self.consumer_pos)
            if hdr & BPF_RINGBUF_BUSY_BIT:
                break
            size = hdr & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
            if not hdr & BPF_RINGBUF_DISCARD_BIT:
                if limit is not None and len(out) >= limit:
                    break
                out.append(self._read(self.consumer_pos + BPF_RINGBUF_HDR_SZ, size))
            self.consumer_pos += _round8(size + BPF_RINGBUF_HDR_SZ)
        return out

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        return None

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return -ENOTSUPP

    def delete(self, key: bytes) -> int:
        return -ENOTSUPP


# ----------------------------------------------------------------------------------------------
# Perf event array
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class PerfEventArrayMap(BpfMap):
    """``BPF_MAP_TYPE_PERF_EVENT_ARRAY``: one unbounded record queue per CPU slot.

    Records keep the exact bytes written (the kernel's u64 padding of raw samples is not added).
    """

    def _validate(self) -> None:
        if self.key_size != 4 or self.value_size != 4:
            raise MapError(errno.EINVAL, f"map {self.name!r}: perf_event_array needs 4/4 sizes")
        if self.max_entries == 0:
            self.max_entries = self.ncpus
        if self.max_entries < 0:
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad max_entries")
        self._charge(self.max_entries * 8)  # one pointer a slot
        self._records: list[tuple[int, bytes]] = []
        self.lost = 0

    def output(self, cpu: int, data: bytes, flags: int = BPF_F_CURRENT_CPU) -> int:
        """``bpf_perf_event_output`` from ``cpu``: 0, -EINVAL (flags) or -E2BIG (index)."""
        if flags & ~BPF_F_INDEX_MASK:
            return -errno.EINVAL
        index = flags & BPF_F_INDEX_MASK
        if index == BPF_F_CURRENT_CPU:
            index = cpu
        if index >= self.max_entries:
            return -errno.E2BIG
        self._records.append((index, bytes(data)))
        return 0

    def drain_records(self) -> list[tuple[int, bytes]]:
        """Consume all records as ``(cpu, data)`` in output order."""
        out, self._records = self._records, []
        return out

    def drain(self) -> list[bytes]:
        """Consume all records in output order."""
        return [d for _, d in self.drain_records()]

    def drain_cpu(self, cpu: int) -> list[bytes]:
        """Consume the records of one CPU's buffer."""
        mine = [d for c, d in self._records if c == cpu]
        self._records = [(c, d) for c, d in self._records if c != cpu]
        return mine

    def pending(self) -> int:
        return len(self._records)

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        return None


# ----------------------------------------------------------------------------------------------
# Stack traces
# ----------------------------------------------------------------------------------------------


def _rol32(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def jhash2(words: Sequence[int], initval: int = 0) -> int:
    """Linux's ``jhash2`` (Bob Jenkins' lookup3 over u32 words)."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + (len(words) << 2) + initval) & m
    i, n = 0, len(words)
    while n > 3:
        a = (a + words[i]) & m
        b = (b + words[i + 1]) & m
        c = (c + words[i + 2]) & m
        a = (a - c) & m; a ^= _rol32(c, 4); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rol32(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rol32(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= _rol32(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= _rol32(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= _rol32(b, 4); b = (b + a) & m  # noqa: E702
        i += 3
        n -= 3
    if n == 0:
        return c
    if n == 3:
        c = (c + words[i + 2]) & m
    if n >= 2:
        b = (b + words[i + 1]) & m
    a = (a + words[i]) & m
    c ^= b; c = (c - _rol32(b, 14)) & m  # noqa: E702
    a ^= c; a = (a - _rol32(c, 11)) & m  # noqa: E702
    b ^= a; b = (b - _rol32(a, 25)) & m  # noqa: E702
    c ^= b; c = (c - _rol32(b, 16)) & m  # noqa: E702
    a ^= c; a = (a - _rol32(c, 4)) & m  # noqa: E702
    b ^= a; b = (b - _rol32(a, 14)) & m  # noqa: E702
    c ^= b; c = (c - _rol32(b, 24)) & m  # noqa: E702
    return c


@dataclass(eq=False)
class StackTraceMap(BpfMap):
    """``BPF_MAP_TYPE_STACK_TRACE``: stack id = ``jhash2(ips) & (n_buckets - 1)``.

    ``n_buckets`` is ``max_entries`` rounded up to a power of two, as in Linux. Values are
    ``value_size // 8`` u64 ips, zero-padded.
    """

    def _validate(self) -> None:
        self._check_basic(self.key_size == 4)
        if self.value_size % 8 or self.value_size // 8 > PERF_MAX_STACK_DEPTH:
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad stack value_size")
        if self.flags & ~(_ACCESS_FLAGS | BPF_F_NUMA_NODE | BPF_F_STACK_BUILD_ID):
            raise MapError(errno.EINVAL, f"map {self.name!r}: bad flags {self.flags:#x}")
        if self.flags & BPF_F_STACK_BUILD_ID:
            raise MapError(errno.EINVAL, f"map {self.name!r}: build-id stacks are not supported")
        if self.max_entries > 1 << 31:
            raise MapError(errno.E2BIG, f"map {self.name!r}: max_entries {self.max_entries} is over 2^31 (E2BIG)")
        self.n_buckets = _pow2(self.max_entries)
        self._charge(self.n_buckets * 8 + self.max_entries * (16 + self.value_size))  # buckets, preallocated
        self._buckets: dict[int, tuple[tuple[int, ...], bytearray]] = {}

    def get_stackid(self, ips: Sequence[int], flags: int = 0) -> int:
        """``bpf_get_stackid`` for an already captured stack (innermost first)."""
        if flags & ~(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP
                     | BPF_F_REUSE_STACKID):
            return -errno.EINVAL
        skip = flags & BPF_F_SKIP_FIELD_MASK
        if len(ips) <= skip:
            return -errno.EFAULT
        trace = tuple(ip & 0xFFFFFFFFFFFFFFFF for ip in ips[skip:][: self.value_size // 8])
        words: list[int] = []
        for ip in trace:
            words.extend((ip & 0xFFFFFFFF, ip >> 32))
        sid = jhash2(words) & (self.n_buckets - 1)
        old = self._buckets.get(sid)
        if old is not None and old[0] == trace:
            return sid
        if old is not None and not flags & BPF_F_REUSE_STACKID:
            return -errno.EEXIST
        value = bytearray(self.value_size)
        struct.pack_into(f"<{len(trace)}Q", value, 0, *trace)
        self._buckets[sid] = (trace, value)
        return sid

    def lookup(self, key: bytes, cpu: int = 0) -> bytearray | None:
        key = _key_bytes(key)
        if len(key) != 4:
            return None
        b = self._buckets.get(struct.unpack("<I", key)[0])
        return None if b is None else b[1]

    def stack(self, stack_id: int) -> list[int] | None:
        """The ips stored under ``stack_id``."""
        b = self._buckets.get(stack_id)
        return None if b is None else list(b[0])

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY, cpu: int = 0) -> int:
        return -errno.EINVAL

    def delete(self, key: bytes) -> int:
        key = _key_bytes(key)
        if len(key) != 4:
            return -errno.EINVAL
        sid = struct.unpack("<I", key)[0]
        if sid >= self.n_buckets:
            return -errno.EINVAL
        if self._buckets.pop(sid, None) is None:
            return -errno.ENOENT
        return 0

    def keys(self) -> list[bytes]:
        return [struct.pack("<I", k) for k in sorted(self._buckets)]


_MAP_CLASSES: dict[int, type[BpfMap]] = {
    BPF_MAP_TYPE_ARRAY: ArrayMap,
    BPF_MAP_TYPE_PERCPU_ARRAY: ArrayMap,
    BPF_MAP_TYPE_HASH: HashMap,
    BPF_MAP_TYPE_PERCPU_HASH: HashMap,
    BPF_MAP_TYPE_LRU_HASH: HashMap,
    BPF_MAP_TYPE_LRU_PERCPU_HASH: HashMap,
    BPF_MAP_TYPE_RINGBUF: RingBufMap,
    BPF_MAP_TYPE_PERF_EVENT_ARRAY: PerfEventArrayMap,
    BPF_MAP_TYPE_STACK_TRACE: StackTraceMap,
}


def create_map(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    flags: int = 0,
    name: str = "",
    ncpus: int = 1,
    map_extra: int = 0,
) -> BpfMap:
    """Create a map like ``BPF_MAP_CREATE``; raises :class:`MapError` on invalid parameters.
    ``map_extra``: the bloom filter's number of hashes (0 elsewhere, as Linux requires)."""
    from .maps_extra import MAP_CLASSES, BloomFilterMap

    cls = _MAP_CLASSES.get(map_type) or MAP_CLASSES.get(map_type)
    if cls is None:
        kind = MAP_TYPE_NAMES.get(map_type, f"type {map_type}")
        raise MapError(errno.EINVAL, f"map {name!r}: unsupported map type {kind}")
    if cls is BloomFilterMap:
        return BloomFilterMap(map_type, key_size, value_size, max_entries, flags, name, ncpus, map_extra=map_extra)
    if map_extra:
        raise MapError(errno.EINVAL, f"map {name!r}: map_extra is only for bloom filters (EINVAL)")
    return cls(map_type, key_size, value_size, max_entries, flags, name, ncpus)
