"""Probe specs in Linux's kprobe_events syntax, and their fetch arguments.

    p[:[GRP/]EVENT] SYM[+OFF]|ADDR [FETCHARGS]
    r[MAXACTIVE][:[GRP/]EVENT] SYM[+0] [FETCHARGS]

and Linux's ``uprobe_events`` syntax, told apart by the ``PATH:`` of its location:

    p[:[GRP/]EVENT] PATH:OFFSET|PATH:SYMBOL[+OFF] [FETCHARGS]
    r[:[GRP/]EVENT] PATH:OFFSET|PATH:SYMBOL [FETCHARGS]      (or p ... PATH:LOC%return)

FETCHARG is ``[NAME=]ARG[:TYPE]`` with ARG one of ``%REG``, ``$argN``, ``$retval`` (return
probes), ``$stackN``, ``$stack``, ``$comm``, ``@SYM[+|-OFF]``, ``@ADDR``, ``\\IMM`` or
``+|-OFF(ARG)`` (a memory dereference), and TYPE one of u8..u64, s8..s64, x8..x64, string,
symbol. Malformed specs raise SpecError naming the offending part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kprobesim.errors import SpecError
from kprobesim.numbers import NUMBER, kernel_number

TYPES = {f"{k}{n}" for k in "usx" for n in (8, 16, 32, 64)} | {"string", "ustring", "symbol"}
_HEAD = re.compile(
    r"^(?P<kind>[pr])(?P<max>[0-9]+)?(?::(?:(?P<group>[A-Za-z_]\w*)/)?(?P<event>[A-Za-z_][\w.]*))?$", re.ASCII
)
_NAME = re.compile(r"^[A-Za-z_]\w*$", re.ASCII)
_DEREF = re.compile(rf"^(?P<sign>[+-])(?P<off>{NUMBER})\((?P<inner>.+)\)$", re.ASCII)
_NUM = NUMBER
# Linux compiles a fetch argument into at most FETCH_INSN_MAX (16) fetch operations and refuses
# longer ones ("Too many operations"); the base fetch and the final store take two of them.
MAX_DEREF = 14
MAX_MAXACTIVE = 4096  # Linux's KRETPROBE_MAXACTIVE_MAX


@dataclass(frozen=True)
class Arg:
    """A parsed fetch argument: ``kind`` and its operand; ``deref`` wraps an inner Arg."""

    kind: str  # reg, arg, retval, stack, stackptr, comm, mem, imm, deref
    value: int | str = 0
    inner: Arg | None = None


@dataclass(frozen=True)
class FetchArg:
    """``NAME=ARG:TYPE`` with the defaults filled in."""

    name: str
    arg: Arg
    type: str
    text: str


@dataclass
class ProbeSpec:
    """One ``-p`` definition."""

    kind: str  # "p" or "r"
    event: str
    group: str
    target: str
    maxactive: int | None = None
    args: list[FetchArg] = field(default_factory=list)
    text: str = ""
    user: bool = False  # a uprobe: ``target`` is PATH:OFFSET or PATH:SYMBOL[+OFF]

    @property
    def is_return(self) -> bool:
        return self.kind == "r"


def _parse_arg(text: str, is_return: bool, whole: str, depth: int = 0) -> Arg:
    if not text:
        raise SpecError(f"'{whole}': empty fetch argument")
    m = _DEREF.match(text)
    if m:
        if depth >= MAX_DEREF:
            raise SpecError(f"'{whole}': more than {MAX_DEREF} nested dereferences (too many operations, as Linux)")
        off = kernel_number(m.group("off"))
        if off is None:
            raise SpecError(f"'{whole}': bad dereference offset '{m.group('sign')}{m.group('off')}'")
        inner = _parse_arg(m.group("inner"), is_return, whole, depth + 1)
        if inner.kind == "comm":
            raise SpecError(f"'{whole}': $comm is a string and cannot be dereferenced")
        return Arg("deref", -off if m.group("sign") == "-" else off, inner)
    if text.startswith("%"):
        if not _NAME.match(text[1:]):
            raise SpecError(f"'{whole}': bad register name '{text}'")
        return Arg("reg", text[1:])
    if text == "$retval":
        if not is_return:
            raise SpecError(f"'{whole}': $retval is only valid on return probes (r:)")
        return Arg("retval")
    if text == "$stack":
        return Arg("stackptr")
    if text == "$comm":
        return Arg("comm")
    if m := re.fullmatch(r"\$arg([1-9][0-9]{0,3})", text, re.ASCII):
        return Arg("arg", int(m.group(1)))
    if re.fullmatch(r"\$arg[0-9]+", text, re.ASCII):
        raise SpecError(f"'{whole}': bad argument number '{text}' (arguments count from $arg1)")
    if m := re.fullmatch(r"\$stack([0-9]{1,4})", text, re.ASCII):
        return Arg("stack", int(m.group(1)))
    if text.startswith("$"):
        raise SpecError(f"'{whole}': unknown variable '{text}'")
    if text.startswith("\\"):
        imm = kernel_number(text[1:])
        if imm is None:
            raise SpecError(f"'{whole}': bad immediate '{text}'")
        return Arg("imm", imm)
    if text.startswith("@"):
        target = text[1:]
        if (
            re.fullmatch(_NUM, target, re.ASCII)
            or re.fullmatch(rf"[A-Za-z_][\w.]*(?:[+-]{_NUM})?", target, re.ASCII)
            or re.fullmatch(rf"\+{_NUM}", target, re.ASCII)  # uprobes: an offset into the program
        ):
            return Arg("mem", target)
        raise SpecError(f"'{whole}': bad memory reference '{text}'")
    raise SpecError(f"'{whole}': cannot parse fetch argument '{text}'")


def parse_fetcharg(text: str, index: int, is_return: bool) -> FetchArg:
    """Parse ``[NAME=]ARG[:TYPE]`` (default name ``argN``, default type x64)."""
    name, body = f"arg{index}", text
    if "=" in text and not text.startswith("\\"):
        name, body = text.split("=", 1)
        if not _NAME.match(name):
            raise SpecError(f"'{text}': bad argument name '{name}'")
    type_ = "x64"
    if ":" in body:
        body, type_ = body.rsplit(":", 1)
        if type_ not in TYPES:
            raise SpecError(
                f"'{text}': unknown type '{type_}' (use u8..u64, s8..s64, x8..x64, string, symbol)"
            )
    return FetchArg(name, _parse_arg(body, is_return, text), type_, text)


def parse(text: str) -> ProbeSpec:
    """Parse one kprobe_events line."""
    words = text.split()
    if len(words) < 2:
        raise SpecError(f"'{text}': expected 'p|r[:EVENT] SYMBOL[+OFF] [FETCHARGS]'")
    m = _HEAD.match(words[0])
    if not m:
        raise SpecError(f"'{text}': bad probe head '{words[0]}' (expected p[:EVENT] or r[MAXACTIVE][:EVENT])")
    kind = m.group("kind")
    if m.group("max") and kind != "r":
        raise SpecError(f"'{text}': MAXACTIVE is only valid on return probes")
    target = words[1]
    if ":" in target:
        return _parse_uprobe(text, m, words)
    if not re.fullmatch(rf"(?:[A-Za-z_][\w.]*(?:\+{_NUM})?|{_NUM})", target, re.ASCII) or (
        target[0].isdigit() and kernel_number(target) is None
    ):
        raise SpecError(f"'{text}': bad probe location '{target}'")
    if "+" in target and kernel_number(target.split("+", 1)[1]) is None:
        raise SpecError(f"'{text}': bad offset in probe location '{target}'")
    if kind == "r" and "+" in target and kernel_number(target.split("+", 1)[1]) != 0:
        raise SpecError(f"'{text}': return probes go on a function entry (offset must be 0)")
    maxactive = int(m.group("max")) if m.group("max") else None
    if maxactive is not None and not 0 < maxactive <= MAX_MAXACTIVE:
        raise SpecError(f"'{text}': MAXACTIVE must be 1..{MAX_MAXACTIVE} (Linux rejects r0 and larger values)")
    event = m.group("event") or f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', target)}_0"
    spec = ProbeSpec(
        kind,
        event,
        m.group("group") or "kprobes",
        target,
        maxactive,
        text=text,
    )
    return _with_args(spec, text, words[2:])


def _with_args(spec: ProbeSpec, text: str, words: list[str]) -> ProbeSpec:
    """Add the FETCHARGS ``words`` to ``spec``; each argument name once."""
    names = set()
    for i, word in enumerate(words, 1):
        fa = parse_fetcharg(word, i, spec.is_return)
        if fa.name in names:
            raise SpecError(f"'{text}': argument name '{fa.name}' used twice")
        names.add(fa.name)
        spec.args.append(fa)
    return spec


_ULOC = re.compile(rf"(?P<path>[^:\s]+):(?P<loc>{_NUM}|[A-Za-z_][\w.]*(?:\+{_NUM})?)(?P<ret>%return)?", re.ASCII)


def _parse_uprobe(text: str, head: re.Match[str], words: list[str]) -> ProbeSpec:
    """A ``uprobe_events`` line: ``p|r[:[GRP/]EVENT] PATH:OFFSET|PATH:SYMBOL[+OFF] [FETCHARGS]``."""
    target = words[1]
    m = _ULOC.fullmatch(target)
    if m is None:
        raise SpecError(f"'{text}': bad uprobe location '{target}' (expected PATH:OFFSET or PATH:SYMBOL[+OFF])")
    loc = m.group("loc")
    if loc[0].isdigit() and kernel_number(loc) is None:
        raise SpecError(f"'{text}': bad offset in uprobe location '{target}'")
    if "+" in loc and kernel_number(loc.split("+", 1)[1]) is None:
        raise SpecError(f"'{text}': bad offset in uprobe location '{target}'")
    kind = "r" if m.group("ret") else head.group("kind")
    if m.group("ret") and head.group("kind") == "r":
        raise SpecError(f"'{text}': '%return' goes with 'p', not 'r'")
    if head.group("max"):
        raise SpecError(f"'{text}': uretprobes take no MAXACTIVE (their depth is per task)")
    if kind == "r" and "+" in loc and kernel_number(loc.split("+", 1)[1]) != 0:
        raise SpecError(f"'{text}': return probes go on a function entry (offset must be 0)")
    base = re.sub(r"[^A-Za-z0-9_]", "_", m.group("path").rstrip("/").rsplit("/", 1)[-1]) or "_"
    number = kernel_number(loc)
    suffix = f"{number:#x}" if number is not None else re.sub(r"[^A-Za-z0-9_]", "_", loc) + "_0"
    event = head.group("event") or f"{kind}_{base}_{suffix}"
    spec = ProbeSpec(
        kind, event, head.group("group") or "uprobes", f"{m.group('path')}:{loc}", text=text, user=True
    )
    return _with_args(spec, text, words[2:])
