"""Runner for bpf_conformance ``.data`` files (github.com/Alan-Jowett/bpf_conformance).

A file has sections introduced by ``-- name`` lines: ``asm`` (the program, assembled by our
assembler) or ``raw`` (64-bit hex words), optional ``mem`` (hex bytes of the input buffer:
r1 = its address, r2 = its length), and ``result`` (expected r0) or ``error`` (a failure is
expected).  Each program is run in both the interpreter and the translator, at CPU v4; both must
match the expectation and each other (r0, memory contents, error).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..files import read_regular
from . import isa
from .asm import assemble, parse_int
from .errors import AsmError, EbpfError, StopProgram
from .isa import Insn
from .vm import VM

#: Where a checkout finds the suite by default: ``../shared/ebpf-conformance`` beside the
#: repository root (the suite is third-party text and is not part of the repository).
DEFAULT_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "ebpf-conformance"


def conformance_dir() -> Path:
    """The suite's folder: ``$KPROBESIM_CONFORMANCE_DIR``, else ``../shared/ebpf-conformance``
    relative to the repository root."""
    env = os.environ.get("KPROBESIM_CONFORMANCE_DIR")
    return Path(env) if env else DEFAULT_DIR


def _unwind(vm: VM, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
    """Helper 5 of the suite (uBPF's "unwind"): returns its argument; 0 ends the program."""
    if r1 == 0:
        raise StopProgram(0)
    return r1


#: Helper table used for conformance runs.
HELPERS = {5: _unwind}


@dataclass
class TestCase:
    name: str
    insns: list[Insn]
    mem: bytes = b""
    result: int | None = None
    expect_error: str | None = None
    raw: list[Insn] | None = None
    sections: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one engine did: r0, or an error message; plus the final ``mem`` contents."""

    r0: int | None
    error: str | None
    mem: bytes

    def __str__(self) -> str:
        return f"error ({self.error})" if self.error is not None else f"{self.r0:#x}"


@dataclass
class Result:
    name: str
    expected: str
    interp: Outcome | None
    translated: Outcome | None
    ok: bool
    problem: str | None = None  # parse/assemble/verifier failure, or raw/asm mismatch

    def line(self) -> str:
        if self.ok:
            return f"PASS {self.name}"
        if self.problem is not None:
            return f"FAIL {self.name}: {self.problem}"
        return (f"FAIL {self.name}: expected {self.expected}, interp {self.interp}, "
                f"translator {self.translated}")


def _sections(text: str) -> tuple[dict[str, str], dict[str, int]]:
    """Section texts, and the file line number just before each section's first line."""
    secs: dict[str, list[str]] = {}
    starts: dict[str, int] = {}
    cur: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("--"):
            cur = line[2:].strip()
            secs[cur] = []
            starts[cur] = lineno
        elif cur is not None:
            secs[cur].append(line)
    return {k: "\n".join(v) + "\n" for k, v in secs.items()}, starts


def _hex_lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.extend(line.split())
    return out


def parse(text: str, name: str = "<data>") -> TestCase:
    """Parse a ``.data`` file's text."""
    secs, starts = _sections(text)
    raw = None
    if "raw" in secs:
        raw = isa.from_words(int(w, 16) for w in _hex_lines(secs["raw"]))
    if "asm" in secs:
        try:
            insns = assemble(secs["asm"])
        except AsmError as e:  # report the line number within the file
            raise AsmError(e.msg, None if e.pc is None else e.pc + starts["asm"]) from None
    elif raw is not None:
        insns = raw
    else:
        raise EbpfError("no -- asm or -- raw section")
    mem = bytes(int(b, 16) for b in _hex_lines(secs.get("mem", "")))
    result = None
    expect_error = None
    if "result" in secs:
        words = _hex_lines(secs["result"])
        if words:
            result = parse_int(words[0]) & isa.MASK64
    if "error" in secs:
        expect_error = secs["error"].strip()
    if result is None and expect_error is None:
        raise EbpfError("no -- result or -- error section")
    return TestCase(name, insns, mem, result, expect_error, raw, secs)


def run_engine(case: TestCase, engine: str, budget: int = 1_000_000) -> Outcome:
    """Load and run ``case`` in one engine (a verifier rejection counts as an error)."""
    mem = bytearray(case.mem)
    try:
        vm = VM(case.insns, HELPERS, engine=engine, budget=budget, name=case.name)  # type: ignore[arg-type]
        args: tuple[int, ...] = (0, 0)
        if mem:
            addr = vm.memory.map_region(mem, True, "mem", temporary=True)
            args = (addr, len(mem))
        r0 = vm.run(args=args)
        return Outcome(r0, None, bytes(mem))
    except EbpfError as e:
        return Outcome(None, str(e), bytes(mem))


def run_case(case: TestCase) -> Result:
    """Run ``case`` in both engines and compare with the expectation and each other."""
    if case.expect_error is not None and case.result is None:
        expected = f"error ({case.expect_error})" if case.expect_error else "error"
    else:
        expected = f"{case.result:#x}"
    if case.raw is not None and "asm" in case.sections and case.raw != case.insns:
        return Result(case.name, expected, None, None, False,
                      "the -- raw words differ from the assembled -- asm")
    a = run_engine(case, "interp")
    b = run_engine(case, "translate")
    if case.result is not None:
        ok_each = [o.error is None and o.r0 == case.result for o in (a, b)]
    else:
        ok_each = [o.error is not None for o in (a, b)]
    same = (a.r0, a.error, a.mem) == (b.r0, b.error, b.mem)
    res = Result(case.name, expected, a, b, all(ok_each) and same)
    if all(ok_each) and not same:
        res.problem = f"engines disagree: interp {a}, translator {b}"
    return res

MAX_DATA_FILE = 16 << 20  # bytes of a .data file


def run_file(path: str | os.PathLike[str]) -> Result:
    """Parse and run one ``.data`` file."""
    p = Path(path)
    name = p.name
    try:
        case = parse(read_regular(p, MAX_DATA_FILE, ".data file", ValueError).decode(), name)
    except (EbpfError, OSError, ValueError) as e:
        return Result(name, "?", None, None, False, f"cannot load: {e}")
    return run_case(case)


def run_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], bool]:
    """One ``PASS name`` / ``FAIL name: ...`` line per file, and whether all passed."""
    lines, ok = [], True
    for path in paths:
        res = run_file(path)
        lines.append(res.line())
        ok &= res.ok
    return lines, ok
