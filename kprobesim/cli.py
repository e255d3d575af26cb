"""The ``kprobesim`` command: run an image (the default verb) and the helper verbs."""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .arch import ARCH_NAMES, get_arch
from .errors import GuestFault, GuestPanic, ImageError, ProbeError, SimError, UsageError, exit_status_of_guest
from .files import open_regular, read_regular
from .image import Image
from .image import load_image as _load_image
from .linuxguest import BOARD_ARCH, BOOT_BUDGET, BOOT_TIMEOUT
from .machine import DEFAULT_BUDGET, DEFAULT_TIMEOUT, Machine
from .trace.tracer import Tracer

# Each board's load address of a raw image (Arch.default_base; spelled out so that building the
# parser does not import every arch; a test keeps the two equal).
RAW_BASES = "riscv64 0x80000000, loongarch64 0x200000, x86_64 0x100000"
VERBS = ("run", "symbols", "probeable", "compare", "fuzz", "ebpf-test", "verify")


#: A number on the command line: decimal, or hex with 0x (no Python-only forms: 1_000, 0o17, 0b1).
_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|0|[1-9][0-9]*)")


def _int(text: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (decimal, or hex with 0x)")
    return int(text, 0)


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    unit = units.get(text[-1:].upper())
    digits = text[:-1] if unit else text
    if not _NUMBER.fullmatch(digits):
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(digits, 0) * (unit or 1 << 20)  # a bare number is MiB, as QEMU's -m


MAX_COUNT = (1 << 63) - 1


def _count(text: str) -> int:
    """A positive count (instruction budget, iterations, jobs) that fits in 63 bits."""
    n = _int(text)
    if not 0 < n <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count from 1 to 2**63-1")
    return n


MAX_JOBS = 256


def _jobs(text: str) -> int:
    """A number of worker processes: 1..MAX_JOBS (more would only exhaust the host)."""
    n = _count(text)
    if n > MAX_JOBS:
        raise argparse.ArgumentTypeError(f"{text!r} is more worker processes than the {MAX_JOBS} allowed")
    return n


def _seconds(text: str) -> float:
    """A finite, positive number of seconds (nan, inf and overflowing values are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to {MAX_SECONDS:g}")
    return value


MAX_SECONDS = 1e9


class _Help(argparse.HelpFormatter):
    """Help text with each option's default shown (when it has one worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if "%(default)" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, usage status
        raise UsageError(message)


def _image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="kernel image: ELF, or raw bytes with --arch")
    p.add_argument("--arch", help=f"architecture ({', '.join(ARCH_NAMES)}); inferred from an ELF")
    p.add_argument("--base", type=_int, help=f"load address of a raw image (default: the board's: {RAW_BASES})")
    p.add_argument("--entry", type=_int, help="entry point (default: ELF entry, or --base)")
    p.add_argument("--symbols", help="System.map for a raw image (default: one beside it)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kprobesim",
        description="kprobes and eBPF on real kernel images. Without a command, 'run' is meant: "
        "kprobesim IMAGE [options] is kprobesim run IMAGE [options].",
    )
    parser.add_argument("--version", action="version", version=f"kprobesim {__version__}")
    sub = parser.add_subparsers(dest="verb", parser_class=_Parser)
    run = sub.add_parser("run", help="run an image to its exit (the default verb)")
    _image_args(run)
    run.add_argument("--max-insns", type=_count, default=DEFAULT_BUDGET, help="instruction budget")
    run.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="wall-clock limit (s)")
    run.add_argument(
        "-p",
        "--probe",
        action="append",
        default=[],
        metavar="SPEC",
        help="kprobe_events spec: 'p:NAME SYM[+OFF] [FETCHARGS]' or 'r[MAXACTIVE]:NAME SYM [$retval]'; "
        "uprobe_events spec: 'p:NAME PATH:OFFSET|PATH:SYMBOL [FETCHARGS]' or 'r:NAME PATH:SYMBOL [$retval]' "
        "(the bundled firmware's user program is 'init')",
    )
    run.add_argument("--format", choices=("text", "json"), default="text", help="probe output format")
    run.add_argument("--stats", action="store_true", help="print hits/missed per probe at exit")
    run.add_argument("--step", choices=("tf", "int3"), help="x86_64 step variant (default: tf)")
    boards = run.add_argument_group(
        "boards (riscv64 'virt' as QEMU's -machine virt; x86_64 'pc' as QEMU's -kernel)"
    )
    boards.add_argument(
        "--board", choices=("default", "virt", "pc"), default="default",
        help="machine (default: the bundled firmware's)",
    )
    boards.add_argument("-m", "--memory", type=_size, help="virt: RAM size, e.g. 256M (default 256M)")
    boards.add_argument(
        "--bios",
        help="virt firmware: none (the image starts in M-mode), builtin (the simulator's SBI; the image starts in "
        "S-mode at 0x80200000) or an M-mode FILE such as OpenSBI's fw_jump.bin (at 0x80000000, the image at "
        "0x80200000); default: builtin for a Linux Image, else none",
    )
    boards.add_argument(
        "--drive", action="append", default=[], metavar="FILE",
        help="virt: virtio-mmio block device backed by a copy of FILE (repeatable)",
    )
    boards.add_argument("--drive-writable", action="store_true", help="virt: write the drives' files in place")
    boards.add_argument("--virtio-legacy", action="store_true", help="virt: legacy (version 1) virtio-mmio transport")
    boards.add_argument(
        "--input", metavar="TEXT|@FILE",
        help="console input typed into the UART (virt: the run ends once it is answered; pc: offered to COM1 "
        "as the guest reads)",
    )
    boards.add_argument(
        "--input-prompt", default="", metavar="TEXT",
        help="virt: type each --input line once the console ends with TEXT (e.g. '$ ')",
    )
    boards.add_argument(
        "--append", metavar="CMDLINE",
        help="kernel command line (virt: /chosen/bootargs, default empty; pc: default 'console=ttyS0 acpi=off "
        "nolapic noapic nokaslr panic=-1')",
    )
    boards.add_argument(
        "--initrd", metavar="FILE", help="initial ramdisk (virt: its range in /chosen; pc: as the boot protocol says)"
    )
    boards.add_argument("--dtb", metavar="FILE", help="virt: device tree blob to pass instead of the generated one")
    boards.add_argument(
        "--decompress", choices=("guest", "host"),
        help="pc: unpack the bzImage's vmlinux on the host and enter its startup_64 (as the decompressor would "
        "hand over with KASLR off; the default), or run the bzImage's own decompressor in the guest (billions "
        "of instructions)",
    )
    run.add_argument(
        "--bpf",
        action="append",
        default=[],
        metavar="PATH",
        help="eBPF object to load and attach by section (kprobe/SYM[+OFF], kretprobe/SYM); repeatable",
    )
    for flag, meta, text in (
        ("--attach", "PROG=FUNC", "attach eBPF program PROG (kprobe/kretprobe) to FUNC[+OFF]"),
        ("--set", "NAME=VALUE", "set an eBPF global (const volatile, .data, .bss) before load"),
        ("--map-size", "NAME=N", "set an eBPF map's max_entries before load"),
    ):
        run.add_argument(flag, action="append", default=[], metavar=meta, help=text + "; repeatable")
    cmp = sub.add_parser("compare", help="run the same probes on every arch's kernel, side by side")
    cmp.add_argument("--arch", action="append", choices=ARCH_NAMES, help="arches to compare (default: all)")
    cmp.add_argument("--image", action="append", default=[], metavar="ARCH=PATH", help="use PATH for ARCH")
    cmp.add_argument("-p", "--probe", action="append", default=[], metavar="SPEC", help="kprobe_events spec")
    cmp.add_argument("--format", choices=("text", "json"), default="text", help="table or one JSON object")
    cmp.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="EVENT[.FIELD]",
        help="show but do not judge a row (e.g. scheduling-dependent counts)",
    )
    cmp.add_argument("--max-insns", type=_count, help=f"instruction budget of each run (default: {DEFAULT_BUDGET:,}; "
                     f"with --board, of each boot and each run from /init: {BOOT_BUDGET:,})")
    cmp.add_argument("--timeout", type=_seconds, help=f"wall-clock limit of each run in seconds (default: "
                     f"{DEFAULT_TIMEOUT:g}; with --board, of each boot and each run: {BOOT_TIMEOUT:g})")
    linux = cmp.add_argument_group(
        "Linux guests (boot each to its initramfs's /init, place the probes there, run to the end)"
    )
    linux.add_argument(
        "--board", action="append", default=[], choices=BOARD_ARCH,
        help="virt (riscv64 Linux Image), pc (x86_64 bzImage): run that arch's --image on this board; "
        "repeatable, one per arch",
    )
    linux.add_argument("--initrd", action="append", default=[], metavar="ARCH=FILE",
                       help="the initramfs of ARCH's board (needed: its /init is where the probes go in)")
    linux.add_argument("--append", action="append", default=[], metavar="ARCH=CMDLINE",
                       help="kernel command line of ARCH's board (default: the board's, as for run)")
    linux.add_argument("--bios", action="append", default=[], metavar="riscv64=FIRMWARE",
                       help="virt: none, builtin or an M-mode FILE (default: builtin)")
    linux.add_argument("-m", "--memory", action="append", default=[], metavar="riscv64=SIZE",
                       help="virt: RAM size, e.g. 128M (default 256M)")
    fz = sub.add_parser("fuzz", help="fuzz probe placement on a kernel against its unprobed run")
    fz.add_argument("image", nargs="?", help="kernel image (default: the bundled kernel of --arch)")
    fz.add_argument("--arch", required=True, choices=ARCH_NAMES, help="architecture of the kernel")
    fz.add_argument("--func", default="*", metavar="GLOB", help="probe only functions matching this")
    fz.add_argument("--seed", type=_int, default=0, help="random seed (the same seed draws the same placements)")
    fz.add_argument("--iterations", type=_count, default=100, help="placements to draw and check")
    fz.add_argument("--jobs", type=_jobs, default=1, help=f"worker processes (at most {MAX_JOBS})")
    fz.add_argument("--step", choices=("tf", "int3"), help="x86_64 step variant (default: tf)")
    fz.add_argument(
        "--replay", metavar="PLACEMENT", help="check one placement ('p:ADDR,...,r:FUNC,u:ADDR,ur:FUNC')"
    )
    fz.add_argument(
        "--board", choices=("default", "virt", "pc"), default="default",
        help="virt (riscv64 Linux Image), pc (x86_64 bzImage): boot the image with --initrd up to the first "
        "instruction of the initramfs's /init, snapshot there and fuzz from that snapshot",
    )
    fz.add_argument("--initrd", metavar="FILE", help="virt, pc: the initramfs (its /init is where the snapshot is)")
    fz.add_argument("--append", metavar="CMDLINE", help="virt, pc: kernel command line")
    fz.add_argument("-m", "--memory", type=_size, help="virt: RAM size (default 256M)")
    fz.add_argument("--bios", help="virt: firmware (default: builtin for a Linux Image)")
    fz.add_argument("--max-insns", type=_count, default=3_000_000_000,
                    help="virt, pc: instruction budget of the boot")
    fz.add_argument("--timeout", type=_seconds, default=3600.0, help="virt, pc: wall-clock limit of the boot (s)")
    fz.set_defaults(drive=[], drive_writable=False, virtio_legacy=False, input=None, input_prompt="", dtb=None,
                    decompress=None, base=None, entry=None, symbols=None)
    prb = sub.add_parser("probeable", help="list a function's instructions and how each would be probed")
    _image_args(prb)
    prb.add_argument("symbol", help="function name")
    sym = sub.add_parser("symbols", help="list an image's symbols")
    _image_args(sym)
    sym.add_argument("glob", nargs="?", default="*", help="only names matching this glob (default: all)")
    et = sub.add_parser("ebpf-test", help="run bpf_conformance .data files in the interpreter and the translator")
    et.add_argument("files", nargs="+", metavar="FILE", help=".data files (or folders of them)")
    vf = sub.add_parser("verify", help="the verifier's verdict on each kprobe program of an eBPF object")
    vf.add_argument("object", help="eBPF object file (clang -target bpf -g)")
    vf.add_argument("--arch", default="x86_64", help="target arch: struct pt_regs and alignment rules "
                    "(default: x86_64, or the kernel's)")
    vf.add_argument("--kernel", default=None, help="kernel image whose BTF and symbols resolve CO-RE "
                    "relocations and __ksym externs (default: none)")
    vf.add_argument("--log", action="store_true", help="print each processed instruction with the registers "
                    "it defines, like the kernel's verifier log")
    return parser


