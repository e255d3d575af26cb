"""Map semantics against Linux's (kernel/bpf/{arraymap,hashtab,ringbuf,stackmap}.c)."""

from __future__ import annotations

import errno
import struct

import pytest

from kprobesim.ebpf import maps as M
from kprobesim.ebpf.histogram import (
    bucket_label,
    format_log2_hist,
    format_log2_hist_map,
    format_map,
    log2_hist_counts,
)
from kprobesim.ebpf.maps import MapError, create_map


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


# ----------------------------------------------------------------------------------------------
# creation


@pytest.mark.parametrize(
    "args",
    [
        (M.BPF_MAP_TYPE_ARRAY, 8, 8, 4),  # array key must be 4 bytes
        (M.BPF_MAP_TYPE_ARRAY, 4, 0, 4),
        (M.BPF_MAP_TYPE_ARRAY, 4, 8, 0),
        (M.BPF_MAP_TYPE_HASH, 0, 8, 4),
        (M.BPF_MAP_TYPE_HASH, 4, 0, 4),
        (M.BPF_MAP_TYPE_HASH, 4, 8, 0),
        (M.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096 * 3),  # not a power of 2
        (M.BPF_MAP_TYPE_RINGBUF, 0, 0, 2048),  # not a page multiple
        (M.BPF_MAP_TYPE_RINGBUF, 4, 0, 4096),  # ringbuf has no keys
        (M.BPF_MAP_TYPE_STACK_TRACE, 4, 12, 16),  # ips are u64
        (M.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 128, 16),  # deeper than PERF_MAX_STACK_DEPTH
        (M.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 8, 2),
        (M.BPF_MAP_TYPE_LPM_TRIE, 8, 8, 4),  # unsupported type
        (999, 4, 4, 4),
    ],
)
def test_create_rejects_bad_parameters(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(MapError) as ei:
        create_map(*args, name="bad")
    assert ei.value.errno == errno.EINVAL


def test_create_flags_and_ncpus() -> None:
    with pytest.raises(MapError):
        create_map(M.BPF_MAP_TYPE_HASH, 4, 4, 4, flags=1 << 20)
    with pytest.raises(MapError):  # LRU maps are always preallocated
        create_map(M.BPF_MAP_TYPE_LRU_HASH, 4, 4, 4, flags=M.BPF_F_NO_PREALLOC)
    with pytest.raises(MapError):
        create_map(M.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 4, flags=M.BPF_F_MMAPABLE, ncpus=2)
    with pytest.raises(MapError):
        create_map(M.BPF_MAP_TYPE_ARRAY, 4, 4, 4, ncpus=0)
    m = create_map(M.BPF_MAP_TYPE_ARRAY, 4, 4, 1, flags=M.BPF_F_RDONLY_PROG | M.BPF_F_MMAPABLE,
                   name=".rodata")
    assert m.rdonly_prog and m.type_name == "array" and m.name == ".rodata"
    h = create_map(M.BPF_MAP_TYPE_HASH, 4, 4, 4, flags=M.BPF_F_NO_PREALLOC)
    assert not h.rdonly_prog and len(h) == 0 and bool(h)
    # maps are distinct objects usable as dict keys
    assert len({m: 1, h: 2}) == 2


def test_type_ids_match_linux() -> None:
    assert (M.BPF_MAP_TYPE_HASH, M.BPF_MAP_TYPE_ARRAY, M.BPF_MAP_TYPE_PERF_EVENT_ARRAY,
            M.BPF_MAP_TYPE_PERCPU_HASH, M.BPF_MAP_TYPE_PERCPU_ARRAY, M.BPF_MAP_TYPE_STACK_TRACE,
            M.BPF_MAP_TYPE_LRU_HASH, M.BPF_MAP_TYPE_LRU_PERCPU_HASH,
            M.BPF_MAP_TYPE_RINGBUF) == (1, 2, 4, 5, 6, 7, 9, 10, 27)


# ----------------------------------------------------------------------------------------------
# arrays


def test_array_basics() -> None:
    m = create_map(M.BPF_MAP_TYPE_ARRAY, 4, 8, 4, name="a")
    assert len(m) == 4 and m.keys() == [u32(i) for i in range(4)]
    v = m.lookup(u32(2))
    assert v == bytearray(8)
    assert m.lookup(u32(4)) is None and m.lookup(u32(0xFFFFFFFF)) is None
    # the buffer is live: program stores show up in the map and survive updates
    v[:] = u64(41)
    assert m.items()[2] == (u32(2), u64(41))
    assert m.update(u32(2), u64(42), M.BPF_ANY) == 0
    assert m.lookup(u32(2)) is v and v == u64(42)
    assert m.update(u32(2), u64(43), M.BPF_EXIST) == 0 and v == u64(43)


def test_array_errors() -> None:
    m = create_map(M.BPF_MAP_TYPE_ARRAY, 4, 8, 4)
    assert m.update(u32(0), u64(1), M.BPF_NOEXIST) == -errno.EEXIST
    assert m.update(u32(4), u64(1), M.BPF_ANY) == -errno.E2BIG
    assert m.update(u32(0), u64(1), 3) == -errno.EINVAL
    assert m.update(u32(0), u64(1), M.BPF_F_LOCK) == -errno.EINVAL  # no bpf_spin_lock
    assert m.update(u32(0), b"\0" * 4, M.BPF_ANY) == -errno.EINVAL
    assert m.update(b"\0" * 8, u64(1), M.BPF_ANY) == -errno.EINVAL
    assert m.delete(u32(0)) == -errno.EINVAL
    # flags are checked before the index, the index before NOEXIST (arraymap.c order)
    assert m.update(u32(9), u64(1), 7) == -errno.EINVAL
    assert m.update(u32(9), u64(1), M.BPF_NOEXIST) == -errno.E2BIG


def test_array_get_next_key() -> None:
    m = create_map(M.BPF_MAP_TYPE_ARRAY, 4, 4, 3)
    assert m.get_next_key(None) == u32(0)
    assert m.get_next_key(u32(0)) == u32(1)
    assert m.get_next_key(u32(2)) is None
    assert m.get_next_key(u32(77)) == u32(0)


def test_percpu_array() -> None:
    m = create_map(M.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 2, ncpus=3)
    assert m.percpu
    assert m.update(u32(1), u64(5), M.BPF_ANY, cpu=1) == 0
    assert m.lookup(u32(1), cpu=0) == u64(0)
    assert m.lookup(u32(1), cpu=1) == u64(5)
    slot2 = m.lookup(u32(1), cpu=2)
    slot2[:] = u64(7)
    assert m.items() == [(u32(0), [u64(0)] * 3), (u32(1), [u64(0), u64(5), u64(7)])]
    assert m.update_percpu(u32(0), [u64(1), u64(2), u64(3)]) == 0
    assert [bytes(b) for b in m.lookup_percpu(u32(0))] == [u64(1), u64(2), u64(3)]
    assert m.update_percpu(u32(0), [u64(1)]) == -errno.EINVAL
    assert m.update(u32(0), u64(1), M.BPF_ANY, cpu=3) == -errno.EINVAL


# ----------------------------------------------------------------------------------------------
# hash maps


def test_hash_flags_and_errnos() -> None:
    m = create_map(M.BPF_MAP_TYPE_HASH, 4, 8, 2, name="h")
    assert m.lookup(u32(1)) is None
    assert m.update(u32(1), u64(10), M.BPF_EXIST) == -errno.ENOENT
    assert m.update(u32(1), u64(10), M.BPF_NOEXIST) == 0
    assert m.update(u32(1), u64(11), M.BPF_NOEXIST) == -errno.EEXIST
    assert m.update(u32(1), u64(12), M.BPF_EXIST) == 0
    assert m.lookup(u32(1)) == u64(12)
    assert m.update(u32(2), u64(20), M.BPF_ANY) == 0
    assert m.update(u32(3), u64(30), M.BPF_ANY) == -errno.E2BIG  # full
    assert m.update(u32(2), u64(21), M.BPF_ANY) == 0  # overwrite works when full
    assert m.update(u32(3), u64(30), 4) == -errno.EINVAL
    assert m.update(u32(3), u64(30), 8) == -errno.EINVAL
    assert m.update(b"\0" * 3, u64(30), M.BPF_ANY) == -errno.EINVAL
    assert m.update(u32(3), b"\0", M.BPF_ANY) == -errno.EINVAL
    assert m.delete(u32(1)) == 0
    assert m.delete(u32(1)) == -errno.ENOENT
    assert m.delete(b"\0") == -errno.EINVAL
    assert m.update(u32(3), u64(30), M.BPF_NOEXIST) == 0  # room again
    assert dict(m.items()) == {u32(2): u64(21), u32(3): u64(30)}
    assert len(m) == 2


def test_hash_live_buffers() -> None:
    m = create_map(M.BPF_MAP_TYPE_HASH, 8, 16, 8)
    assert m.update(u64(1), bytes(16)) == 0
    v = m.lookup(u64(1))
    v[0:8] = u64(99)  # a program store through the looked-up pointer
    assert m.lookup(u64(1)) is v and m.items() == [(u64(1), u64(99) + bytes(8))]
    assert m.update(u64(1), b"\x01" * 16) == 0
    assert v == b"\x01" * 16  # overwrite copies into the same element
    assert m.delete(u64(1)) == 0
    assert m.update(u64(1), bytes(16)) == 0
    assert m.lookup(u64(1)) is not v  # a new element


def test_hash_get_next_key() -> None:
    m = create_map(M.BPF_MAP_TYPE_HASH, 4, 4, 8)
    for k in (5, 3, 9):
        m.update(u32(k), u32(0))
    seen, k = [], m.get_next_key(None)
    while k is not None:
        seen.append(k)
        k = m.get_next_key(k)
    assert sorted(seen) == [u32(3), u32(5), u32(9)]
    assert m.get_next_key(u32(1000)) == seen[0]  # unknown key -> first key


def test_percpu_hash() -> None:
    m = create_map(M.BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 4, ncpus=2)
    assert m.update(u32(1), u64(5), M.BPF_ANY, cpu=1) == 0
    assert m.lookup(u32(1), cpu=0) == u64(0)  # other CPUs start zeroed
    assert m.lookup(u32(1), cpu=1) == u64(5)
    assert m.update(u32(1), u64(6), M.BPF_EXIST, cpu=0) == 0
    assert m.items() == [(u32(1), [u64(6), u64(5)])]
    assert m.update_percpu(u32(2), [u64(1), u64(2)], M.BPF_NOEXIST) == 0
    assert m.update_percpu(u32(2), [u64(1), u64(2)], M.BPF_NOEXIST) == -errno.EEXIST
    assert m.update_percpu(u32(3), [u64(1)]) == -errno.EINVAL
    assert m.update(u32(1), u64(6), M.BPF_ANY, cpu=2) == -errno.EINVAL


def test_lru_eviction_order() -> None:
    m = create_map(M.BPF_MAP_TYPE_LRU_HASH, 4, 4, 3, name="lru")
    for k in (1, 2, 3):
        assert m.update(u32(k), u32(k * 10)) == 0
    assert m.lookup(u32(1)) is not None  # 1 becomes most recent: order 2, 3, 1
    assert m.update(u32(4), u32(40)) == 0  # full: evicts 2, never -E2BIG
    assert sorted(m.keys()) == [u32(1), u32(3), u32(4)]
    assert m.lru_order() == [u32(3), u32(1), u32(4)]
    assert m.update(u32(3), u32(31), M.BPF_EXIST) == 0  # updates refresh too: 1, 4, 3
    assert m.update(u32(5), u32(50)) == 0  # evicts 1
    assert m.lru_order() == [u32(4), u32(3), u32(5)]
    assert m.evictions == 2
    # flag errors win over eviction
    assert m.update(u32(6), u32(0), M.BPF_EXIST) == -errno.ENOENT
    assert m.update(u32(5), u32(0), M.BPF_NOEXIST) == -errno.EEXIST
    assert m.lru_order() == [u32(4), u32(3), u32(5)]
    assert m.delete(u32(4)) == 0
    assert m.update(u32(7), u32(0)) == 0 and m.evictions == 2  # free slot, no eviction
    # items()/keys() (user-side dumps) do not change recency
    m.items()
    assert m.lru_order() == [u32(3), u32(5), u32(7)]


def test_lru_is_deterministic() -> None:
    def run() -> list[bytes]:
        m = create_map(M.BPF_MAP_TYPE_LRU_HASH, 4, 4, 8)
        for i in range(100):
            m.update(u32((i * 7919) % 23), u32(i))
            m.lookup(u32((i * 31) % 23))
        return m.lru_order()

    assert run() == run()


def test_lru_percpu_hash() -> None:
    m = create_map(M.BPF_MAP_TYPE_LRU_PERCPU_HASH, 4, 4, 2, ncpus=2)
    assert m.percpu and m.lru
    m.update(u32(1), u32(1), cpu=1)
    m.update(u32(2), u32(2), cpu=0)
    m.update(u32(3), u32(3), cpu=0)
    assert m.keys() == [u32(2), u32(3)]
    assert m.items() == [(u32(2), [u32(2), u32(0)]), (u32(3), [u32(3), u32(0)])]


# ----------------------------------------------------------------------------------------------
# ring buffer


def _hdr(rb: M.RingBufMap, pos: int) -> tuple[int, int]:
    off = pos & rb.mask
    return struct.unpack_from("<II", rb.data, off)


def test_ringbuf_layout() -> None:
    rb = create_map(M.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096 * 2, name="rb")
    assert isinstance(rb, M.RingBufMap)
    r = rb.reserve(5)
    assert r is not None
    pos, buf = r
    assert pos == 0 and len(buf) == 5
    assert _hdr(rb, 0) == (5 | M.BPF_RINGBUF_BUSY_BIT, M.RINGBUF_DATA_PGOFF)
    assert rb.producer_pos == 16  # 8-byte header + 5 bytes rounded up to 8
    buf[:] = b"hello"
    rb.submit(pos)
    assert _hdr(rb, 0) == (5, M.RINGBUF_DATA_PGOFF)
    assert bytes(rb.data[8:13]) == b"hello"
    assert rb.query(M.BPF_RB_AVAIL_DATA) == 16
    assert rb.query(M.BPF_RB_RING_SIZE) == 8192
    assert rb.output(b"x" * 8, M.BPF_RB_NO_WAKEUP) == 0
    assert rb.query(M.BPF_RB_PROD_POS) == 32
    assert rb.drain() == [b"hello", b"x" * 8]
    assert rb.query(M.BPF_RB_CONS_POS) == 32 and rb.query(M.BPF_RB_AVAIL_DATA) == 0


def test_ringbuf_busy_and_discard() -> None:
    rb = create_map(M.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
    a = rb.reserve(8)
    b = rb.reserve(3)
    assert a and b
    b[1][:] = b"abc"
    rb.submit(b[0])
    assert rb.drain() == []  # the consumer stops at the busy record a
    c = rb.reserve(4)
    assert c
    rb.discard(c[0])
    assert _hdr(rb, c[0])[0] == 4 | M.BPF_RINGBUF_DISCARD_BIT
    a[1][:] = b"A" * 8
    rb.submit(a[0])
    assert rb.drain() == [b"A" * 8, b"abc"]  # the discarded record is skipped
    assert rb.consumer_pos == rb.producer_pos
    with pytest.raises(MapError):
        rb.submit(a[0])  # already committed


def test_ringbuf_full() -> None:
    rb = create_map(M.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
    assert rb.reserve(4096 - 8) is None  # a record can never fill the whole ring
    assert rb.reserve(5000) is None
    assert rb.reserve(8, flags=1) is None
    assert rb.output(b"\0" * (4096 - 16)) == 0  # 4088 bytes used: the largest that fits
    assert rb.output(b"") == -errno.EAGAIN
    assert rb.reserve(0) is None
    assert rb.dropped == 3
    assert rb.output(b"x", flags=4) == -errno.EINVAL
    assert len(rb.drain()) == 1
    assert rb.output(b"y") == 0


def test_ringbuf_wraps() -> None:
    rb = create_map(M.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
    assert rb.output(b"a" * 4000) == 0
    assert rb.drain() == [b"a" * 4000]
    pos = rb.producer_pos
    assert pos == 4008
    payload = bytes(range(200))
    assert rb.output(payload) == 0  # header at 4008, data wraps past 4096
    assert _hdr(rb, pos) == (200, M.RINGBUF_DATA_PGOFF)
    assert bytes(rb.data[4016:4096]) == payload[:80] and bytes(rb.data[:120]) == payload[80:]
    assert rb.drain() == [payload]
    big = create_map(M.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096 * 4)
    big.output(b"z" * 9000)
    r = big.reserve(16)
    assert r and _hdr(big, r[0])[1] == M.RINGBUF_DATA_PGOFF + 2  # page of the header


def test_ringbuf_drain_limit() -> None:
    rb = create_map(M.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)
    for i in range(5):
        rb.output(bytes([i]))
    assert rb.drain(limit=2) == [b"\0", b"\1"]
    assert rb.drain() == [b"\2", b"\3", b"\4"]
    assert rb.lookup(b"") is None and rb.update(b"", b"") == -M.ENOTSUPP


# ----------------------------------------------------------------------------------------------
# perf event array


def test_perf_event_array() -> None:
    pe = create_map(M.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 0, ncpus=2)
    assert isinstance(pe, M.PerfEventArrayMap)
    assert pe.max_entries == 2  # 0 means one slot per CPU
    assert pe.output(1, b"from1") == 0  # BPF_F_CURRENT_CPU
    assert pe.output(0, b"to1", flags=1) == 0
    assert pe.output(0, b"from0", flags=M.BPF_F_CURRENT_CPU) == 0
    assert pe.output(0, b"x", flags=2) == -errno.E2BIG
    assert pe.output(5, b"x") == -errno.E2BIG
    assert pe.output(0, b"x", flags=1 << 32) == -errno.EINVAL
    assert pe.pending() == 3
    assert pe.drain_cpu(0) == [b"from0"]
    assert pe.drain_records() == [(1, b"from1"), (1, b"to1")]
    assert pe.drain() == []


# ----------------------------------------------------------------------------------------------
# stack traces


def test_jhash2() -> None:
    assert M.jhash2([]) == 0xDEADBEEF
    assert M.jhash2([1, 2, 3]) != M.jhash2([3, 2, 1])
    assert all(0 <= M.jhash2(list(range(n))) < 1 << 32 for n in range(10))


def test_stack_ids() -> None:
    st = create_map(M.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 4, 100, name="stacks")
    assert isinstance(st, M.StackTraceMap)
    assert st.n_buckets == 128
    ips = [0xFFFFFFFF80001000, 0xFFFFFFFF80002000, 0xFFFFFFFF80003000]
    sid = st.get_stackid(ips)
    assert 0 <= sid < 128
    assert st.get_stackid(list(ips)) == sid  # same stack, same id
    words = []
    for ip in ips:
        words += [ip & 0xFFFFFFFF, ip >> 32]
    assert sid == M.jhash2(words) & 127
    assert st.lookup(u32(sid)) == struct.pack("<4Q", *ips, 0)
    assert st.stack(sid) == ips
    assert st.keys() == [u32(sid)]
    # skip and depth limit
    sid2 = st.get_stackid(ips + [1, 2, 3], flags=1)
    assert st.stack(sid2) == (ips + [1, 2, 3])[1:5]
    assert st.get_stackid(ips, flags=3) == -errno.EFAULT
    assert st.get_stackid(ips, flags=1 << 11) == -errno.EINVAL
    assert st.get_stackid(ips, flags=M.BPF_F_FAST_STACK_CMP) == sid
    # user-side operations
    assert st.update(u32(sid), bytes(32)) == -errno.EINVAL
    assert st.delete(u32(sid)) == 0
    assert st.delete(u32(sid)) == -errno.ENOENT
    assert st.delete(u32(500)) == -errno.EINVAL
    assert st.lookup(u32(sid)) is None


def test_stack_id_collisions() -> None:
    st = create_map(M.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 2, 1)
    assert st.n_buckets == 1
    assert st.get_stackid([1, 2]) == 0
    assert st.get_stackid([3, 4]) == -errno.EEXIST  # bucket taken by another stack
    assert st.stack(0) == [1, 2]
    assert st.get_stackid([3, 4], flags=M.BPF_F_REUSE_STACKID) == 0
    assert st.stack(0) == [3, 4]
    assert st.get_stackid([3, 4]) == 0


# ----------------------------------------------------------------------------------------------
# printers


def test_bucket_labels() -> None:
    assert [bucket_label(b) for b in range(5)] == ["[0]", "[1]", "[2, 4)", "[4, 8)", "[8, 16)"]
    assert bucket_label(10) == "[512, 1K)"
    assert bucket_label(11) == "[1K, 2K)"
    assert bucket_label(21) == "[1M, 2M)"
    assert bucket_label(32) == "[2G, 4G)"


def test_log2_hist_layout() -> None:
    text = format_log2_hist({5: 3, 7: 6, 3: 0}, title="@bytes")
    bar = "@" * 26 + " " * 26
    assert text.splitlines() == [
        "@bytes:",
        "[16, 32)               3 |" + bar + "|",
        "[32, 64)               0 |" + " " * 52 + "|",
        "[64, 128)              6 |" + "@" * 52 + "|",
    ]
    assert format_log2_hist({}) == ""
    assert format_log2_hist([(1, 1)]).startswith("[1]                    1 |@")


def test_log2_hist_from_maps() -> None:
    arr = create_map(M.BPF_MAP_TYPE_ARRAY, 4, 8, 64)
    arr.update(u32(5), u64(3))
    arr.update(u32(7), u64(6))
    assert log2_hist_counts(arr) == {5: 3, 7: 6}
    assert format_log2_hist_map(arr) == format_log2_hist({5: 3, 7: 6})
    pc = create_map(M.BPF_MAP_TYPE_PERCPU_HASH, 8, 8, 64, ncpus=2)
    pc.update_percpu(u64(2), [u64(1), u64(2)])
    assert log2_hist_counts(pc) == {2: 3}


def test_format_map() -> None:
    h = create_map(M.BPF_MAP_TYPE_HASH, 4, 8, 8)
    h.update(u32(20), u64(1))
    h.update(u32(3), u64(500))
    assert format_map(h) == "3: 500\n20: 1\n"
    assert format_map(h, sort="value", title="@calls") == "@calls:\n20: 1\n3: 500\n"
    odd = create_map(M.BPF_MAP_TYPE_HASH, 3, 5, 8)
    odd.update(b"abc", b"\x01\x02\x03\x04\x05")
    assert format_map(odd) == "0x616263: 0x0102030405\n"
    arr = create_map(M.BPF_MAP_TYPE_ARRAY, 4, 2, 3)
    arr.update(u32(1), b"\x07\x00")
    assert format_map(arr) == "0: 0\n1: 7\n2: 0\n"
    assert format_map(arr, skip_zero=True) == "1: 7\n"
    pc = create_map(M.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 1, ncpus=2)
    pc.update(u32(0), u32(9), cpu=1)
    assert format_map(pc) == "0: [0, 9]\n"
