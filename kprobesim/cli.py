"""The ``kprobesim`` command: run an image (the default verb) and the helper verbs."""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .arch import ARCH_NAMES, get_arch
from .errors import GuestFault, SimError, UsageError
from .image import Image
from .machine import DEFAULT_BUDGET, DEFAULT_TIMEOUT, Machine

VERBS = ("run", "symbols")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, usage status
        raise UsageError(message)


def _image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="kernel image: ELF, or raw bytes with --arch")
    p.add_argument("--arch", help=f"architecture ({', '.join(ARCH_NAMES)}); inferred from an ELF")
    p.add_argument("--base", type=_int, help="load address of a raw image")
    p.add_argument("--entry", type=_int, help="entry point (default: ELF entry, or --base)")
    p.add_argument("--symbols", help="System.map for a raw image (default: one beside it)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kprobesim", description="kprobes and eBPF on real kernel images")
    sub = parser.add_subparsers(dest="verb", parser_class=_Parser)
    run = sub.add_parser("run", help="run an image to its exit (the default verb)")
    _image_args(run)
    run.add_argument("--max-insns", type=_int, default=DEFAULT_BUDGET, help="instruction budget")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="wall-clock limit (s)")
    sym = sub.add_parser("symbols", help="list an image's symbols")
    _image_args(sym)
    sym.add_argument("glob", nargs="?", default="*", help="only names matching this glob")
    return parser


def load_image(args: argparse.Namespace) -> Image:
    """The image named on the command line, with raw-image defaults from the arch's board."""
    path = Path(args.image)
    if args.arch is not None:
        get_arch(args.arch)  # unknown arch: one clear line before touching the file
    symbols = args.symbols
    raw = path.is_file() and path.read_bytes()[:4] != b"\x7fELF"
    if raw and symbols is None and (path.parent / "System.map").is_file():
        symbols = path.parent / "System.map"
    base = args.base
    if raw and base is None and args.arch is not None:
        base = get_arch(args.arch).default_base
    return Image.load(path, arch=args.arch, base=base, entry=args.entry, symbols=symbols)


def cmd_run(args: argparse.Namespace) -> int:
    image = load_image(args)
    out = sys.stdout.buffer

    def console(data: bytes) -> None:
        out.write(data)
        if b"\n" in data:
            out.flush()

    machine = Machine(get_arch(image.arch or ""), image, console=console)
    try:
        status = machine.run(max_insns=args.max_insns, timeout=args.timeout)
    finally:
        out.flush()
    return status


def cmd_symbols(args: argparse.Namespace) -> int:
    image = load_image(args)
    for sym in image.symbols:
        if fnmatch.fnmatchcase(sym.name, args.glob):
            kind = "T" if sym.is_func else "D"
            print(f"{sym.addr:016x} {sym.size:8d} {kind} {sym.name}")
    return 0


COMMANDS = {"run": cmd_run, "symbols": cmd_symbols}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in VERBS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")
    try:
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
