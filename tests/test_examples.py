"""The eBPF examples: built as examples/README.md says, run with ``kprobesim --bpf`` on every
arch's kernel, and what they print agrees across arches where the kernels do the same work."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fwpaths import ROOT, firmware

from kprobesim.cli import main

EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(p.stem for p in EXAMPLES_DIR.glob("*.c"))
TARGET = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}
ARCHES = tuple(TARGET)
# the build command of examples/README.md, run from the repository's top folder
BUILD = "python -m ziglang cc -target bpfel-freestanding -O2 -g -c -I kprobesim/ebpf/include -I /usr/include"
MAP_HEADER = re.compile(r"^@(\S+?):(?: (.*))?$")


def test_readme_documents_every_example():
    readme = (EXAMPLES_DIR / "README.md").read_text()
    assert EXAMPLES == ["count_kthreads", "do_work_ringbuf", "fib_latency", "override_pcrel"]
    for name in EXAMPLES:
        assert f"`{name}.c`" in readme
    for arch, macro in TARGET.items():
        command = f"{BUILD} \\\n        -D__TARGET_ARCH_{macro} examples/count_kthreads.c -o count_kthreads.{arch}.o"
        assert command in readme
        assert f"kprobesim firmware/{arch}/kernel.elf --bpf" in readme


def _build(name: str, arch: str, outdir: Path) -> Path:
    out = outdir / f"{name}.{arch}.o"
    cmd = [
        sys.executable,
        *BUILD.split()[1:],
        f"-D__TARGET_ARCH_{TARGET[arch]}",
        "-Wall",
        "-Werror",
        f"examples/{name}.c",
        "-o",
        str(out),
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


def _kprobesim(*argv: str) -> tuple[int, str]:
    """Run the command in-process; returns its status and stdout."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    saved, sys.stdout = sys.stdout, out
    try:
        status = main(list(argv))
    finally:
        out.flush()
        sys.stdout = saved
    return status, raw.getvalue().decode()


def _maps(text: str) -> dict[str, list[str]]:
    """The maps printed at exit: name -> lines (for ``@name: value`` one-liners, the value)."""
    maps: dict[str, list[str]] = {}
    current: list[str] | None = None
    tail = text[text.index("\nchecksum: ") :].splitlines()[2:]
    for line in tail:
        if not line:
            current = None
            continue
        header = MAP_HEADER.match(line)
        if header and current is None:
            maps[header[1]] = current = [header[2]] if header[2] else []
            if header[2]:
                current = None
        elif current is not None:
            current.append(line)
    return maps


#: One worker runs the module: the examples are built and run (~4 s of CPU) once, not once per worker.
pytestmark = pytest.mark.xdist_group("examples")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, str], tuple[int, str]]:
    """Per arch: the three observing examples in one run, and the overriding one alone."""
    outdir = tmp_path_factory.mktemp("examples")
    jobs = [(n, a) for n in EXAMPLES for a in ARCHES]
    with ThreadPoolExecutor(8) as pool:
        objs = dict(zip(jobs, pool.map(lambda j: _build(j[0], j[1], outdir), jobs), strict=True))
    results = {}
    for arch in ARCHES:
        observe = [
            x for n in ("count_kthreads", "fib_latency", "do_work_ringbuf") for x in ("--bpf", str(objs[n, arch]))
        ]
        results["observe", arch] = _kprobesim(str(firmware(arch)), *observe, "--stats")
        results["override", arch] = _kprobesim(str(firmware(arch)), "--bpf", str(objs["override_pcrel", arch]))
    return results


@pytest.mark.parametrize("arch", ARCHES)
def test_observing_examples_leave_the_kernel_alone(arch, runs):
    status, out = runs["observe", arch]
    assert status == 0
    console = [line for line in out.splitlines() if "bpf_ringbuf" not in line]
    transcript = firmware(arch, "transcript.txt").read_text().splitlines()
    assert console[: len(transcript)] == transcript
    stats = {
        name: (int(hits), int(missed)) for name, hits, missed in re.findall(r"^  bpf:(\w+) +(\d+) +(\d+)$", out, re.M)
    }
    assert stats == {"count_do_work": (557, 0), "fib_entry": (2296, 0), "fib_exit": (2296, 0), "do_work_args": (557, 0)}


def test_calls_per_kthread_agree(runs):
    calls = {arch: _maps(runs["observe", arch][1])["calls"] for arch in ARCHES}
    assert calls["riscv64"] == ['"kworker/0": 300', '"kworker/2": 256', '"swapper": 1']
    assert calls["x86_64"] == calls["riscv64"] == calls["loongarch64"]


def test_fib_latency_histograms(runs):
    totals = {}
    for arch in ARCHES:
        maps = _maps(runs["observe", arch][1])
        assert maps["start"] == []  # every activation's start time was consumed by its return
        rows = [re.fullmatch(r"(\[\S+(?:, \S+)?[)\]]) +(\d+) \|(@*) *\|", line) for line in maps["fib_hist"]]
        assert all(rows) and len(rows) > 5
        assert rows[0][1] != "[0]" and max(len(r[3]) for r in rows) == 52  # bpftrace's 52-column bars
        totals[arch] = sum(int(r[2]) for r in rows)
    assert totals == {arch: 2296 for arch in ARCHES}  # every return measured, on every arch


def test_ring_buffer_records_agree(runs):
    per_arch = {}
    for arch in ARCHES:
        out = runs["observe", arch][1]
        records = re.findall(
            r"^ *(\S+)-(\d+) \[000\] d\.\.\.\. +[\d.]+: bpf_ringbuf: records: ([0-9a-f ]+) \| "
            r"struct record \{pid=(\d+), comm=\"([^\"]*)\", a=(-?\d+), b=(-?\d+)\}$",
            out,
            re.M,
        )
        assert len(records) == 557
        by_task: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
        for who, pid, data, rpid, comm, a, b in records:
            assert (who, pid) == (comm, rpid)  # the trace line's task is the record's
            raw = bytes.fromhex(data.replace(" ", ""))
            assert int.from_bytes(raw[24:32], "little", signed=True) == int(a)  # hex and decoding agree
            by_task[comm, int(pid)].append((int(a), int(b)))
        assert by_task["swapper", 0] == [(1, 2)]  # the boot self-test: do_work(1, 2)
        per_arch[arch] = dict(by_task)
    assert per_arch["riscv64"] == per_arch["x86_64"] == per_arch["loongarch64"]


def test_override_return_example(runs):
    seen = {}
    for arch in ARCHES:
        status, out = runs["override", arch]
        assert status == 5  # the kernel's first failed self-check
        assert "pcrel_load() = 5eed5eed5eed\nFAIL: check 5 (pcrel_load)\n" in out
        assert "FAIL: check 26 (kworker/0 pcrel)" in out
        printk = re.findall(
            r"bpf_trace_printk: pcrel_load\(\) called from (kmain)\+0x[0-9a-f]+/0x[0-9a-f]+: "
            r"returning 5eed5eed5eed$",
            out,
            re.M,
        )
        assert printk == ["kmain"]
        seen[arch] = _maps(out)
    assert seen["riscv64"] == seen["x86_64"] == seen["loongarch64"] == {".bss": ["{overridden=51}"]}
