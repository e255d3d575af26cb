"""The kprobe_events front end: -p specs, fetchargs, ftrace lines, --stats, probeable."""

from __future__ import annotations

import json
import re

import pytest
from fwpaths import UNICORN_ARCHES, firmware

from kprobesim.errors import ProbeError, SpecError
from kprobesim.trace.spec import parse

LINE = re.compile(
    r"^\s*(?P<comm>\S+)-(?P<pid>\d+) \[000\] d\.\.\.\. +\d+\.\d{6}: (?P<event>\w+): \((?P<where>[^)]*)\)(?P<args>.*)$"
)


def _events(out: bytes) -> list[re.Match]:
    return [m for line in out.decode().splitlines() if (m := LINE.match(line))]


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_do_work_args_and_fib_retvals(arch, run_cli):
    status, out, err = run_cli(
        str(firmware(arch)),
        "-p", "p:dw do_work a=$arg1 b=$arg2:s64 who=$comm",
        "-p", "r64:fr fib ret=$retval:u64",
        "--stats",
    )  # fmt: skip
    assert status == 0, err
    events = _events(out)
    dw = [e for e in events if e["event"] == "dw"]
    assert dw[0]["args"] == ' a=0x1 b=2 who="swapper"' and dw[0]["where"].startswith("do_work+0x0/")
    assert dw[0]["comm"] == "swapper" and dw[0]["pid"] == "0"
    fr = [e for e in events if e["event"] == "fr"]
    assert " ret=144" in {e["args"] for e in fr}
    assert all(" <- fib" in e["where"] for e in fr)
    stats = {
        m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^  (\w+)\s+(\d+)\s+(\d+)$", out.decode(), re.M)
    }
    assert stats["dw"] == (len(dw), 0) and stats["fr"] == (len(fr), 0)
    # the console transcript is intact, line by line, around the trace lines
    console = b"".join(line + b"\n" for line in out.splitlines() if not LINE.match(line.decode()))
    assert firmware(arch, "transcript.txt").read_bytes() in console


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_json_and_memory_fetchargs(arch, run_cli):
    status, out, _ = run_cli(
        str(firmware(arch)), "--format", "json",
        "-p", "p:pl pcrel_load v=@pcrel_value:x64 lo=@pcrel_value:u8 sym=@pcrel_value:symbol",
        "-p", "p:sl strlen s=+0($arg1):string c=+0($arg1):u8",
    )  # fmt: skip
    assert status == 0
    records = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    pl = next(r for r in records if r["event"] == "pl")
    assert pl["args"] == {"v": 0x1234567890ABCDEF, "lo": 0xEF, "sym": "0x1234567890abcdef"}
    strings = [r["args"] for r in records if r["event"] == "sl"]
    assert {"s": "hello, kprobes", "c": ord("h")} in strings
    sl = next(r for r in records if r["event"] == "sl")
    assert sl["type"] == "kprobe" and isinstance(sl["ts_ns"], int)


def test_trace_is_deterministic(run_cli):
    runs = [
        run_cli(str(firmware("riscv64")), "-p", "p:s schedule", "-p", "r:f fib $retval") for _ in range(2)
    ]
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("q:x do_work", "bad probe head 'q:x'"),
        ("p:x", "expected 'p|r[:EVENT] SYMBOL[+OFF] [FETCHARGS]'"),
        ("p:x do_work $retval", "$retval is only valid on return probes"),
        ("p:x do_work a=$argz", "unknown variable '$argz'"),
        ("p:x do_work a=$arg1:u7", "unknown type 'u7'"),
        ("p:x do_work 1a=$arg1", "bad argument name '1a'"),
        ("p:x do_work a=$arg1 a=$arg2", "argument name 'a' used twice"),
        ("p:x do_work +8(", "cannot parse fetch argument"),
        ("r:x do_work+4", "return probes go on a function entry"),
        ("p3:x do_work", "MAXACTIVE is only valid on return probes"),
        ("p:x do_work a=\\zz", "bad immediate"),
        ("p:x do_work%", "bad probe location"),
    ],
)
def test_malformed_specs(spec, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse(spec)


@pytest.mark.parametrize(
    ("spec", "status", "message"),
    [
        ("p:x do_work %nosuchreg", SpecError.exit_status, "has no register '%nosuchreg'"),
        ("p:x do_work v=@no_such_sym", SpecError.exit_status, "unknown symbol 'no_such_sym'"),
        ("p:x no_such_fn", ProbeError.exit_status, "unknown symbol 'no_such_fn'"),
        ("p:x do_work $arg9", SpecError.exit_status, "passes only 6 arguments in registers"),
    ],
)
def test_spec_errors_on_the_command_line(spec, status, message, run_cli):
    got, out, err = run_cli(str(firmware("riscv64")), "-p", spec)
    assert got == status and out == b""
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_rejected_instruction_names_it(arch, run_cli):
    """A probe on an instruction the arch refuses: EINVAL-like, naming the instruction."""
    status, out, _ = run_cli("probeable", str(firmware(arch)), "timer_interrupt")
    assert status == 0
    # find any rejected instruction in the kernel's functions to probe
    from kprobesim.machine import Machine
    from kprobesim.probes.insn import Kind

    m = Machine.load(firmware(arch))
    reg = m.probes
    for sym in m.image.symbols:
        if not sym.is_func or not sym.size or sym.addr in reg.blacklist:
            continue
        for addr in reg.decode.boundaries(reg.original(sym.addr, sym.size), sym.addr):
            d = reg.classify(addr)
            if d.kind is Kind.REJECT:
                got, _, err = run_cli(str(firmware(arch)), "-p", f"p:x {addr:#x}")
                assert got == ProbeError.exit_status
                assert f"cannot probe '{d.text}': {d.reason} (EINVAL)" in err
                return
    raise AssertionError("no rejected instruction found in the kernel")


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_probeable_lists_every_instruction(arch, run_cli):
    status, out, _ = run_cli("probeable", str(firmware(arch)), "pcrel_load")
    assert status == 0
    lines = out.decode().splitlines()
    assert lines[0].split()[1] == "pcrel_load+0x0"
    assert lines[0].endswith("simulated") or lines[0].endswith("out-of-line")
    status, _, err = run_cli("probeable", str(firmware(arch)), "_start")
    assert status == 0
    status, out, _ = run_cli("probeable", str(firmware(arch)), "trap_entry")
    assert all(line.endswith("rejected: function is blacklisted") for line in out.decode().splitlines())
