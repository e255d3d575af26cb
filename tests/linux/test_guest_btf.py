"""kprobesim.guest.btf on Debian's kernels: the .BTF blob found by its header parses with the
eBPF engine's parser and agrees with Debian's bpftool reading the same blob."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from kprobesim.ebpf.btf import BTF_KIND_INT, BTF_KIND_STRUCT
from kprobesim.guest.btf import KernelBtfError, find_btf, kernel_btf
from linux import oracle

ARCHES = ["riscv64", "x86_64"]


@cache
def _bpftool_dump(arch: str, folder: Path) -> str:
    if shutil.which("bpftool") is None:
        pytest.fail("bpftool is not installed (Debian: apt-get install bpftool)", pytrace=False)
    blob = folder / f"{arch}.btf"
    blob.write_bytes(find_btf(oracle.vmlinux(arch)))
    proc = subprocess.run(["bpftool", "btf", "dump", "file", str(blob), "format", "raw"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("arch", ARCHES)
def test_kernel_btf_agrees_with_bpftool(arch: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    btf = oracle.btf(arch)
    dump = _bpftool_dump(arch, tmp_path_factory.getbasetemp())
    last = int(re.findall(r"^\[(\d+)\] ", dump, re.M)[-1])
    assert len(btf.types) - 1 == last  # same number of types (id 0 is void)
    tid = btf.find("task_struct", BTF_KIND_STRUCT)
    head = re.search(rf"^\[{tid}\] STRUCT 'task_struct' size=(\d+) vlen=(\d+)$", dump, re.M)
    assert head, f"bpftool has no STRUCT task_struct at id {tid}"
    assert btf.size_of(tid) == int(head.group(1)) and len(btf.members(tid)) == int(head.group(2))
    body = dump[head.end():].split("\n[", 1)[0]
    comm = btf.member(tid, "comm")
    assert f"'comm' type_id={comm.type_id} bits_offset={comm.bit_offset}" in body
    # comm is char[16] (TASK_COMM_LEN)
    array = btf.type(comm.type_id)
    assert array.nelems == 16 and btf.resolved(array.elem_type).kind == BTF_KIND_INT
    assert btf.size_of(btf.find("pt_regs", BTF_KIND_STRUCT)) == {"riscv64": 288, "x86_64": 168}[arch]


def test_find_btf_rejects_inconsistent_headers() -> None:
    good = find_btf(oracle.vmlinux("riscv64"))
    assert find_btf(bytes(101) + good + bytes(100)) == good  # found at any alignment, nothing after it
    blob = bytearray(good)
    with pytest.raises(KernelBtfError, match="no .BTF blob"):
        find_btf(bytes(4096) + blob[:len(blob) // 2])  # string section cut off
    blob[12:16] = (int.from_bytes(blob[12:16], "little") + 4).to_bytes(4, "little")  # type_len off by 4
    with pytest.raises(KernelBtfError):
        find_btf(blob)
    with pytest.raises(KernelBtfError, match="no .BTF blob"):
        kernel_btf(b"\x9f\xeb\x01\x00" + bytes(60))
