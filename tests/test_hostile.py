"""Hostile input (issue 16): each case ends with one line naming the problem and a documented
exit status (or, through the API, a SimError subclass with a message), on every arch it applies to."""

from __future__ import annotations

import struct

import pytest
from fwpaths import ALL_ARCHES, firmware

from kprobesim.errors import GUEST_STATUS_OTHER, ImageError, ProbeError, SpecError, UsageError
from kprobesim.machine import Machine


def _line(err: str) -> str:
    """The single stderr line of a refused command."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kprobesim: ") and "internal error" not in err and "Traceback" not in err, err
    return lines[0]


def _refused(run_cli, status: int, *argv: str) -> str:
    got, _, err = run_cli(*argv)
    assert got == status, err
    return _line(err)


# -- 1. probes only on kernel text, outside the blacklist ---------------------------------------
@pytest.mark.parametrize("arch", ALL_ARCHES)
@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("pcrel_value", "pcrel_value is data, not kernel text (EINVAL)"),  # .data
        ("jiffies", "jiffies is data, not kernel text"),  # .bss
        ("kstacks+64", "kstacks is data, not kernel text"),  # .stack
        ("boot_tests.arr", "boot_tests.arr is data, not kernel text"),  # .rodata
        ("__nokprobe_trap_handler", "__nokprobe_trap_handler is data, not kernel text"),  # blacklist section
        ("trap_handler", "trap_handler is blacklisted (not probeable)"),  # a blacklisted function
        ("0", "address 0x0 is not in kernel text (EINVAL)"),
        ("0xfffffffffffffff0", "address 0xfffffffffffffff0 is not in kernel text"),
    ],
)
def test_probe_outside_kernel_text_refused(run_cli, arch, target, says):
    line = _refused(run_cli, ProbeError.exit_status, str(firmware(arch)), "--max-insns", "1000", "-p", f"p:x {target}")
    assert says in line


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_unreadable_addresses_refused(run_cli, arch):
    m = Machine.load(firmware(arch))
    base, size = m.arch.ram
    for addr in (base + size - 4, base + size + 0x1000, m.arch.sim_base + 0x10):
        with pytest.raises(ProbeError, match=rf"{addr:#x}"):
            m.kprobe(addr)
    line = _refused(run_cli, ProbeError.exit_status, str(firmware(arch)), "-p", f"p:x {base + size - 4:#x}")
    assert "not in kernel text" in line


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_api_refuses_data_and_blacklist(arch):
    m = Machine.load(firmware(arch))
    with pytest.raises(ProbeError, match="jiffies is data, not kernel text"):
        m.kprobe("jiffies")
    with pytest.raises(ProbeError, match="jiffies is data"):
        m.kretprobe("jiffies")
    with pytest.raises(ProbeError, match="blacklisted"):
        m.kprobe(m.image.symbol("trap_handler").addr)
    assert not m.probes.sites  # nothing was patched
    before = m.read(m.image.symbol("pcrel_value").addr, 8)
    with pytest.raises(ProbeError):
        m.kprobe("pcrel_value")
    assert m.read(m.image.symbol("pcrel_value").addr, 8) == before


def test_raw_image_text_comes_from_system_map(run_cli):
    line = _refused(
        run_cli,
        ProbeError.exit_status,
        "--arch",
        "riscv64",
        str(firmware("riscv64", "kernel.bin")),
        "-p",
        "p:x jiffies",
    )
    assert "jiffies is data, not kernel text" in line


# -- 3. spec parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("p:x 08", "bad probe location '08'"),
        ("p:x fib+08", "bad probe location 'fib+08'"),
        ("p:x fib +08(%sp)", "cannot parse fetch argument '+08(%sp)'"),
        ("p:x \u0661\u0662\u0663", "bad probe location"),
        ("r\u0661\u0660:x fib", "bad probe head"),
        ("p:x fib \\\u0661", "bad immediate"),
        ("p:x fib $arg\u0661", "unknown variable"),
        ("p:x fib +0($comm)", "$comm is a string and cannot be dereferenced"),
        ("r0:x fib", "MAXACTIVE must be 1..4096"),
        ("r4097:x fib", "MAXACTIVE must be 1..4096"),
        ("p:x fib " + "+0(" * 15 + "%sp" + ")" * 15, "more than 14 nested dereferences"),
        ("p:x fib " + "+0(" * 1000 + "%sp" + ")" * 1000, "more than 14 nested dereferences"),
        ("p:x fib+0x10000000000000000", "bad offset in probe location"),
    ],
)
def test_bad_specs(run_cli, spec, says):
    line = _refused(run_cli, SpecError.exit_status, str(firmware("riscv64")), "-p", spec)
    assert says in line


def test_kernel_number_syntax_in_specs():
    """Numbers read as Linux's kstrtoul(.., 0): a leading 0 is octal, 14 dereferences are fine."""
    from kprobesim.trace.spec import parse

    assert parse("p:x fib+010").target == "fib+010"
    assert parse("p:x fib \\010").args[0].arg.value == 8
    assert parse("p:x fib -010(%sp)").args[0].arg.value == -8
    assert parse("p:x fib " + "+0(" * 14 + "%sp" + ")" * 14).args[0].arg.kind == "deref"
    m = Machine.load(firmware("riscv64"))
    fib = m.image.symbol("fib").addr
    assert m.kprobe("fib+010").addr == fib + 8  # octal, as the kernel reads it


