"""Evaluate fetch arguments against trapped registers and guest memory, and format them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn import UcError

from kprobesim.errors import SpecError
from kprobesim.task import current_task

from .spec import Arg, FetchArg

if TYPE_CHECKING:
    from kprobesim.machine import Machine
    from kprobesim.probes.regs import Regs

MASK64 = (1 << 64) - 1
MAX_STRING = 256


class Fault(Exception):
    """A fetch touched memory the guest does not have (printed as ``(fault)``, like Linux)."""


def check(fa: FetchArg, machine: Machine) -> None:
    """Refuse, at registration, arguments this machine cannot fetch (unknown register or symbol)."""
    _check_arg(fa.arg, fa.text, machine)


def _check_arg(arg: Arg, text: str, machine: Machine) -> None:
    regs = machine.arch.module("regs")
    if arg.kind == "reg" and arg.value not in regs.REG_IDS:
        raise SpecError(f"'{text}': {machine.arch.name} has no register '%{arg.value}'")
    if arg.kind == "arg" and int(arg.value) > len(regs.ARG_REGS):
        raise SpecError(
            f"'{text}': {machine.arch.name} passes only {len(regs.ARG_REGS)} arguments in registers"
        )
    if arg.kind == "mem":
        _address(str(arg.value), machine, text)
    if arg.inner is not None:
        _check_arg(arg.inner, text, machine)


def _address(target: str, machine: Machine, text: str = "") -> int:
    if target.startswith("+"):  # uprobes' @+OFFSET: an offset into the user program
        from kprobesim.probes.userprog import user_program

        prog = user_program(machine.image)
        if prog is None:
            raise SpecError(f"'{text or target}': @+OFFSET needs a user program, and this image has none")
        return prog.lo + int(machine.image.resolve(target[1:]))
    try:
        return machine.image.resolve(target, signed=True)
    except Exception as e:  # ProbeError from the image: unknown symbol
        raise SpecError(f"'{text or target}': {e}") from None


def _read(machine: Machine, addr: int, size: int) -> bytes:
    try:
        return machine.read(addr & MASK64, size)
    except UcError:
        raise Fault from None


def value(arg: Arg, regs: Regs, machine: Machine) -> int:
    """The raw 64-bit value of ``arg`` (memory arguments are read as u64 here)."""
    k = arg.kind
    if k == "reg":
        return regs[str(arg.value)]
    if k == "arg":
        return regs.arg(int(arg.value))
    if k == "retval":
        return regs.retval
    if k == "stack":
        return int.from_bytes(_read(machine, regs.sp + 8 * int(arg.value), 8), "little")
    if k == "stackptr":
        return regs.sp
    if k == "imm":
        return int(arg.value) & MASK64
    if k == "mem":
        return int.from_bytes(_read(machine, _address(str(arg.value), machine), 8), "little")
    if k == "deref":
        assert arg.inner is not None
        base = value(arg.inner, regs, machine)
        return int.from_bytes(_read(machine, base + int(arg.value), 8), "little")
    raise AssertionError(k)


def _address_of(arg: Arg, regs: Regs, machine: Machine) -> int | None:
    """For memory-like args, the address they read (so narrower types read narrower)."""
    if arg.kind == "mem":
        return _address(str(arg.value), machine)
    if arg.kind == "deref":
        assert arg.inner is not None
        return value(arg.inner, regs, machine) + int(arg.value)
    if arg.kind == "stack":
        return regs.sp + 8 * int(arg.value)
    return None


def fetch(fa: FetchArg, regs: Regs, machine: Machine) -> int | str:
    """Fetch one argument: an int for numeric types, a str for string/symbol/comm."""
    try:
        if fa.arg.kind == "comm":
            return current_task(machine).comm
        if fa.type in ("string", "ustring"):
            # The string lives at the final address: @SYM, +OFF(ARG) -> that address; else the value.
            addr = _address_of(fa.arg, regs, machine) if fa.arg.kind in ("mem", "deref") else None
            return _string(machine, value(fa.arg, regs, machine) if addr is None else addr)
        bits = 64 if fa.type == "symbol" else int(fa.type[1:])
        addr = _address_of(fa.arg, regs, machine)
        if addr is not None:
            raw = int.from_bytes(_read(machine, addr, bits // 8), "little")
        else:
            raw = value(fa.arg, regs, machine) & ((1 << bits) - 1)
        if fa.type == "symbol":
            return machine.image.describe(raw)
        return raw
    except Fault:
        return "(fault)"


def _string(machine: Machine, addr: int) -> str:
    out = bytearray()
    while len(out) < MAX_STRING:
        try:
            chunk = machine.read(addr + len(out), 16)
        except UcError:
            if not out:
                raise Fault from None
            break
        if 0 in chunk:
            out += chunk[: chunk.index(0)]
            break
        out += chunk
    return out[:MAX_STRING].decode("utf-8", "replace")


def render(fa: FetchArg, val: int | str) -> str:
    """Linux's text form: decimal for u/s, 0x-hex for x, quoted strings."""
    if isinstance(val, str):
        if val == "(fault)" or fa.type == "symbol":
            return val
        return '"' + val.replace("\\", "\\\\").replace('"', '\\"') + '"'
    t = fa.type
    bits = int(t[1:])
    if t[0] == "s":
        return str(val - (1 << bits) if val >> (bits - 1) else val)
    if t[0] == "u":
        return str(val)
    return f"{val:#x}"
