"""Cost of one probe hit running an eBPF program, against a probe with an empty Python handler.

For each arch the bundled kernel runs with a kprobe on ``fib`` (2296 hits per run):

- ``none``: no probe (the baseline the costs are measured from);
- ``python``: a pre-handler that returns 0;
- ``bpf interp`` / ``bpf translate``: a ~50-instruction eBPF program (a per-task stats record in
  a hash map, the argument mixed into a hash), compiled with ziglang, loaded with
  ``kprobesim.ebpf.loader.load`` and run by the interpreter or the translator.

Each figure is the best of ``--repeat`` runs, in microseconds per hit, and as a ratio to the
empty Python handler. Usage: ``python bench/bench_bpf_probe.py [--arch ARCH] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kprobesim.ebpf.loader import load  # noqa: E402
from kprobesim.machine import Machine  # noqa: E402

ARCHES = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}
TARGET = "fib"
SOURCE = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kprobesim_tracing.h"

struct stats {
	u64 calls;
	u64 sum;
	u64 max;
	u64 hash;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, struct stats);
} stats SEC(".maps");

SEC("kprobe/fib")
int BPF_KPROBE(bench, long n)
{
	u32 pid = bpf_get_current_pid_tgid();
	struct stats *s = bpf_map_lookup_elem(&stats, &pid);
	u64 h = n;

	if (!s) {
		struct stats zero = {};

		bpf_map_update_elem(&stats, &pid, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&stats, &pid);
		if (!s)
			return 0;
	}
	s->calls++;
	s->sum += n;
	if ((u64)n > s->max)
		s->max = n;
#pragma unroll
	for (int i = 0; i < 5; i++)
		h = h * 31 + (h >> 7) + i;
	s->hash ^= h;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def compile_program(arch: str, outdir: Path) -> Path:
    src = outdir / "bench.c"
    src.write_text(SOURCE)
    out = outdir / f"bench.{arch}.o"
    include = ROOT / "kprobesim" / "ebpf" / "include"
    cmd = [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        "-target",
        "bpfel-freestanding",
        "-O2",
        "-g",
        "-c",
        f"-I{include}",
        "-I/usr/include",
        f"-D__TARGET_ARCH_{ARCHES[arch]}",
        str(src),
        "-o",
        str(out),
    ]
    subprocess.run(cmd, check=True)
    return out


def timed(arch: str, setup: Callable[[Machine], object], repeat: int) -> tuple[float, Machine, object]:
    """Best CPU time (steadier than wall time on a shared machine) of ``repeat`` runs of the
    bundled kernel after ``setup(machine)``."""
    best, last, extra = float("inf"), None, None
    for _ in range(repeat):
        m = Machine.load(ROOT / "firmware" / arch / "kernel.elf")
        extra = setup(m)
        t = time.process_time()
        m.run()
        best = min(best, time.process_time() - t)
        last = m
    assert last is not None
    return best, last, extra


def bench(arch: str, obj: Path, repeat: int) -> None:
    timed(arch, lambda m: None, 1)  # warm-up (engine caches, imports)
    base, _, _ = timed(arch, lambda m: None, repeat)
    rows: list[tuple[str, float, int, float]] = []
    t, _, kp = timed(arch, lambda m: m.kprobe(TARGET, pre=lambda p, r: 0), repeat)
    hits = kp.hits  # type: ignore[attr-defined]
    rows.append(("python (empty)", t, hits, 0.0))
    for engine in ("interp", "translate"):
        t, _, loaded = timed(arch, lambda m, e=engine: load(m, obj, engine=e), repeat)
        prog = loaded.programs["bench"]  # type: ignore[attr-defined]
        rows.append((f"bpf {engine}", t, prog.hits, prog.insns / max(prog.runs, 1)))
    py = (rows[0][1] - base) / rows[0][2]
    print(f"{arch}: baseline run {base * 1e3:.1f} ms, {hits} hits of {TARGET}")
    for name, t, n, insns in rows:
        per = (t - base) / n
        extra = f", {insns:.0f} eBPF insns/run" if insns else ""
        print(f"  {name:<16} {per * 1e6:8.1f} us/hit  ({per / py:4.2f}x the empty handler{extra})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", choices=list(ARCHES))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch or list(ARCHES):
            bench(arch, compile_program(arch, Path(tmp)), args.repeat)


if __name__ == "__main__":
    main()
