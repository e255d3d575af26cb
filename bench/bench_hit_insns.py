"""Host machine instructions a probe hit costs, counted by valgrind (independent of load).

    python bench/bench_hit_insns.py [ARCH ...] [--kinds K,...] [--insns-per-us F] [--jobs N] [--keep DIR]

Wall-clock and even CPU-time costs of a hit swing with whatever else runs on the machine; the
number of instructions the host executes for it does not. Each figure comes from its own
process run under ``valgrind --tool=callgrind``, with instrumentation switched on (a callgrind
client request, from a small C library this script builds with the system's ``cc``) only
around the measured part, after a warm-up run outside it (and after one unmeasured run of the
same child, which fills the engine's on-disk translation cache):

- ``off``: the bundled kernel, unprobed (``Machine.run``);
- ``kprobe``: an empty Python pre-handler on ``fib`` (2296 hits), minus ``off``, per hit;
- ``kretprobe``: an empty return handler on ``fib``, minus ``off``, per return (entry + return);
- ``ebpf``: the 45-instruction program of ``bench/bench_bpf_probe.py``, translated, per hit
  (needs ``python -m ziglang``);
- the engine's floor, counted the same way: ``restart`` (one ``emu_start`` running one
  instruction, averaged over 2000) and ``hook`` (a ranged code hook on ``fib``'s first
  instruction reading two registers, minus ``off``, per call).

Every row gives instructions a hit, the multiple of the restart and of the hook, and an
estimate in microseconds at ``--insns-per-us`` (default: this machine's idle calibration, a
riscv64 kprobe hit of 59.3 k instructions timed at 11.4 us). x86_64 runs both step variants.
Needs valgrind (Debian package ``valgrind``, which also ships ``valgrind/callgrind.h``) and a C
compiler. ``--keep DIR`` keeps the callgrind profiles (``callgrind_annotate DIR/<arch>-<kind>.out``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = "fib"
RESTARTS = 2000
KINDS = ("off", "kprobe", "kretprobe", "ebpf", "restart", "hook")
CALIBRATION = 59_300 / 11.4  # host instructions a microsecond, idle (riscv64 kprobe hit, 2026-12)
_TOGGLE = r"""
#include <valgrind/callgrind.h>
void kps_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void kps_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def build_toggle(outdir: Path) -> Path:
    """The shared library whose two functions switch callgrind's counting on and off."""
    src, lib = outdir / "toggle.c", outdir / "toggle.so"
    src.write_text(_TOGGLE)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


# -- the measured process ------------------------------------------------------------------------
def child(arch: str, step: str | None, kind: str, toggle: Path, bpf_obj: Path | None) -> dict[str, int]:
    """Set up one measurement, warm up outside the count (the same setup, so one-off costs such
    as translating the patched code are paid there), then count only the measured part."""
    import gc

    from unicorn import UC_HOOK_CODE

    from kprobesim.machine import Machine

    lib = ctypes.CDLL(str(toggle))
    path = ROOT / "firmware" / arch / "kernel.elf"

    def setup(m: Machine) -> Callable[[], int]:
        """Place what ``kind`` measures; returns how many events it saw."""
        if kind == "kprobe":
            kp = m.kprobe(TARGET, pre=lambda p, r: 0)
            return lambda: kp.hits
        if kind == "kretprobe":
            rp = m.kretprobe(TARGET, handler=lambda i, r: None, maxactive=64)
            return lambda: rp.hits
        if kind == "ebpf":
            from kprobesim.ebpf.loader import load

            assert bpf_obj is not None
            prog = load(m, bpf_obj, engine="translate").programs["bench"]
            return lambda: prog.hits
        if kind == "hook":
            calls = [0]
            engine, sp, pc = m.engine, m.arch.sp_reg, m.arch.pc_reg

            def cb(uc: object, addr: int, size: int, ud: object) -> None:
                calls[0] += 1
                engine.reg_read(sp)
                engine.reg_read(pc)

            addr = m.image.symbol(TARGET).addr
            engine.hook_add(UC_HOOK_CODE, cb, None, addr, addr)
            return lambda: calls[0]
        return lambda: 0

    limit = 3600.0  # seconds: valgrind on a busy machine is far slower than the run's default limit
    warm = Machine.load(path, step_variant=step)
    setup(warm)
    warm.run(timeout=limit)
    m = Machine.load(path, step_variant=step)
    if kind == "restart":
        engine, entry, until = m.engine, m.image.entry, m.arch.until
        engine.emu_start(entry, until, 0, 1)
        gc.collect()
        lib.kps_start()
        for _ in range(RESTARTS):
            engine.emu_start(entry, until, 0, 1)
        lib.kps_stop()
        return {"events": RESTARTS}
    events = setup(m)
    gc.collect()
    lib.kps_start()
    m.run(timeout=limit)
    lib.kps_stop()
    return {"events": events(), "guest": m.instructions}


# -- the driver ---------------------------------------------------------------------------------
def _total(out: Path) -> int:
    """The instruction total of a callgrind profile."""
    text = out.read_text()
    found = re.search(r"^totals:\s*(\d+)", text, re.M)
    if found is None:
        raise RuntimeError(f"{out}: no instruction total")
    return int(found.group(1))