def load_image(args: argparse.Namespace) -> Image:
    """The image named on the command line, with raw-image defaults from the arch's board (the
    same as ``Machine.load``'s)."""
    return _load_image(args.image, arch=args.arch, base=args.base, entry=args.entry, symbols=args.symbols)


class _Console:
    """Console bytes to stdout a whole line at a time, so trace lines never split one."""

    def __init__(self) -> None:
        self.out = sys.stdout.buffer
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += data
        if b"\n" in data:
            cut = self.pending.rindex(b"\n") + 1
            self.out.write(self.pending[:cut])
            del self.pending[:cut]

    def line(self, text: str) -> None:
        self.out.write(text.encode() + b"\n")

    def close(self) -> None:
        self.out.write(self.pending)
        self.pending.clear()
        self.out.flush()


VIRT_ONLY = ("memory", "bios", "drive", "drive_writable", "virtio_legacy", "input_prompt", "dtb")
PC_ONLY = ("decompress",)
BOARD_OPTIONS = ("append", "initrd", "input")  # both boards


def _only_on(args: argparse.Namespace, board: str) -> None:
    """Refuse the options of a board other than ``board`` (all of them on the default board)."""
    names = {"virt": PC_ONLY, "pc": VIRT_ONLY}.get(board, (*VIRT_ONLY, *PC_ONLY, *BOARD_OPTIONS))
    for name in names:
        if getattr(args, name) not in (None, [], False, ""):
            need = "--board virt" if name in VIRT_ONLY else "--board pc" if name in PC_ONLY else "--board virt or pc"
            raise UsageError(f"--{name.replace('_', '-')} needs {need}")


