"""Shared types of the per-architecture instruction layer (decode / simulate / step).

Every ``kprobesim.arch.<name>.decode`` classifies an instruction into a :class:`Decision`;
``simulate`` and the step fix-ups work on a :class:`RegView` (registers by architectural
name plus guest memory).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


class Kind(enum.Enum):
    """How a probed instruction is handled."""

    OOL = "out-of-line"
    SIMULATE = "simulated"
    REJECT = "rejected"


@dataclass(frozen=True)
class Decision:
    """The decoder's verdict on one instruction.

    ``text`` is capstone's "mnemonic operands"; ``reason`` names why a REJECT was made;
    ``info`` holds arch-private decoded fields used by simulate() and the step fix-ups.
    """

    kind: Kind
    addr: int
    length: int
    raw: bytes
    text: str
    reason: str = ""
    info: Any = None

    @property
    def end(self) -> int:
        """Address of the next instruction (``addr + length``)."""
        return self.addr + self.length


class DecodeError(Exception):
    """The bytes are not a (supported-length) instruction; the message is one line."""


class SlotError(Exception):
    """The instruction cannot be placed in the requested out-of-line slot (one-line message)."""


@runtime_checkable
class RegView(Protocol):
    """Registers by architectural name ("a0", "sp", "pc", "r4", "rip", "rflags", ...) and memory."""

    def __getitem__(self, name: str) -> int: ...

    def __setitem__(self, name: str, value: int) -> None: ...

    def read_mem(self, addr: int, size: int) -> bytes: ...

    def write_mem(self, addr: int, data: bytes) -> None: ...

    def bits(self, name: str, mask: int) -> int: ...


class DictRegView:
    """A RegView over a dict and a sparse byte memory; for tests and offline simulation.

    ``aliases`` maps alternative names onto canonical ones; ``zero`` names registers that read
    as 0 and ignore writes (riscv ``x0``, loongarch ``r0``). Unset registers read as 0.
    """

    def __init__(
        self,
        regs: Mapping[str, int] | None = None,
        *,
        aliases: Mapping[str, str] | None = None,
        zero: frozenset[str] = frozenset(),
        mem: dict[int, int] | None = None,
    ) -> None:
        self.aliases = dict(aliases or {})
        self.zero = zero
        self.regs: dict[str, int] = {}
        self.mem: dict[int, int] = mem if mem is not None else {}
        for k, v in (regs or {}).items():
            self[k] = v

    def _canon(self, name: str) -> str:
        return self.aliases.get(name, name)

    def bits(self, name: str, mask: int) -> int:
        """``self[name] & mask`` (as :meth:`kprobesim.probes.regs.Regs.bits`)."""
        return self[name] & mask

    def __getitem__(self, name: str) -> int:
        name = self._canon(name)
        if name in self.zero:
            return 0
        return self.regs.get(name, 0)

    def __setitem__(self, name: str, value: int) -> None:
        name = self._canon(name)
        if name not in self.zero:
            self.regs[name] = value & 0xFFFF_FFFF_FFFF_FFFF

    def read_mem(self, addr: int, size: int) -> bytes:
        return bytes(self.mem.get((addr + i) & 0xFFFF_FFFF_FFFF_FFFF, 0) for i in range(size))

    def write_mem(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.mem[(addr + i) & 0xFFFF_FFFF_FFFF_FFFF] = b


MASK64 = 0xFFFF_FFFF_FFFF_FFFF


def sext(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` of ``value`` to a Python int."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def u64(value: int) -> int:
    """Wrap to an unsigned 64-bit value."""
    return value & MASK64


@dataclass(frozen=True)
class PtRegsField:
    """One u64 field of a Linux ``struct pt_regs``: its name, byte offset and source register.

    ``reg`` is the register name a RegView/getter understands, or None for fields that only
    come from ``extra`` (e.g. ``orig_a0``, ``cause``).
    """

    name: str
    offset: int
    reg: str | None


def pack_fields(
    fields: tuple[PtRegsField, ...],
    size: int,
    get: Callable[[str], int],
    extra: Mapping[str, int] | None,
    defaults: Mapping[str, Callable[[Callable[[str], int]], int]],
) -> bytes:
    """Pack u64 pt_regs fields: ``extra``, else the field's register, else ``defaults``, else 0."""
    buf = bytearray(size)
    extra = extra or {}
    for f in fields:
        if f.name in extra:
            v = extra[f.name]
        elif f.reg is not None:
            v = get(f.reg)
        elif f.name in defaults:
            v = defaults[f.name](get)
        else:
            v = 0
        buf[f.offset : f.offset + 8] = u64(v).to_bytes(8, "little")
    return bytes(buf)


def unpack_fields(fields: tuple[PtRegsField, ...], size: int, data: bytes) -> dict[str, int]:
    """Unpack u64 pt_regs fields by name (``data`` must hold at least ``size`` bytes)."""
    if len(data) < size:
        raise ValueError(f"pt_regs needs {size} bytes, got {len(data)}")
    return {f.name: int.from_bytes(data[f.offset : f.offset + 8], "little") for f in fields}


#: ``(op, rd, rs, imm)`` of an instruction that only computes one register from registers and
#: constants: ``add``: rd = rs + imm; ``add32``: rd = sign-extended low 32 bits of rs + imm;
#: ``or``: rd = rs | imm; ``set``: rd = imm; ``addreg``: rd = rd + rs (imm unused).
RegForm = tuple[str, int, int, int]


def register_step(form: RegForm | None, names: tuple[str, ...], pc_name: str, nxt: int
                  ) -> Callable[[RegView], None] | None:
    """The effect of a register-only instruction on a RegView (its result, then ``pc = nxt``),
    for a hit that needs no out-of-line step: such an instruction can neither fault nor read
    or write memory or control state, so computing it is what running it in a slot would do."""
    if form is None:
        return None
    op, rd, rs, imm = form
    dst, src, imm = names[rd], names[rs], imm & MASK64
    if op == "add":

        def run(regs: RegView) -> None:
            regs[dst] = (regs[src] + imm) & MASK64
            regs[pc_name] = nxt
    elif op == "add32":

        def run(regs: RegView) -> None:
            regs[dst] = sext(regs[src] + imm, 32) & MASK64
            regs[pc_name] = nxt
    elif op == "or":

        def run(regs: RegView) -> None:
            regs[dst] = regs[src] | imm
            regs[pc_name] = nxt
    elif op == "set":

        def run(regs: RegView) -> None:
            regs[dst] = imm
            regs[pc_name] = nxt
    elif op == "addreg":

        def run(regs: RegView) -> None:
            regs[dst] = (regs[dst] + regs[src]) & MASK64
            regs[pc_name] = nxt
    else:
        raise ValueError(f"unknown register form {op!r}")
    return run
