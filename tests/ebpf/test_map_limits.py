"""Map sizes refused as Linux refuses them, at once, and big maps that fit allocated lazily."""

from __future__ import annotations

import errno
import subprocess
import sys
import time

import pytest
from fwpaths import ROOT, firmware

from kprobesim.ebpf import maps as M
from kprobesim.ebpf.maps import MAP_MEMORY_LIMIT, MapError, create_map


def _refused(err: int, *args, **kwargs) -> str:
    start = time.monotonic()
    with pytest.raises(MapError) as e:
        create_map(*args, **kwargs)
    assert time.monotonic() - start < 0.5, "refused at once, before allocating anything"
    assert e.value.errno == err and f"({errno.errorcode[err]})" in str(e.value)
    return str(e.value)


def test_a_2_31_entry_array_is_refused_at_once():
    text = _refused(errno.ENOMEM, M.BPF_MAP_TYPE_ARRAY, 4, 8, 1 << 31, name="big")
    assert text == ("map 'big': array of 2147483648 entries needs 16384 MiB of kernel memory at creation, "
                    "more than the 1024 MiB a map may take (ENOMEM)")


@pytest.mark.parametrize(
    ("err", "args", "kwargs"),
    [
        (errno.E2BIG, (M.BPF_MAP_TYPE_ARRAY, 4, M.KMALLOC_MAX_SIZE + 1, 1), {}),  # value too big to copy
        (errno.E2BIG, (M.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 40 << 10, 1), {}),  # per-CPU unit bound
        (errno.E2BIG, (M.BPF_MAP_TYPE_HASH, 513, 8, 16), {}),  # key bigger than the BPF stack
        (errno.E2BIG, (M.BPF_MAP_TYPE_HASH, 8, M.KMALLOC_MAX_SIZE, 16), {}),
        (errno.E2BIG, (M.BPF_MAP_TYPE_ARRAY, 4, 8, 1 << 32), {}),  # not a u32
        (errno.E2BIG, (M.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 127, (1 << 31) + 1), {}),
        (errno.ENOMEM, (M.BPF_MAP_TYPE_HASH, 8, 8, 1 << 30), {}),  # preallocated elements
        (errno.ENOMEM, (M.BPF_MAP_TYPE_LRU_HASH, 8, 8, 1 << 28), {}),  # LRU maps always preallocate
        (errno.ENOMEM, (M.BPF_MAP_TYPE_HASH, 8, 8, 1 << 31), {"flags": M.BPF_F_NO_PREALLOC}),  # buckets alone
        (errno.ENOMEM, (M.BPF_MAP_TYPE_ARRAY, 4, 1 << 20, 2048), {}),  # few entries, big values
        (errno.ENOMEM, (M.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1 << 24), {"ncpus": 8}),
        (errno.ENOMEM, (M.BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 31), {}),
        (errno.ENOMEM, (M.BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4, 1 << 31), {}),
        (errno.ENOMEM, (M.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 127, 1 << 24), {}),
    ],
)
def test_linux_size_rules(err, args, kwargs):
    _refused(err, *args, **kwargs)


def test_what_fits_is_allocated_lazily():
    start = time.monotonic()
    arr = create_map(M.BPF_MAP_TYPE_ARRAY, 4, 64, MAP_MEMORY_LIMIT // 64, name="wide")  # 1 GiB: fits
    h = create_map(M.BPF_MAP_TYPE_HASH, 8, 8, 1 << 22)
    sparse = create_map(M.BPF_MAP_TYPE_HASH, 8, 8, 1 << 26, flags=M.BPF_F_NO_PREALLOC)
    assert time.monotonic() - start < 0.5
    last = (arr.max_entries - 1).to_bytes(4, "little")
    assert arr.lookup(last) == bytes(64)
    arr.lookup(last)[:8] = (7).to_bytes(8, "little")  # a store through the live buffer stays
    assert arr.update((3).to_bytes(4, "little"), (5).to_bytes(64, "little")) == 0
    assert arr.nonzero_items() == [((3).to_bytes(4, "little"), (5).to_bytes(64, "little")),
                                   (last, (7).to_bytes(8, "little") + bytes(56))]
    assert len(arr._values) == 2  # two elements made, not 16M
    assert h.update(b"k" * 8, b"v" * 8) == 0 and sparse.update(b"k" * 8, b"v" * 8) == 0


BIG_MAP = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, u32); __type(value, u64);
         __uint(max_entries, 1u << 31); } huge SEC(".maps");

SEC("kprobe/do_work")
int count(void *ctx)
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&huge, &k);

	if (v)
		(*v)++;
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_a_2_31_entry_array_in_an_object_is_refused_at_load(tmp_path):
    from progs.build import compile_cmd  # the toolchain is a hard requirement (CI installs it)

    src = tmp_path / "huge.c"
    src.write_text(BIG_MAP)
    obj = tmp_path / "huge.o"
    subprocess.run(compile_cmd(src, obj, "riscv64"), check=True, capture_output=True)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "kprobesim", str(firmware("riscv64")), "--bpf", str(obj)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert time.monotonic() - start < 15  # no allocation: the refusal comes before the run
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "map 'huge': array of 2147483648 entries" in proc.stderr
    assert "(ENOMEM)" in proc.stderr and "Traceback" not in proc.stderr