def _board(args: argparse.Namespace) -> Any:
    """The board the options describe (None for the bundled firmware's)."""
    if args.board == "virt":
        return _virt_board(args)
    if args.board == "pc":
        return _pc_board(args)
    _only_on(args, "default")
    return None


def _virt_board(args: argparse.Namespace) -> Any:
    """The riscv64 virt board the options describe (None for the default board)."""
    _only_on(args, "virt")
    from .board.virt import DEFAULT_MEMORY, Virt, VirtOptions, linux_image_offset

    if args.arch not in (None, "riscv64"):
        raise UsageError(f"--board virt is a riscv64 machine, not {args.arch}")
    text = args.input
    data = None
    if text is not None:
        if text.startswith("@"):
            data = read_regular(Path(text[1:]), 16 << 20, "console input", UsageError)
        else:
            data = text.encode().decode("unicode_escape").encode("latin-1")
    bios = args.bios
    if bios is None:  # S-mode kernels (a Linux Image) get the builtin SBI, others start in M-mode
        bios = "builtin" if linux_image_offset(_head(args.image)) is not None else "none"
    options = VirtOptions(
        memory=args.memory or DEFAULT_MEMORY, drives=args.drive, drive_writable=args.drive_writable,
        legacy_virtio=args.virtio_legacy, input=data, input_prompt=args.input_prompt.encode(), append=args.append or "",
        initrd=args.initrd, dtb=args.dtb, bios=bios,
    )
    return Virt(options)