def _child_command(arch: str, step: str | None, kind: str, toggle: Path, bpf_obj: Path | None) -> list[str]:
    return [sys.executable, __file__, "--child", arch, step or "-", kind, str(toggle), str(bpf_obj or "-")]


def prime(arch: str, step: str | None, kind: str, toggle: Path, bpf_obj: Path | None) -> None:
    """Run a child once outside valgrind, so that the engine's on-disk translation cache (the
    P-code engine's compiled blocks and tier-0 run counts, saved at exit) holds what the
    measured child will run: otherwise the first bench after a change of the engine's sources
    counts block compilation in the unprobed run and gives per-hit figures far too low."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(_child_command(arch, step, kind, toggle, bpf_obj), capture_output=True, text=True,
                          env=env, cwd=ROOT)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{arch} {kind} (unmeasured): exit status {done.returncode}: {done.stderr[-300:]}")


def measure(arch: str, step: str | None, kind: str, work: Path, toggle: Path, bpf_obj: Path | None) -> tuple[int, dict]:
    """Host instructions of the measured part of one child run, and what the child reported."""
    label = f"{arch}-{step}-{kind}" if step else f"{arch}-{kind}"
    out = work / f"{label}.out"
    cmd = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        *_child_command(arch, step, kind, toggle, bpf_obj),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        said = [ln for ln in done.stderr.splitlines() if not ln.startswith("==")][-3:]
        raise RuntimeError(f"{label}: exit status {done.returncode}: {' | '.join(said)}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return _total(out), report


def _row(label: str, what: str, per: float, restart: float, hook: float, rate: float, note: str = "") -> None:
    ratios = f"{per / restart:5.1f}x restart {per / hook:5.1f}x hook" if restart and hook else ""
    print(f"{label:16s} {what:10s} {per / 1e3:8.1f} k insns  ~{per / rate:6.1f} us  {ratios}  {note}")


def bench(
    arch: str, step: str | None, kinds: list[str], work: Path, toggle: Path, bpf: Path | None, rate: float, jobs: int
) -> None:
    label = f"{arch}/{step}" if step else arch
    wanted = ["off", *(k for k in kinds if k != "off" and (k != "ebpf" or bpf is not None))]
    for kind in wanted:  # one process at a time: each rewrites the translation cache at exit
        prime(arch, step, kind, toggle, bpf)
    with ThreadPoolExecutor(jobs) as pool:  # each child is a process of its own
        runs = dict(zip(wanted, pool.map(lambda k: measure(arch, step, k, work, toggle, bpf), wanted), strict=True))
    off, base = runs["off"]
    restart = hook = 0.0
    if "restart" in runs:
        total, rep = runs["restart"]
        restart = total / rep["events"]
    if "hook" in runs:
        total, rep = runs["hook"]
        hook = (total - off) / rep["events"]
    print(f"{label:16s} {'off':10s} {off / 1e6:8.1f} M insns  ({base['guest']} guest instructions)")
    if restart:
        _row(label, "restart", restart, restart, hook, rate, "(floor: one emu_start of one instruction)")
    if hook:
        _row(label, "hook", hook, restart, hook, rate, "(floor: ranged code hook, 2 register reads)")
    for kind in ("kprobe", "kretprobe", "ebpf"):
        if kind not in runs:
            continue
        total, rep = runs[kind]
        if rep["guest"] != base["guest"]:
            print(f"{label:16s} {kind:10s} guest ran {rep['guest']} instructions, unprobed {base['guest']}")
            continue
        _row(label, kind, (total - off) / rep["events"], restart, hook, rate, f"({rep['events']} hits)")
    sys.stdout.flush()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        arch, step, kind, toggle, bpf = sys.argv[2:7]
        report = child(arch, None if step == "-" else step, kind, Path(toggle), None if bpf == "-" else Path(bpf))
        print(json.dumps(report))
        return
    from kprobesim.arch import ARCH_NAMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", nargs="*", default=list(ARCH_NAMES))
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    ap.add_argument("--step", choices=("tf", "int3"), help="x86_64 step variant (default: both)")
    ap.add_argument("--insns-per-us", type=float, default=CALIBRATION, help="for the microsecond estimates")
    ap.add_argument("--jobs", type=int, default=2, help="valgrind runs at once (default 2)")
    ap.add_argument("--keep", type=Path, help="keep the callgrind profiles in this folder")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kind {unknown[0]!r} (of {', '.join(KINDS)})")
    if shutil.which("valgrind") is None:
        ap.error("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        toggle = build_toggle(Path(tmp))
        for arch in args.arch:
            bpf = None
            if "ebpf" in kinds:
                from bench_bpf_probe import compile_program

                bpf = compile_program(arch, Path(tmp))
            steps = [args.step] if args.step else ["tf", "int3"] if arch == "x86_64" else [None]
            for step in steps:
                bench(arch, step if arch == "x86_64" else None, kinds, work, toggle, bpf, args.insns_per_us, args.jobs)


if __name__ == "__main__":
    main()
