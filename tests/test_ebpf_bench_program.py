"""The program ``bench/bench_bpf_probe.py`` times (a per-task stats record in a hash map, the
argument mixed into a hash), compiled with ziglang and run translated on ``fib`` of each bundled
kernel, against a Python kprobe on the same function that models it: the per-pid call count,
sum, maximum and hash must come out the same. Every speed-up of the eBPF hit path (bound map
lookups, the pid helper's reads, lazily reduced arithmetic, inlined runs, the one-register
context) runs here on real hits. About 2 s of CPU per arch.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from fwpaths import ALL_ARCHES, ROOT, firmware

from kprobesim.ebpf.loader import load
from kprobesim.machine import Machine
from kprobesim.task import current_task

sys.path.insert(0, str(ROOT / "bench"))
from bench_bpf_probe import compile_program  # noqa: E402

M64 = (1 << 64) - 1


def mix(n: int) -> int:
    h = n
    for i in range(5):
        h = (h * 31 + (h >> 7) + i) & M64
    return h


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_bench_program_matches_a_python_model(arch: str, tmp_path: Path) -> None:
    obj = compile_program(arch, tmp_path)
    m = Machine.load(firmware(arch))
    arg = m.arch.module("regs").ALL_ARG_REGS[0]
    want: dict[int, list[int]] = {}

    def model(probe: object, regs: object) -> int:
        n = regs[arg] & M64  # type: ignore[index]
        s = want.setdefault(current_task(m).pid & 0xFFFF_FFFF, [0, 0, 0, 0])
        s[0] += 1
        s[1] = (s[1] + n) & M64
        s[2] = max(s[2], n)
        s[3] ^= mix(n)
        return 0

    m.kprobe("fib", pre=model)
    loaded = load(m, obj, engine="translate")
    assert m.run() == 0
    prog = loaded.programs["bench"]
    assert prog.errors == 0 and prog.hits == sum(s[0] for s in want.values()) > 2000
    got = {struct.unpack("<I", k)[0]: list(struct.unpack("<4Q", v)) for k, v in loaded.maps["stats"].items()}
    assert got == want
