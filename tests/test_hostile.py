"""Hostile input (issue 16): each case ends with one line naming the problem and a documented
exit status (or, through the API, a SimError subclass with a message), on every arch it applies to."""

from __future__ import annotations

import os
import struct
import time

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
        ("do_work+0x1000000", "(do_work+0x1000000) is not in kernel text (EINVAL)"),  # not "do_work is data"
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
    assert parse("p:x fib +36(%sp) \\19").args[0].arg.value == 36  # decimal without the leading 0
    assert parse("p:x fib +36(%sp) \\19").args[1].arg.value == 19
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


def test_api_handlers_that_cannot_be_called():
    """Refused when placed, not at the first hit."""
    m = Machine.load(firmware("riscv64"))
    calls = [
        (lambda: m.kprobe("do_work", pre=5), "the pre handler must be callable, not int 5"),
        (lambda: m.kprobe("do_work", post="x"), "the post handler must be callable, not str 'x'"),
        (lambda: m.kretprobe("fib", handler=[]), "the handler must be callable, not list []"),
        (lambda: m.kretprobe("fib", entry=1.5), "the entry handler must be callable, not float 1.5"),
        (lambda: m.uprobe("init:0x0", handler=3), "the handler must be callable, not int 3"),
        (lambda: m.uretprobe("init:main", handler=b""), "the handler must be callable, not bytes b''"),
    ]
    for place, says in calls:
        with pytest.raises(ProbeError) as info:
            place()
        assert str(info.value) == says
    assert not m.probes.sites


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


STATUSES = [0, 5, 63, 64, 66, 79, 99, 124, 125, 130, 255, 256, 257, 0xFFFF]


@pytest.mark.parametrize(
    ("arch", "status"),
    [(a, s) for a in ALL_ARCHES for s in STATUSES if a != "x86_64" or s < 256],  # x86's exit port: one byte
)
def test_guest_exit_status_mapping(run_cli, tmp_path, arch, status):
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


def test_readme_documents_every_exit_status():
    """README's table names each status kprobesim uses, and the guest statuses passed through."""
    import re

    from fwpaths import ROOT

    from kprobesim import errors
    from kprobesim.errors import exit_status_of_guest

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| status | meaning |") :].split("\n\n", 1)[0]
    listed = {int(n) for row in table.splitlines() for n in re.findall(r"\b\d+\b", row.split("|")[1])}
    ours = {c.exit_status for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.SimError)}
    assert listed == ours | {GUEST_STATUS_OTHER}
    assert "0..63 or 80..123" in table
    passing = [s for s in range(300) if exit_status_of_guest(s) == (s, None)]
    assert passing == [*range(64), *range(80, 124)]


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


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--iterations", "-1", "is not a count from 1 to 2**63-1"),
        ("--iterations", "0", "is not a count"),
        ("--iterations", str(1 << 70), "is not a count"),
        ("--jobs", "0", "is not a count"),
        ("--jobs", "100000", "'100000' is more worker processes than the 256 allowed"),  # was 100,000 spawns
    ],
)
def test_bad_fuzz_option_values(run_cli, option, value, says):
    line = _refused(run_cli, UsageError.exit_status, "fuzz", "--arch", "riscv64", option, value)
    assert f"argument {option}: " in line and says in line


@pytest.mark.parametrize("kwargs", [{"max_insns": -1}, {"max_insns": 0}, {"timeout": float("nan")}, {"timeout": 1e400}])
def test_api_bad_run_limits(kwargs):
    m = Machine.load(firmware("riscv64"))
    with pytest.raises(UsageError, match="must be a positive"):
        m.run(**kwargs)


# -- 4. files -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["--arch", "riscv64", "/dev/zero"],
            "/dev/zero: is a device or special file, not a regular file (kernel image)",
        ),
        (["--arch", "riscv64", "/dev/urandom"], "/dev/urandom: is a device or special file"),
        (["symbols", "--arch", "x86_64", "/dev/zero"], "/dev/zero: is a device or special file"),
        (["--arch", "riscv64", "/proc/self/mem"], "/proc/self/mem: cannot read"),
        (["--arch", "riscv64", "/"], "/: is a directory, not a regular file"),
        (
            [str(firmware("riscv64", "kernel.bin")), "--arch", "riscv64", "--symbols", "/dev/zero"],
            "not a regular file (symbol map)",
        ),
        ([str(firmware("riscv64")), "--bpf", "/dev/zero"], "not a regular file (eBPF object)"),
    ],
)
def test_special_files_refused(run_cli, argv, says):
    assert says in _refused(run_cli, ImageError.exit_status, *argv)