def linux_image(image: Image) -> bool:
    """A raw Linux ``Image`` without a real symbol table (Debian's System.map is a stub)?"""
    from .board.virt import linux_image_offset

    raw = image.segments[0].data[:64] if image.segments else b""
    return linux_image_offset(raw) is not None and len(image.symbols) < 2


def _head(path: str) -> bytes:
    """The first bytes of an image (empty when it cannot be read: loading it reports why)."""
    try:
        with open_regular(Path(path), "image", ImageError) as f:
            return f.read(64)
    except (ImageError, OSError):
        return b""


def _no_linux_kernel(path: str) -> None:
    """A Linux kernel on the bundled firmware's board would run as a flat binary and fault at
    once: name the board it needs instead."""
    from .board.pc.bzimage import is_bzimage
    from .board.virt import linux_image_offset

    try:
        with open_regular(Path(path), "image", ImageError) as f:
            head = f.read(0x206)
    except (ImageError, OSError):
        return  # loading it reports why
    if is_bzimage(head):
        raise UsageError(f"{path} is a Linux bzImage: boot it with --board pc (the Linux boot protocol)")
    if linux_image_offset(head[:64]) is not None:
        raise UsageError(f"{path} is a Linux Image: boot it with --board virt")


def _pc_board(args: argparse.Namespace) -> Any:
    """The x86_64 pc board the options describe (None for the default board)."""
    _only_on(args, "pc")
    from .board.pc import PcBoard

    if args.arch not in (None, "x86_64"):
        raise UsageError(f"--board pc is an x86_64 machine, not {args.arch}")
    for name in ("base", "entry", "symbols"):
        if getattr(args, name) is not None:
            raise UsageError(f"--{name} does not apply to --board pc (the boot protocol places the kernel)")
    data = b""
    if args.input is not None:
        if args.input.startswith("@"):
            data = read_regular(Path(args.input[1:]), 16 << 20, "console input", UsageError)
        else:
            try:
                data = args.input.encode().decode("unicode_escape").encode("latin-1")
            except (UnicodeDecodeError, UnicodeEncodeError) as e:
                raise UsageError(f"--input: bad escape in {args.input!r}: {e.reason}") from None
    return PcBoard(append=args.append, initrd=args.initrd, decompress=args.decompress or "host", input=data)


