"""Command-line conventions: --version, python -m kprobesim, help text and defaults on every
option, unknown commands, JSON stats, hints that name real options, API defaults = CLI defaults."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib

import pytest
from fwpaths import ROOT, firmware

from kprobesim import cli
from kprobesim.arch import ARCH_NAMES, get_arch
from kprobesim.errors import ImageError, UsageError
from kprobesim.machine import Machine


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_is_the_package_version(run_cli):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        run_cli("--version")
    assert exit_.value.code == 0
    proc = subprocess.run([sys.executable, "-m", "kprobesim", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == f"kprobesim {version}"


def test_python_m_kprobesim():
    proc = subprocess.run([sys.executable, "-m", "kprobesim", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: kprobesim")
    assert all(verb in proc.stdout for verb in cli.VERBS)
    proc = subprocess.run(
        [sys.executable, "-m", "kprobesim", "symbols", str(firmware("riscv64")), "do_work"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith(" T do_work")


def test_every_option_of_every_command_has_help_and_shows_its_default():
    for verb, parser in _subparsers(cli.build_parser()).items():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{verb} {action.option_strings or action.dest}: no help text"
            shown = action.default not in (None, False, []) and action.option_strings
            if shown:
                flat = " ".join(text.split())
                assert f"(default: {action.default})" in flat, f"{verb} {action.option_strings}: default not shown"


def test_raw_base_help_matches_the_boards():
    assert cli.RAW_BASES == ", ".join(f"{name} {get_arch(name).default_base:#x}" for name in ARCH_NAMES)


def test_unknown_command_is_reported_as_one(run_cli, tmp_path):
    status, _, err = run_cli("frobnicate", "--arch", "riscv64")
    assert status == UsageError.exit_status
    assert err.strip().splitlines() == [
        "kprobesim: unknown command 'frobnicate' (choose from run, symbols, probeable, compare, fuzz, ebpf-test; "
        "or give an image path)"
    ]
    status, _, err = run_cli(str(tmp_path / "missing.elf"))  # a path: a missing image, as before
    assert status == ImageError.exit_status and "no such file" in err
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF")  # an existing file without a dot is an image
    status, _, err = run_cli(str(tmp_path / "vmlinux"))
    assert status == ImageError.exit_status and "truncated ELF header" in err


def test_stats_under_json_are_json(run_cli):
    status, out, _ = run_cli(
        str(firmware("riscv64")), "--format", "json", "--stats", "-p", "p:dw do_work", "-p", "r64:fr fib"
    )
    assert status == 0
    records = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    stats = [r for r in records if r.get("type") == "stats"]
    assert [(r["event"], r["missed"]) for r in stats] == [("dw", 0), ("fr", 0)]
    hits = {r["event"]: r["hits"] for r in stats}
    assert hits["dw"] == sum(r.get("event") == "dw" and r.get("type") == "kprobe" for r in records) > 0
    assert hits["fr"] == sum(r.get("event") == "fr" and r.get("type") == "kretprobe" for r in records) > 0
    assert not any(line.startswith("  dw ") for line in out.decode().splitlines())  # no text table


def test_fuzz_hint_names_an_option_fuzz_takes(run_cli, monkeypatch, tmp_path):
    import kprobesim.compare

    monkeypatch.chdir(tmp_path)  # no ./firmware here, and no checkout beside the package either
    monkeypatch.setattr(kprobesim.compare, "__file__", str(tmp_path / "pkg" / "kprobesim" / "compare.py"))
    status, _, err = run_cli("fuzz", "--arch", "riscv64", "--iterations", "1")
    assert status == ImageError.exit_status
    assert "no bundled kernel for riscv64" in err and "IMAGE argument" in err and "--image" not in err
    fuzz_options = {o for a in _subparsers(cli.build_parser())["fuzz"]._actions for o in a.option_strings}
    assert "--image" not in fuzz_options


@pytest.mark.parametrize("arch", ["riscv64", "x86_64"])
def test_api_raw_image_defaults_are_the_cli_s(arch):
    """Machine.load of a raw image: the board's base and the System.map beside it, as the CLI."""
    raw = firmware(arch, "kernel.bin")
    args = cli.build_parser().parse_args(["symbols", "--arch", arch, str(raw)])
    from_cli = cli.load_image(args)
    m = Machine.load(raw, arch=arch)
    assert m.image.segments[0].addr == from_cli.segments[0].addr == get_arch(arch).default_base
    assert m.image.symbols == from_cli.symbols and m.image.has_symbol("do_work")
    assert m.image.entry == from_cli.entry
    elf = Machine.load(firmware(arch))
    assert m.image.symbol("do_work").addr == elf.image.symbol("do_work").addr
    assert m.run() == 0 and m.console == (firmware(arch, "transcript.txt")).read_text()
