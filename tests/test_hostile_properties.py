"""Hostile-input properties (issue 16): random bytes and random mutations of valid probe specs,
images and eBPF objects, given to the command line and to the API. Whatever comes in: no
internal error, no traceback, only documented exit statuses (API: only SimError subclasses),
and every case ends within a bounded time."""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fwpaths import ALL_ARCHES, ROOT, firmware
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from kprobesim.errors import GUEST_STATUS_OTHER, SimError
from kprobesim.machine import Machine

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
OURS = {64, 65, 66, 67, 68, GUEST_STATUS_OTHER, 124, 125}  # README's table
GUEST = set(range(64)) | set(range(80, 124))  # a guest's own status passes through
LIMITS = ("--max-insns", "300000", "--timeout", "10")
BOUND = 20.0  # seconds for one case, load and run included (a shared CI machine)

SPECS = [
    "p:dw do_work a=$arg1 b=$arg2:s64 who=$comm",
    "r16:fr fib ret=$retval:u64",
    "p:x fib+4 %sp +8(%sp):u32 @jiffies",
    "p do_work $stack0 $stack1:x32 s=+0($arg1):string",
    "r:r2 sum_array $retval",
]


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 flips a byte, 1 inserts one, 2 deletes one,
    3 truncates there."""
    out = bytearray(data)
    for kind, pos, value in edits:
        if not out:
            break
        at = pos % len(out)
        if kind == 0:
            out[at] ^= value or 1
        elif kind == 1:
            out.insert(at, value)
        elif kind == 2:
            del out[at]
        else:
            del out[at:]
    return bytes(out)


_KINDS = st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2, 3])  # mostly flips: cut files are easy to refuse
_EDITS = st.lists(st.tuples(_KINDS, st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=4)


def _check_cli(run_cli, *argv: str) -> None:
    start = time.monotonic()
    status, out, err = run_cli(*argv)
    elapsed = time.monotonic() - start
    with contextlib.suppress(InvalidArgument):  # --hypothesis-show-statistics: what inputs reached
        event(f"exit status {status}")
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    assert status in OURS | GUEST, (argv, status, err)
    if status in OURS:
        assert err.startswith("kprobesim: "), (argv, err)
    assert elapsed < BOUND, (argv, elapsed)


# -- probe specs ----------------------------------------------------------------------------------
_SPEC_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@SETTINGS
@given(
    arch=st.sampled_from(ALL_ARCHES),
    base=st.sampled_from(SPECS),
    edits=st.lists(st.tuples(_KINDS, st.integers(0, 1 << 30), st.integers(0, 255)), max_size=3),
    noise=st.none() | _SPEC_TEXT,
)
def test_mutated_probe_specs_on_the_command_line(run_cli, arch, base, edits, noise):
    spec = _mutate(base.encode(), edits).decode("utf-8", "replace")
    _check_cli(run_cli, str(firmware(arch)), *LIMITS, "-p", spec, *(["-p", noise] if noise is not None else []))


@SETTINGS
@given(base=st.sampled_from(SPECS), edits=_EDITS)
def test_mutated_locations_through_the_api(base, edits):
    """``Machine.kprobe``/``kretprobe`` with mutated locations: placed, or a SimError."""
    m = _machine("riscv64")
    where = _mutate(base.split()[1].encode(), edits).decode("utf-8", "replace")
    for place in (m.kprobe, m.kretprobe):
        try:
            probe = place(where)
        except SimError:
            continue
        probe.unregister()


@functools.cache
def _machine(arch: str) -> Machine:
    return Machine.load(firmware(arch))


# -- images ---------------------------------------------------------------------------------------
@SETTINGS
@given(arch=st.sampled_from(ALL_ARCHES), edits=_EDITS, raw=st.booleans(), probe=st.booleans())
def test_mutated_images(run_cli, tmp_path_factory, arch, edits, raw, probe):
    """The bundled kernel (ELF or raw) with flipped, inserted, deleted bytes or cut short."""
    src = firmware(arch) if not raw else firmware(arch).with_name("kernel.bin")
    path = tmp_path_factory.mktemp("img") / src.name
    path.write_bytes(_mutate(src.read_bytes(), edits))
    _check_cli(run_cli, "--arch", arch, *LIMITS, str(path), *(["-p", "p:dw do_work"] if probe else []))
    try:  # the API: a Machine, or one of ours
        Machine.load(path, arch=arch).run(max_insns=100_000, timeout=10)
    except SimError:
        pass


@SETTINGS
@given(arch=st.sampled_from(ALL_ARCHES), data=st.binary(max_size=4096), elf=st.booleans())
def test_random_bytes_as_images(run_cli, tmp_path_factory, arch, data, elf):
    path = tmp_path_factory.mktemp("img") / "random.bin"
    path.write_bytes((b"\x7fELF\x02\x01\x01" if elf else b"") + data)
    _check_cli(run_cli, "--arch", arch, *LIMITS, str(path))
    _check_cli(run_cli, "symbols", str(path))
    _check_cli(run_cli, "probeable", str(path), "do_work")


# -- eBPF objects ---------------------------------------------------------------------------------
@functools.cache
def _bpf_object(tmp: Path) -> bytes:
    """examples/count_kthreads.c for riscv64, built by zig's clang."""
    out = tmp / "count.o"
    include = ROOT / "kprobesim" / "ebpf" / "include"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", "-O2", "-g", "-c"]
    cmd += [f"-I{include}", "-I/usr/include", "-D__TARGET_ARCH_riscv", str(ROOT / "examples" / "count_kthreads.c")]
    subprocess.run([*cmd, "-o", str(out)], check=True, capture_output=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def bpf_object(tmp_path_factory) -> bytes:
    return _bpf_object(tmp_path_factory.mktemp("bpf"))


@SETTINGS
@given(edits=_EDITS, data=st.binary(max_size=512))
def test_mutated_and_random_bpf_objects(run_cli, tmp_path_factory, bpf_object, edits, data):
    folder = tmp_path_factory.mktemp("bpf")
    for name, blob in (("mutated.o", _mutate(bpf_object, edits)), ("random.o", b"\x7fELF\x02\x01\x01" + data)):
        (folder / name).write_bytes(blob)
        _check_cli(run_cli, str(firmware("riscv64")), *LIMITS, "--bpf", str(folder / name))


# -- options --------------------------------------------------------------------------------------
_OPTIONS = ["--max-insns", "--timeout", "--base", "--entry", "--step", "--format", "--arch", "--symbols"]


@SETTINGS
@given(option=st.sampled_from(_OPTIONS), value=_SPEC_TEXT)
def test_random_option_values(run_cli, option, value):
    limits = {"--max-insns": "300000", "--timeout": "10"}
    limits.pop(option, None)
    _check_cli(run_cli, str(firmware("x86_64")), option, value, *[w for kv in limits.items() for w in kv])


def test_the_properties_can_fail(run_cli, tmp_path, monkeypatch):
    """The check itself catches an internal error: a planted bug in image loading."""
    import kprobesim.cli

    def broken(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(kprobesim.cli, "_load_image", broken)
    with pytest.raises(AssertionError, match="internal error"):
        _check_cli(run_cli, str(firmware("riscv64")))