def _virt_or_default_image(args: argparse.Namespace, board: Any) -> tuple[Image, Any]:
    """Load the image for the virt board (symbols from kallsyms for a Linux Image) or the default one."""
    if board is not None:
        args.arch = args.arch or "riscv64"
        if args.base is None:
            args.base = board.image_base_for(_head(args.image))
    else:
        _no_linux_kernel(args.image)
    image = load_image(args)
    if board is not None and image.arch != "riscv64":
        raise ImageError(f"{image.path}: a {image.arch} image cannot run on the riscv64 virt board")
    boot_map = None
    if board is not None and linux_image(image):  # symbols from the kernel's own kallsyms
        from .guest.linux import with_kallsyms

        image, boot_map = with_kallsyms(image)
    return image, boot_map


def cmd_run(args: argparse.Namespace) -> int:
    board = _board(args)
    if args.board == "pc":
        image, boot_map = board.load(args.image), None  # symbols: the kernel's kallsyms
    else:
        image, boot_map = _virt_or_default_image(args, board)
    console = _Console()
    arch = get_arch(image.arch or "")
    if args.step and not hasattr(arch.module("decode"), "VARIANTS"):
        raise UsageError(f"--step applies to x86_64 only, not {arch.name}")
    machine = Machine(arch, image, console=console.write, step_variant=args.step, board=board)
    if boot_map is not None:
        machine.boot_maps.append(boot_map)
    machine.trace_sink = console.line
    tracer = Tracer(machine, out=console.line, fmt=args.format)
    for text in args.probe:
        tracer.add(text)
    objects = []
    if args.bpf:
        from .ebpf.loader import load as load_bpf

        attach, globals_ = _pairs("--attach", args.attach), _pairs("--set", args.set)
        sizes = {k: _number(f"--map-size {k}", v) for k, v in _pairs("--map-size", args.map_size).items()}
        for path in args.bpf:
            obj = load_bpf(machine, path, fmt=args.format, attach=attach, globals=globals_, map_sizes=sizes)
            objects.append(obj)
            for line in (*obj.skipped, *obj.unattached()):
                print(f"kprobesim: {line}", file=sys.stderr)
    try:
        status = machine.run(max_insns=args.max_insns, timeout=args.timeout)
    finally:
        console.close()
        for line in machine.uprobe_refusals:
            print(f"kprobesim: {line}", file=sys.stderr)
        for obj in objects:
            sys.stdout.write(obj.format_maps(args.format))
        if args.stats:
            _print_stats(tracer, objects, args.format)
        sys.stdout.flush()
    code, note = exit_status_of_guest(status)
    if note:
        print(note, file=sys.stderr, flush=True)
    return code