@pytest.mark.parametrize("spec", ["fib+-4", "fib-4", "fib+08", "fib+", "+4", "fib+0x", "\u0661\u0662"])
def test_api_bad_locations(spec):
    m = Machine.load(firmware("riscv64"))
    with pytest.raises(ProbeError, match="bad (probe location|offset)"):
        m.kprobe(spec)


@pytest.mark.parametrize("bad", [None, 3.5, b"fib", -1, 1 << 64, True, ["fib"]])
def test_api_bad_location_types(bad):
    m = Machine.load(firmware("riscv64"))
    with pytest.raises(ProbeError, match="probe location|64-bit address"):
        m.kprobe(bad)


@pytest.mark.parametrize("maxactive", [0, -1, 2.5])
def test_api_bad_maxactive(maxactive):
    m = Machine.load(firmware("riscv64"))
    with pytest.raises(ProbeError, match="maxactive must be a positive number"):
        m.kretprobe("fib", maxactive=maxactive)


# -- 6. exit statuses -----------------------------------------------------------------------------
def _riscv_exit(status: int) -> bytes:
    """A raw riscv64 image writing ``status << 16 | 0x3333`` (0: 0x5555) to the SiFive test device."""
    value = status << 16 | 0x3333 if status else 0x5555
    hi, lo = (value + 0x800) >> 12, value & 0xFFF
    lo = lo - 0x1000 if lo >= 0x800 else lo
    return struct.pack(
        "<5I",
        0x100 << 12 | 5 << 7 | 0x37,  # lui t0, 0x100 (the test device)
        (hi & 0xFFFFF) << 12 | 6 << 7 | 0x37,  # lui t1, hi
        (lo & 0xFFF) << 20 | 6 << 15 | 6 << 7 | 0x13,  # addi t1, t1, lo
        6 << 20 | 5 << 15 | 2 << 12 | 0x23,  # sw t1, 0(t0)
        0x6F,  # j .
    )


def _loongarch_exit(status: int) -> bytes:
    """The same for loongarch64's test device at 0x100d0000."""
    value = status << 16 | 0x3333 if status else 0x5555
    return struct.pack(
        "<5I",
        0x14000000 | 0x100D0 << 5 | 12,  # lu12i.w $t0, 0x100d0
        0x14000000 | (value >> 12) << 5 | 13,  # lu12i.w $t1, value >> 12
        0x03800000 | (value & 0xFFF) << 10 | 13 << 5 | 13,  # ori $t1, $t1, value & 0xfff
        0x29800000 | 12 << 5 | 13,  # st.w $t1, $t0, 0
        0x50000000,  # b .
    )


def _x86_exit(status: int) -> bytes:
    return bytes([0xB0, status, 0xE6, 0xF4, 0xEB, 0xFE])  # mov al, status; out 0xf4, al; jmp .


EXITS = {"riscv64": _riscv_exit, "loongarch64": _loongarch_exit, "x86_64": _x86_exit}


@pytest.mark.parametrize("arch", ALL_ARCHES)
@pytest.mark.parametrize("status", [0, 5, 63, 64, 66, 79, 99, 124, 125, 130, 255, 256, 257, 0xFFFF])
def test_guest_exit_status_mapping(run_cli, tmp_path, arch, status):
    if arch == "x86_64" and status > 255:
        pytest.skip("x86_64's exit port takes one byte")
    image = tmp_path / "exit.bin"
    image.write_bytes(EXITS[arch](status))
    got, _, err = run_cli("--arch", arch, str(image), "--max-insns", "10000")
    assert Machine.load(image, arch=arch).run(max_insns=10_000) == status  # the API keeps it whole
    if 0 <= status <= 63 or 80 <= status <= 123:
        assert got == status and err == ""
    else:
        assert got == GUEST_STATUS_OTHER
        assert _line(err) == (
            f"kprobesim: guest exited with status {status}, reported as {GUEST_STATUS_OTHER} "
            "(outside 0..63 and 80..123, which pass through)"
        )


# -- 7. option values -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "nan"),
        ("--timeout", "inf"),
        ("--timeout", "-inf"),
        ("--timeout", "1e400"),
        ("--timeout", "0"),
        ("--timeout", "-1"),
        ("--max-insns", "-1"),
        ("--max-insns", "0"),
        ("--max-insns", str(1 << 70)),
        ("--max-insns", "1e3"),
    ],
)
def test_bad_option_values(run_cli, option, value):
    line = _refused(run_cli, UsageError.exit_status, str(firmware("riscv64")), f"{option}={value}")
    assert option in line and repr(value) in line


@pytest.mark.parametrize("kwargs", [{"max_insns": -1}, {"max_insns": 0}, {"timeout": float("nan")}, {"timeout": 1e400}])
def test_api_bad_run_limits(kwargs):
    m = Machine.load(firmware("riscv64"))
    with pytest.raises(UsageError, match="must be a positive"):
        m.run(**kwargs)
