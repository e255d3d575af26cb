"""Probe specs in Linux's kprobe_events syntax, and their fetch arguments.

    p[:[GRP/]EVENT] SYM[+OFF]|ADDR [FETCHARGS]
    r[MAXACTIVE][:[GRP/]EVENT] SYM[+0] [FETCHARGS]

FETCHARG is ``[NAME=]ARG[:TYPE]`` with ARG one of ``%REG``, ``$argN``, ``$retval`` (return
probes), ``$stackN``, ``$stack``, ``$comm``, ``@SYM[+|-OFF]``, ``@ADDR``, ``\\IMM`` or
``+|-OFF(ARG)`` (a memory dereference), and TYPE one of u8..u64, s8..s64, x8..x64, string,
symbol. Malformed specs raise SpecError naming the offending part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kprobesim.errors import SpecError

TYPES = {f"{k}{n}" for k in "usx" for n in (8, 16, 32, 64)} | {"string", "ustring", "symbol"}
_HEAD = re.compile(
    r"^(?P<kind>[pr])(?P<max>\d+)?(?::(?:(?P<group>[A-Za-z_]\w*)/)?(?P<event>[A-Za-z_][\w.]*))?$"
)
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_DEREF = re.compile(r"^(?P<off>[+-](?:0x[0-9a-fA-F]+|\d+))\((?P<inner>.+)\)$")
_NUM = r"(?:0x[0-9a-fA-F]+|\d+)"


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

    @property
    def is_return(self) -> bool:
        return self.kind == "r"


def _parse_arg(text: str, is_return: bool, whole: str) -> Arg:
    if not text:
        raise SpecError(f"'{whole}': empty fetch argument")
    m = _DEREF.match(text)
    if m:
        return Arg("deref", int(m.group("off"), 0), _parse_arg(m.group("inner"), is_return, whole))
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
    if m := re.fullmatch(r"\$arg(\d+)", text):
        if int(m.group(1)) < 1:
            raise SpecError(f"'{whole}': arguments count from $arg1")
        return Arg("arg", int(m.group(1)))
    if m := re.fullmatch(r"\$stack(\d+)", text):
        return Arg("stack", int(m.group(1)))
    if text.startswith("$"):
        raise SpecError(f"'{whole}': unknown variable '{text}'")
    if text.startswith("\\"):
        try:
            return Arg("imm", int(text[1:], 0))
        except ValueError:
            raise SpecError(f"'{whole}': bad immediate '{text}'") from None
    if text.startswith("@"):
        target = text[1:]
        if re.fullmatch(_NUM, target) or re.fullmatch(rf"[A-Za-z_][\w.]*(?:[+-]{_NUM})?", target):
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
    if not re.fullmatch(rf"(?:[A-Za-z_][\w.]*(?:\+{_NUM})?|{_NUM})", target):
        raise SpecError(f"'{text}': bad probe location '{target}'")
    if kind == "r" and "+" in target and int(target.split("+", 1)[1], 0) != 0:
        raise SpecError(f"'{text}': return probes go on a function entry (offset must be 0)")
    event = m.group("event") or f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', target)}_0"
    spec = ProbeSpec(
        kind,
        event,
        m.group("group") or "kprobes",
        target,
        int(m.group("max")) if m.group("max") else None,
        text=text,
    )
    names = set()
    for i, word in enumerate(words[2:], 1):
        fa = parse_fetcharg(word, i, spec.is_return)
        if fa.name in names:
            raise SpecError(f"'{text}': argument name '{fa.name}' used twice")
        names.add(fa.name)
        spec.args.append(fa)
    return spec