def _pairs(flag: str, items: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` arguments of ``flag`` as a dict (UsageError naming a malformed one)."""
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UsageError(f"{flag} {item}: expected NAME=VALUE")
        out[name] = value
    return out


def _number(what: str, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"{what}={text}: not a number") from None


def _print_stats(tracer: Tracer, objects: Sequence[Any], fmt: str) -> None:
    """Hits and misses per probe and per eBPF program (text like kprobe_profile, or JSON lines)."""
    if fmt == "json":
        rows = [(spec.event, p.hits, p.missed) for spec, p in tracer.probes]
        rows += [(f"bpf:{p.name}", p.hits, p.missed) for obj in objects for p in obj.programs.values()]
        for name, hits, missed in rows:
            print(json.dumps({"type": "stats", "event": name, "hits": hits, "missed": missed}, sort_keys=True))
    else:
        print("\n".join([*tracer.stats(), *(line for obj in objects for line in obj.stats())]))
    sys.stdout.flush()


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, render

    images = _arch_pairs("--image", args.image, "PATH")
    machines = _compare_guests(args, images)
    arches = args.arch or (list(machines) if machines else None)
    budget = args.max_insns or (BOOT_BUDGET if machines else DEFAULT_BUDGET)
    timeout = args.timeout or (BOOT_TIMEOUT if machines else DEFAULT_TIMEOUT)
    result = compare(args.probe, arches, images, budget, timeout, args.ignore, machines)
    print(json.dumps(result.as_dict(), sort_keys=True) if args.format == "json" else render(result))
    return 0 if result.agree else 1


def _arch_pairs(flag: str, items: Sequence[str], what: str, arches: Sequence[str] = ARCH_NAMES) -> dict[str, str]:
    """``ARCH=VALUE`` arguments of ``flag``, one per arch (UsageError naming a malformed one)."""
    out: dict[str, str] = {}
    for item in items:
        arch, sep, value = item.partition("=")
        if not sep or arch not in arches:
            raise UsageError(f"{flag} takes ARCH={what} with ARCH one of {', '.join(arches)}, not {item!r}")
        if arch in out:
            raise UsageError(f"{flag} given twice for {arch}")
        out[arch] = value
    return out


def _compare_guests(args: argparse.Namespace, images: dict[str, str]) -> dict[str, Any]:
    """``compare --board``: per arch, a function giving its Linux guest back at ``/init``'s first
    instruction (each booted once, before any run, so a bad option or image stops everything)."""
    from .linuxguest import LinuxGuest, boot_all

    boards: dict[str, str] = {}
    for board in args.board:
        if BOARD_ARCH[board] in boards:
            raise UsageError(f"--board {board} given twice")
        boards[BOARD_ARCH[board]] = board
    linux = tuple(BOARD_ARCH.values())  # the arches a board runs
    initrds = _arch_pairs("--initrd", args.initrd, "FILE", linux)
    appends = _arch_pairs("--append", args.append, "CMDLINE", linux)
    bioses = _arch_pairs("--bios", args.bios, "FIRMWARE", ("riscv64",))
    memories = {}
    for arch, text in _arch_pairs("-m", args.memory, "SIZE", ("riscv64",)).items():
        try:
            memories[arch] = _size(text)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"-m {arch}={text}: {e}") from None
    for flag, given in (("--initrd", initrds), ("--append", appends), ("--bios", bioses), ("-m", memories)):
        for arch in given:
            if arch not in boards:
                board = next(b for b, a in BOARD_ARCH.items() if a == arch)
                raise UsageError(f"{flag} {arch}=... needs --board {board}")
    for arch, board in boards.items():
        if args.arch and arch not in args.arch:
            raise UsageError(f"--board {board} runs {arch}, which --arch leaves out")
        if arch not in images or arch not in initrds:
            raise UsageError(f"--board {board} needs --image {arch}=PATH (the kernel) and --initrd {arch}=FILE "
                             "(its /init is where the probes go in)")
    guests = {
        arch: LinuxGuest(board, images[arch], initrds[arch], appends.get(arch), bioses.get(arch), memories.get(arch))
        for arch, board in boards.items()
    }
    budget, timeout = args.max_insns or BOOT_BUDGET, args.timeout or BOOT_TIMEOUT
    booted = boot_all(list(guests.values()), budget, timeout)
    return {arch: b.restore for arch, b in zip(guests, booted, strict=True)}


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .compare import bundled_kernel
    from .fuzz.placement import Failure, Placement, PlacementFuzzer, fuzz, reproducer

    boot, board_text = None, ""
    if args.board in ("virt", "pc"):
        boot, board_text = _fuzz_boot(args)
        image = args.image
    else:
        for name in ("initrd", "append", "memory", "bios"):
            if getattr(args, name) is not None:
                raise UsageError(f"--{name} needs --board virt{' or pc' if name in ('initrd', 'append') else ''}")
        image = args.image or bundled_kernel(args.arch, hint="give the kernel image as fuzz's IMAGE argument")
        Image.load(image, arch=args.arch)  # a bad or foreign image: one clear line first
    if args.replay:
        fz = PlacementFuzzer(image, args.func, args.step, start=boot)
        reason = fz.check(Placement.parse(args.replay))
        print(f"replay: {'FAIL: ' + reason if reason else 'pass'}")
        return 1 if reason else 0
    tty = sys.stderr.isatty()

    def progress(done: int, failures: int, elapsed: float) -> None:
        rate = done / elapsed if elapsed else 0.0
        bar = "#" * (30 * done // args.iterations)
        print(
            f"\r[{bar:<30}] {done}/{args.iterations} placements, {failures} failures, {rate:.1f}/s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    report = fuzz(
        args.arch, image, args.seed, args.iterations, args.func, args.step, min(args.jobs, args.iterations),
        progress if tty else None,
        boot=boot,
    )
    if tty:
        print(file=sys.stderr)
    failure: Failure
    for failure in report.failures:
        print(f"FAIL iteration {failure.iteration}: {failure.reason}")
        print(f"  reproduce: {reproducer(args.arch, image, failure, args.step, board_text)}")
    print(
        f"fuzz {args.arch}: {report.iterations} placements, {len(report.failures)} failures, "
        f"{report.rate:.1f} placements/s (seed {args.seed})"
    )
    return 1 if report.failures else 0


def _fuzz_boot(args: argparse.Namespace) -> tuple[Any, str]:
    """For ``fuzz --board virt|pc``: a function booting the kernel to the first instruction of
    its initramfs's /init and snapshotting there, and the board options a reproducer repeats."""
    from .guest.initramfs import init_entry
    from .probes.regs import Regs

    arch = {"virt": "riscv64", "pc": "x86_64"}[args.board]
    if args.arch != arch:
        raise UsageError(f"--board {args.board} is an {arch} machine, not {args.arch}")
    if not args.image or not args.initrd:
        raise UsageError(f"fuzz --board {args.board} needs the kernel IMAGE and --initrd (the snapshot is taken "
                         "where its /init starts)")

    def machine() -> Machine:
        if args.board == "pc":
            board = _pc_board(args)
            return Machine(get_arch(arch), board.load(args.image), step_variant=args.step, board=board)
        board = _virt_board(args)
        image, boot_map = _virt_or_default_image(args, board)
        m = Machine(get_arch(arch), image, step_variant=args.step, board=board)
        if boot_map is not None:
            m.boot_maps.append(boot_map)
        return m

    (_pc_board if args.board == "pc" else _virt_board)(args)  # bad options: one line first
    entry = init_entry(read_regular(Path(args.initrd), 1 << 30, "initrd", ImageError))
    first = [machine()]  # a bad image: one line before any boot

    def boot() -> tuple[Machine, Any]:
        m = first.pop() if first else machine()
        m.run_to(entry, max_insns=args.max_insns, timeout=args.timeout)
        in_user_mode = getattr(m.arch.module("step"), "in_user_mode", None)
        if in_user_mode is not None and not in_user_mode(Regs(m)):
            raise SimError(f"stopped at /init's entry {entry:#x} in kernel mode (the kernel runs code there)")
        return m, m.snapshot()

    names = ("initrd", "append", "memory", "bios") if args.board == "virt" else ("initrd", "append")
    text = f" --board {args.board}" + "".join(
        f" --{name} {shlex.quote(str(getattr(args, name)))}" for name in names if getattr(args, name) is not None
    )
    return boot, text


def cmd_ebpf_test(args: argparse.Namespace) -> int:
    from .ebpf.conformance import run_files

    paths: list[Path] = []
    for name in args.files:
        path = Path(name)
        paths.extend(sorted(path.glob("*.data")) if path.is_dir() else [path])
    if not paths:
        raise UsageError("ebpf-test: no .data files given")
    lines, ok = run_files(paths)
    for line in lines:
        print(line)
    failed = sum(not line.startswith("PASS") for line in lines)
    print(f"ebpf-test: {len(lines) - failed} passed, {failed} failed", file=sys.stderr, flush=True)
    return 0 if ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from .ebpf.check import check_object

    machine = Machine.load(args.kernel) if args.kernel else None
    arch = machine.arch.name if machine is not None else args.arch
    get_arch(arch)  # an unknown arch is a usage error
    verdicts = check_object(args.object, arch, machine, args.log)
    for v in verdicts:
        if args.log:
            for line in v.log:
                print(line)
        print(v.line())
    return 0 if all(v.error is None for v in verdicts) else 1


def cmd_probeable(args: argparse.Namespace) -> int:
    image = load_image(args)
    machine = Machine(get_arch(image.arch or ""), image)
    sym = image.symbol(args.symbol)
    if not sym.is_func or not sym.size:
        raise ProbeError(f"'{args.symbol}' is not a function with a known size")
    registry = machine.probes
    blacklisted = sym.addr in registry.blacklist
    for addr in registry.decode.boundaries(registry.original(sym.addr, sym.size), sym.addr):
        d = registry.classify(addr)
        verdict = d.kind.value + (f": {d.reason}" if d.reason else "")
        if blacklisted:
            verdict = "rejected: function is blacklisted"
        where = f"{sym.name}+{addr - sym.addr:#x}"
        if registry.user is not None and registry.user.contains(addr):
            verdict = f"{verdict} (user text: uprobe {registry.user.describe(addr)})"
        print(f"{addr:#018x} {where:<24} {d.raw.hex():<16} {d.text:<36} {verdict}")
    return 0


def cmd_symbols(args: argparse.Namespace) -> int:
    image = load_image(args)
    for sym in image.symbols:
        if fnmatch.fnmatchcase(sym.name, args.glob):
            kind = "T" if sym.is_func else "D"
            print(f"{sym.addr:016x} {sym.size:8d} {kind} {sym.name}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "symbols": cmd_symbols,
    "probeable": cmd_probeable,
    "compare": cmd_compare,
    "fuzz": cmd_fuzz,
    "ebpf-test": cmd_ebpf_test,
    "verify": cmd_verify,
}


def _no_unknown_command(word: str) -> None:
    """``kprobesim WORD ...`` runs the image WORD; a WORD that is no file and does not look like a
    path is a mistyped command, and said to be one."""
    if word.startswith("-") or Path(word).exists() or any(c in word for c in "/\\."):
        return
    raise UsageError(f"unknown command '{word}' (choose from {', '.join(VERBS)}; or give an image path)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] not in VERBS and argv[0] not in ("-h", "--help", "--version"):
            _no_unknown_command(argv[0])
            argv.insert(0, "run")
        args = build_parser().parse_args(argv)
        if args.verb is None:
            raise UsageError("no image given (try 'kprobesim --help')")
        return COMMANDS[args.verb](args)
    except GuestFault as e:
        sys.stdout.flush()
        print(e.line(), file=sys.stderr)
        if e.registers:
            print(e.registers, file=sys.stderr)
        return e.exit_status
    except GuestPanic as e:
        sys.stdout.flush()
        print(e.line(), file=sys.stderr)
        print(e.details(), file=sys.stderr)
        return e.exit_status
    except SimError as e:
        sys.stdout.flush()
        print(e.line(), file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("kprobesim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as e:  # a bug of ours: still one line, traceback on request
        if os.environ.get("KPROBESIM_DEBUG"):
            raise
        print(
            f"kprobesim: internal error: {type(e).__name__}: {e} (set KPROBESIM_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