def test_fifo_refused_without_blocking(run_cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert "fifo: is a FIFO, not a regular file (kernel image)" in _refused(run_cli, ImageError.exit_status, str(fifo))
    got, out, err = run_cli("ebpf-test", str(fifo))
    assert got == 1 and b"is a FIFO, not a regular file (.data file)" in out
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_huge_sparse_images_refused_at_once(run_cli, tmp_path, arch):
    raw, elf = tmp_path / "big.bin", tmp_path / "big.elf"
    with open(raw, "wb") as f:
        f.truncate(3 << 30)
    with open(elf, "wb") as f:
        f.write(firmware(arch).read_bytes()[:64])
        f.truncate(3 << 30)
    start = time.monotonic()
    line = _refused(run_cli, ImageError.exit_status, "--arch", arch, str(raw))
    assert f"3,221,225,472 bytes is larger than {arch}'s RAM" in line
    assert "larger than the 1,073,741,824 an ELF image may have" in _refused(run_cli, ImageError.exit_status, str(elf))
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_elf_segment_outside_ram_refused_before_reading(tmp_path, arch):
    data = bytearray(firmware(arch).read_bytes())
    phoff = struct.unpack_from("<Q", data, 32)[0]
    struct.pack_into("<Q", data, phoff + 40, 1 << 40)  # first PT_LOAD's memsz
    (tmp_path / "k.elf").write_bytes(data)
    with pytest.raises(ImageError, match=r"segment 0x[0-9a-f]+-0x[0-9a-f]+ is outside .* RAM"):
        Machine.load(tmp_path / "k.elf")


def test_big_and_bad_system_maps(run_cli, tmp_path):
    """A System.map of 100,000 lines (a distribution kernel has ~150,000) loads in linear time
    (the sizes were once found by a quadratic scan: minutes); an address over 64 bits is refused."""
    from kprobesim.image import Image

    big = tmp_path / "big.map"
    big.write_text("".join(f"{0x80000000 + 4 * i:x} T f{i}\n" for i in range(100_000)))
    start = time.monotonic()
    image = Image.load(firmware("riscv64", "kernel.bin"), arch="riscv64", base=0x80000000, symbols=big)
    assert time.monotonic() - start < 10
    assert image.symbol("f99998").size == 4 and image.symbol("f99999").size == 0
    wide = tmp_path / "wide.map"
    wide.write_text("80000000 T start\n1ffffffffffffffff T wide\n")
    line = _refused(run_cli, ImageError.exit_status, "--arch", "riscv64", str(firmware("riscv64", "kernel.bin")),
                    "--symbols", str(wide))
    assert line.endswith("wide.map:2: address 1ffffffffffffffff is not a 64-bit address")


# -- 5. damaged symbol tables ---------------------------------------------------------------------
def _sections(data: bytes) -> list[tuple[int, ...]]:
    (shoff,) = struct.unpack_from("<Q", data, 40)
    (shnum,) = struct.unpack_from("<H", data, 60)
    return [struct.unpack_from("<IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_damaged_symbol_tables_are_a_bad_image(run_cli, tmp_path, arch):
    good = firmware(arch).read_bytes()
    secs = _sections(good)
    symtab = next(i for i, s in enumerate(secs) if s[1] == 2)
    shoff = struct.unpack_from("<Q", good, 40)[0]
    cases = {"cut": (good[:-1], "section header table at file offset")}
    bad = bytearray(good)
    struct.pack_into("<I", bad, shoff + 64 * symtab + 40, 0)  # sh_link: the symbol table's strings
    cases["link"] = (bytes(bad), "its string table (section 0) is not a string table")
    bad = bytearray(good)
    struct.pack_into("<Q", bad, shoff + 64 * symtab + 56, 23)  # sh_entsize
    cases["entsize"] = (bytes(bad), "entry size 23 (expected 24)")
    bad = bytearray(good)
    struct.pack_into("<I", bad, secs[symtab][4] + 24, 0xFFFFFF)  # symbol 1's name offset
    cases["name"] = (bytes(bad), "symbol 1 names string offset 0xffffff beyond '.strtab'")
    strtab = secs[secs[symtab][6]]
    bad = bytearray(good[: strtab[4] + strtab[5]])
    bad[-1:] = b"x"  # the last name loses its terminator
    bad += good[strtab[4] + strtab[5] :]
    cases["unterminated"] = (bytes(bad), "the last name of '.strtab' is not terminated")
    bad = bytearray(good)
    bad[shoff + 64 * symtab + 4] ^= 1  # sh_type: SHT_SYMTAB becomes SHT_STRTAB, hiding every symbol
    cases["type"] = (bytes(bad), f"section {symtab} '.symtab' has type 0x3, not 2 (a symbol table)")
    bad = bytearray(good)
    struct.pack_into("<Q", bad, shoff + 64 * secs[symtab][6] + 24, secs[secs[symtab][6]][4] + 1)  # strings moved
    cases["moved"] = (bytes(bad), "its string table '.strtab' does not start with a NUL byte")
    bad = bytearray(good)
    struct.pack_into("<Q", bad, shoff + 64 * symtab + 32, 1 << 40)  # sh_size
    cases["size"] = (bytes(bad), f"section {symtab} '.symtab' at file offset")
    for label, (data, says) in cases.items():
        path = tmp_path / f"{label}.elf"
        path.write_bytes(data)
        line = _refused(run_cli, ImageError.exit_status, str(path), "-p", "p:x do_work")
        assert f"{path}: damaged ELF: " in line and says in line, (label, line)


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_unknown_program_header_types_are_quiet(run_cli, tmp_path, arch):
    """Program headers of types nobody knows (lief printed a warning for each) load quietly."""
    data = bytearray(firmware(arch).read_bytes())
    (phoff,) = struct.unpack_from("<Q", data, 32)
    (phnum,) = struct.unpack_from("<H", data, 56)
    others = [i for i in range(phnum) if struct.unpack_from("<I", data, phoff + 56 * i)[0] != 1]  # not PT_LOAD
    assert others
    for i in others:
        struct.pack_into("<I", data, phoff + 56 * i, 0x7FFF1234)
    (tmp_path / "k.elf").write_bytes(data)
    got, out, err = run_cli("symbols", str(tmp_path / "k.elf"), "do_work")
    assert (got, err) == (0, "") and b"do_work" in out


# -- 8. eBPF: printk field widths, attach points off kernel text ----------------------------------
_BPF_PRELUDE = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include "kprobesim_tracing.h"\n'
_BPF_LICENSE = '\nchar LICENSE[] SEC("license") = "GPL";\n'
_BPF_WIDTHS = r"""
SEC("kprobe/do_work")
int widths(struct pt_regs *ctx)
{
	long a = bpf_printk("%8388608d", 1);
	long b = bpf_printk("%999999999999d", 1);
	long c = bpf_printk("[%-3d]", 7);
	long d = bpf_printk("%8388607d", 2);
	bpf_printk("rc %ld %ld %ld", a, b, c);
	bpf_printk("rc %ld", d);
	return 0;
}
"""


def _bpf(tmp_path, arch: str, body: str) -> str:
    import subprocess
    import sys

    from fwpaths import ROOT

    target = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}[arch]
    src, out = tmp_path / f"p.{arch}.c", tmp_path / f"p.{arch}.o"
    src.write_text(_BPF_PRELUDE + body + _BPF_LICENSE)
    include = ROOT / "kprobesim" / "ebpf" / "include"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", "-O2", "-c"]
    cmd += [f"-I{include}", "-I/usr/include", f"-D__TARGET_ARCH_{target}", str(src), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return str(out)


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_bpf_printk_field_widths(run_cli, tmp_path, arch):
    obj = _bpf(tmp_path, arch, _BPF_WIDTHS)
    start = time.monotonic()
    got, out, err = run_cli(str(firmware(arch)), "--bpf", obj)
    assert got == 0 and err == "", err
    lines = [line.split("bpf_trace_printk: ", 1)[1] for line in out.decode().splitlines() if "bpf_trace_printk" in line]
    # EINVAL for widths past Linux's FIELD_WIDTH_MAX (24-bit field width); "[7  ]" is 5 long;
    # the widest legal field fills the 512-byte output buffer (511 characters) and no more.
    assert lines[:4] == ["[7  ]", " " * 511, "rc -22 -22 5", "rc 511"]
    assert time.monotonic() - start < 60


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ("kprobe/0x0", "address 0x0 is not in kernel text (EINVAL)"),
        ("kprobe/jiffies", "jiffies is data, not kernel text (EINVAL)"),
        ("kretprobe/pcrel_value", "pcrel_value is data, not kernel text (EINVAL)"),
        ("kprobe/__nokprobe_trap_handler", "__nokprobe_trap_handler is data, not kernel text"),
        ("kprobe/trap_handler", "trap_handler is blacklisted"),
    ],
)
@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_bpf_sections_off_kernel_text(run_cli, tmp_path, arch, section, says):
    obj = _bpf(tmp_path, arch, f'SEC("{section}")\nint prog(struct pt_regs *ctx) {{ return 0; }}\n')
    line = _refused(run_cli, ProbeError.exit_status, str(firmware(arch)), "--bpf", obj)
    assert says in line and "program 'prog'" in line


# -- 9. API safety --------------------------------------------------------------------------------
_PLAIN: dict[str, tuple[int, str]] = {}


def _plain_run(arch: str) -> tuple[int, str]:
    """Status and console of the unprobed kernel."""
    if arch not in _PLAIN:
        m = Machine.load(firmware(arch))
        _PLAIN[arch] = (m.run(), m.console)
    return _PLAIN[arch]


#: Every arch, and x86_64's other step variant (int3 ends the out-of-line step, not TF).
VARIANTS = [*ALL_ARCHES, "x86_64-int3"]


def _load(variant: str) -> Machine:
    """The bundled kernel of ``variant``'s arch, probes stepped with its step variant."""
    from kprobesim.arch import get_arch
    from kprobesim.image import Image

    arch, _, step = variant.partition("-")
    return Machine(get_arch(arch), Image.load(firmware(arch)), step_variant=step or None)


def _ool_site(m: Machine, func: str = "do_work") -> int:
    """The first instruction of ``func`` stepped out of line."""
    from kprobesim.probes.insn import Kind

    sym = m.image.symbol(func)
    for addr in m.probes.decode.boundaries(m.probes.original(sym.addr, sym.size), sym.addr):
        if m.probes.classify(addr).kind is Kind.OOL:
            return addr
    raise AssertionError(f"no out-of-line instruction in {func}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_pre_handler_unregistering_its_own_probe(variant):
    m = _load(variant)
    addr = _ool_site(m)
    seen = []

    def pre(p, regs):
        seen.append(regs.pc)
        p.unregister()
        return 0

    kp = m.kprobe(addr, pre=pre)
    assert (m.run(), m.console) == _plain_run(variant.split("-")[0])
    assert kp.hits == 1 and len(seen) == 1 and not m.probes.sites and not m.probes.slots.in_use


@pytest.mark.parametrize("variant", VARIANTS)
def test_handler_exception_leaves_the_pc_at_the_probe(variant):
    from kprobesim.errors import HandlerError

    m = _load(variant)
    addr = _ool_site(m)

    def pre(p, regs):
        raise RuntimeError("boom")

    kp = m.kprobe(addr, pre=pre)
    with pytest.raises(HandlerError, match="raised RuntimeError: boom"):
        m.run()
    assert m.pc == addr  # x86: not one byte past the int3
    kp.unregister()
    assert (m.run(), m.console) == _plain_run(variant.split("-")[0])  # the kernel resumes where it was


@pytest.mark.parametrize("variant", VARIANTS)
def test_kretprobe_handler_exception_keeps_the_kernel_consistent(variant):
    from kprobesim.errors import HandlerError

    m = _load(variant)
    calls = []

    def handler(inst, regs):
        calls.append(regs.pc)
        if len(calls) == 1:
            raise ValueError("once")

    rp = m.kretprobe("do_work", handler=handler)
    with pytest.raises(HandlerError, match="raised ValueError: once"):
        m.run()
    assert rp.active == 0 and not m.probes.instances  # the instance is not lost mid-return
    assert m.image.lookup(m.pc)[0].name != "do_work"  # back in the caller
    assert (m.run(), m.console) == _plain_run(variant.split("-")[0])
    assert len(calls) == rp.hits >= 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_run_from_a_handler_refused(variant):
    m = _load(variant)
    m.kprobe("do_work", pre=lambda p, regs: m.run(max_insns=10))
    with pytest.raises(UsageError, match="already running"):
        m.run()
    m = _load(variant)  # going back to a snapshot mid-run left the CPU anywhere (a store fault)
    snap = m.snapshot()
    m.kprobe("do_work", pre=lambda p, regs: m.restore(snap))
    with pytest.raises(UsageError, match=r"Machine.restore called while the machine is running \(from inside"):
        m.run()


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_regs_memory_access_errors(arch):
    from kprobesim.errors import GuestFault

    m = Machine.load(firmware(arch))
    outcomes: list[tuple[str, str]] = []
    base, size = m.arch.ram
    calls = [
        lambda r: r.read_mem(base + size, 8),  # just past RAM
        lambda r: r.read_mem(base + size - 4, 8),  # straddling the end of RAM
        lambda r: r.write_mem(m.arch.ram[0] + size + 0x10000, b"x"),
        lambda r: r.read_mem(0xFFFF_FFFF_FFFF_FFF8, 16),
        lambda r: r.read_mem(base, -1),
        lambda r: r.read_mem(base, 1 << 40),
        lambda r: r.read_mem("0", 1),
        lambda r: r.write_mem(base, "text"),
        lambda r: r.read_mem(1 << 64, 1),  # not masked down to address 0
        lambda r: r.write_mem(-(1 << 63) - 1, b"x"),
        lambda r: r.write_mem(m.sim_base + 0x2000, b"xx"),  # a probe slot page
    ]

    def pre(p, regs):
        for call in calls:
            try:
                call(regs)
                outcomes.append(("ok", ""))
            except (GuestFault, ProbeError) as e:
                outcomes.append((type(e).__name__, str(e)))
        p.unregister()

    m.kprobe("do_work", pre=pre)
    assert m.run() == 0
    kinds = [k for k, _ in outcomes]
    assert kinds == ["GuestFault"] * 3 + ["ProbeError"] * 8, outcomes
    assert f"read_mem of 8 bytes at {base + size:#x}: not guest memory" == outcomes[0][1]
    assert "run past the end of the address space" in outcomes[3][1]
    assert "size -1 is not 0..16777216 bytes" in outcomes[4][1]
    assert "write_mem takes bytes, not str" in outcomes[7][1]
    assert outcomes[8][1] == "read_mem: 0x10000000000000000 is not a 64-bit address"
    assert outcomes[9][1] == "write_mem: -0x8000000000000001 is not a 64-bit address"
    slot = m.sim_base + 0x2000
    assert outcomes[10][1] == f"write_mem: 2 bytes at {slot:#x} would overwrite the simulator's own pages"


# -- 10. simulator pages --------------------------------------------------------------------------
def _sim_access_guest(arch: str, addr: int, store: bool) -> bytes:
    """A raw guest that loads from or stores to ``addr`` (no trap vector), then spins."""
    if arch == "riscv64":  # lui t0, addr >> 13; slli t0, t0, 1 (no sign extension); ld/sd t1, 0(t0)
        words = [(addr >> 13) << 12 | 5 << 7 | 0x37, 0x00129293, 0x0062B023 if store else 0x0002B303, 0x6F]
    elif arch == "loongarch64":  # lu12i.w $t0, addr >> 12; st.d/ld.d $t1, $t0, 0; b .
        access = (0x29C00000 if store else 0x28C00000) | 12 << 5 | 13
        words = [0x14000000 | (addr >> 12 & 0xFFFFF) << 5 | 12, access, 0x50000000]
    else:  # movabs rax, addr; mov [rax], rbx / mov rbx, [rax]; jmp .
        return b"\x48\xb8" + struct.pack("<Q", addr) + (b"\x48\x89\x18" if store else b"\x48\x8b\x18") + b"\xeb\xfe"
    return struct.pack(f"<{len(words)}I", *words)


@pytest.mark.parametrize("arch", ALL_ARCHES)
@pytest.mark.parametrize("part", ["slots", "trampolines"])
@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_guest_cannot_read_or_write_simulator_pages(tmp_path, arch, part, store):
    """Kprobe slot pages and the read/write/execute pool behind them (x86's ring-change
    trampoline and shadow GDT) are execute-only to the guest: a load or a store there is the
    guest's own access fault, and the pages keep their bytes."""
    from kprobesim.arch import get_arch
    from kprobesim.errors import GuestFault
    from kprobesim.image import Image
    from kprobesim.machine import SIM_POOL, SLOT_PERMS

    a = get_arch(arch)
    addr = a.sim_base + (0x2000 if part == "slots" else SIM_POOL[SLOT_PERMS])  # x86: its trampoline
    (tmp_path / "g.bin").write_bytes(_sim_access_guest(arch, addr, store))
    m = Machine(a, Image.load(tmp_path / "g.bin", arch=arch, base=a.default_base))
    size = sum(SIM_POOL.values())
    m.engine.mem_write(a.sim_base, bytes(range(256)) * (size // 256))  # the simulator's own bytes
    with pytest.raises(GuestFault) as info:
        m.run(max_insns=1000)
    assert f"{'store' if store else 'load'} access fault at {addr:#x}" in str(info.value)
    assert bytes(m.engine.mem_read(a.sim_base, size)) == bytes(range(256)) * (size // 256)
