"""Compile the P-code of one basic block into a Python function (exec-generated source).

A block function has the signature ``fn(R, vt) -> next_pc``: ``R`` is the register file (a list of
64-bit words, word ``i`` holds register-space bytes ``8*i .. 8*i+7``), ``vt`` the instruction
count (virtual time) at block entry. Registers a block touches live in locals (``r<word>``) and
are written back on every exit. Guest exceptions and memory faults raise :class:`Trap`, leaving
the written registers in the block's locals (the engine copies them from the frame); hooks that
stop or redirect raise :class:`Leave`. The compact form (``CompileCfg.compact``) keeps registers
in ``R`` and calls LD/ST for memory: tier 0's one-instruction snippets.
"""

from __future__ import annotations

import enum
import math
import re
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pypcode

# P-code opcodes as an IntEnum: pypcode's own enum hashes in Python, which the code generator's
# many dictionary lookups feel. ``lift`` converts.
OpCode = enum.IntEnum("OpCode", [(m.name, i) for i, m in enumerate(pypcode.OpCode)])  # type: ignore[misc]
_OPC = {id(m): OpCode[m.name] for m in pypcode.OpCode}
_SPACE_NAMES: dict[Any, str] = {}  # pypcode address space object -> name (they are long-lived)

if TYPE_CHECKING:  # pragma: no cover
    from .arch import ArchModel

M64 = (1 << 64) - 1

# Trap kinds
T_EXC = 1  # guest exception: a = ecode, b = esubcode, c = badv (or None)
T_MEM = 2  # memory fault: a = UC_MEM_* access type, b = address, c = (size, value)
T_IDLE = 3  # idle instruction (LoongArch) / wfi
T_UNIMPL = 4  # unimplemented user-op: a = name
T_INVALID = 5  # undecodable / invalid instruction (reported through the arch's INE path)
T_ARCH = 6  # arch-specific trap, a = tag, handled by ArchModel.on_trap
T_STOP = 7  # emu_stop() during a device access: stop with this instruction unretired


class Trap(Exception):
    """Leave a block at instruction ``idx`` (which started). ``wb``: the raising code wrote the
    block's registers back to ``R`` itself; otherwise they are in the block's locals."""

    __slots__ = ("kind", "idx", "a", "b", "c", "wb")

    def __init__(self, kind: int, idx: int, a: Any = 0, b: Any = 0, c: Any = None, wb: bool = False) -> None:
        # ``args`` is already set by BaseException.__new__ (no super().__init__: raised often)
        self.kind = kind
        self.idx = idx
        self.a = a
        self.b = b
        self.c = c
        self.wb = wb


class Leave(Exception):  # noqa: N818 - control-flow signal, not an error
    """A hook stopped or redirected the block; ``idx`` instructions count as started."""

    def __init__(self, idx: int) -> None:
        super().__init__(idx)
        self.idx = idx


class UnimplementedUserOp(NotImplementedError):
    """A SLEIGH user-op (CALLOTHER) the engine does not implement was executed."""


def mask(size: int) -> int:
    return (1 << (8 * size)) - 1


Vn = tuple[str, int, int]  # (space name, offset, size)


@dataclass(slots=True)
class POp:
    """One P-code op, copied out of pypcode (its properties are slow to query)."""

    opc: OpCode
    out: Vn | None
    ins: list[Vn]
    space: str | None = None  # LOAD/STORE: the address space
    name: str | None = None  # CALLOTHER: the user-op name


@dataclass(slots=True)
class Insn:
    addr: int
    length: int
    raw: bytes
    ops: list[POp]
    mnem: str = ""
    invalid: bool = False  # undecodable: raises the arch's invalid-instruction trap
    meta: dict[str, Any] = field(default_factory=dict)


def pack_insns(insns: list[Insn]) -> tuple[Any, ...]:
    """Decoded instructions as plain tuples (marshal-able, for the disk cache)."""
    return tuple((i.addr, i.length, i.raw, tuple((int(p.opc), p.out, tuple(p.ins), p.space, p.name)
                                                 for p in i.ops), i.mnem, i.invalid, i.meta)
                 for i in insns)


def unpack_insns(packed: tuple[Any, ...]) -> list[Insn]:
    """The inverse of :func:`pack_insns`."""
    return [Insn(addr, length, raw, [POp(OpCode(o), out, list(ins), sp, name)
                                     for o, out, ins, sp, name in ops], mnem, invalid, dict(meta))
            for addr, length, raw, ops, mnem, invalid, meta in packed]


def lift(tx_ops: Any) -> list[tuple[int, int, list[POp]]]:
    """Split a pypcode translation into (address, length, ops) per instruction (at IMARKs)."""
    out: list[tuple[int, int, list[POp]]] = []
    cur: list[POp] = []
    names = _SPACE_NAMES
    opcs = _OPC
    imark, load, store, callother = OpCode.IMARK, OpCode.LOAD, OpCode.STORE, OpCode.CALLOTHER
    for op in tx_ops:
        opc = opcs[id(op.opcode)]
        vns = op.inputs
        if opc == imark:
            v = vns[0]
            cur = []
            out.append((v.offset, v.size, cur))
            continue
        ins = []
        for v in vns:
            sp = v.space
            n = names.get(sp)
            if n is None:
                n = names[sp] = sp.name
            ins.append((n, v.offset, v.size))
        o = op.output
        if o is None:
            out_vn = None
        else:
            sp = o.space
            n = names.get(sp)
            if n is None:
                n = names[sp] = sp.name
            out_vn = (n, o.offset, o.size)
        if opc == load or opc == store:
            cur.append(POp(opc, out_vn, ins[1:], vns[0].getSpaceFromConst().name))
        elif opc == callother:
            cur.append(POp(opc, out_vn, ins[1:], None, vns[0].getUserDefinedOpName()))
        else:
            cur.append(POp(opc, out_vn, ins))
    return out


# ---------------------------------------------------------------- runtime helpers (namespace)


def _sx(v: int, size: int) -> int:
    s = 1 << (8 * size - 1)
    return (v ^ s) - s


def _sdiv(a: int, b: int, size: int) -> int:
    a, b = _sx(a, size), _sx(b, size)
    q = abs(a) // abs(b)
    return (q if (a < 0) == (b < 0) else -q) & mask(size)


def _srem(a: int, b: int, size: int) -> int:
    a, b = _sx(a, size), _sx(b, size)
    r = abs(a) % abs(b)
    return (r if a >= 0 else -r) & mask(size)


def _scarry(a: int, b: int, size: int) -> bool:
    r = _sx(a, size) + _sx(b, size)
    return not (-(1 << (8 * size - 1)) <= r < (1 << (8 * size - 1)))


def _sborrow(a: int, b: int, size: int) -> bool:
    r = _sx(a, size) - _sx(b, size)
    return not (-(1 << (8 * size - 1)) <= r < (1 << (8 * size - 1)))


_FMT = {4: struct.Struct("<f"), 8: struct.Struct("<d")}
_IFMT = {4: struct.Struct("<I"), 8: struct.Struct("<Q")}


def _f(v: int, size: int) -> float:
    if size == 10 or size == 16:
        raise UnimplementedUserOp(f"{size * 8}-bit floating point")
    return _FMT[size].unpack(_IFMT[size].pack(v & mask(size)))[0]


def _fb(x: float, size: int) -> int:
    try:
        return _IFMT[size].unpack(_FMT[size].pack(x))[0]
    except OverflowError:  # single-precision overflow
        return _IFMT[size].unpack(_FMT[size].pack(math.copysign(math.inf, x)))[0]


def _fop(fn: Any) -> Any:
    def op(a: int, b: int, size: int) -> int:
        try:
            return _fb(fn(_f(a, size), _f(b, size)), size)
        except ZeroDivisionError:
            x, y = _f(a, size), _f(b, size)
            if x == 0 or math.isnan(x):
                return _fb(math.nan, size)
            return _fb(math.copysign(math.inf, x) * math.copysign(1, y), size)
        except (OverflowError, ValueError):
            return _fb(math.nan, size)

    return op


def _fsqrt(a: int, size: int) -> int:
    x = _f(a, size)
    return _fb(math.sqrt(x) if x >= 0 else math.nan, size)


def _f2i(a: int, isize: int, osize: int, how: Any) -> int:
    x = _f(a, isize)
    if math.isnan(x) or math.isinf(x):
        return (1 << (8 * osize - 1)) if not (math.isinf(x) and x > 0) else mask(osize) >> 1
    v = how(x)
    lo, hi = -(1 << (8 * osize - 1)), (1 << (8 * osize - 1)) - 1
    return max(lo, min(hi, v)) & mask(osize)


def _fround(a: int, size: int, how: Any) -> int:
    x = _f(a, size)
    if math.isnan(x) or math.isinf(x):
        return a
    return _fb(float(how(x)), size)


HELPERS: dict[str, Any] = {
    "SX": _sx,
    "SDIV": _sdiv,
    "SREM": _srem,
    "SCARRY": _scarry,
    "SBORROW": _sborrow,
    "FADD": _fop(lambda x, y: x + y),
    "FSUB": _fop(lambda x, y: x - y),
    "FMUL": _fop(lambda x, y: x * y),
    "FDIV": _fop(lambda x, y: x / y),
    "FSQRT": _fsqrt,
    "FF": _f,
    "FB": _fb,
    "F2I": _f2i,
    "FROUND": _fround,
    "isnan": math.isnan,
    "trunc": math.trunc,
    "floor": math.floor,
    "ceil": math.ceil,
    "rnd": round,
    "Trap": Trap,
    "Leave": Leave,
    "UnimplementedUserOp": UnimplementedUserOp,
}

_LIT = re.compile(r"-?(0x[0-9a-f]+|\d+)")
_NAMES = re.compile(r"\b(?:[ru][0-9a-f]+|t\d+)\b|R\[\d+\]")
_SIMPLE = re.compile(r"[a-z]\w*|R\[\d+\]")
_CALL = re.compile(r"\b[A-Z][A-Z0-9]*\(")


def lit(s: str) -> bool:
    return _LIT.fullmatch(s) is not None


# ---------------------------------------------------------------- the emitter

_BRANCHES = (
    OpCode.BRANCH,
    OpCode.CBRANCH,
    OpCode.BRANCHIND,
    OpCode.CALL,
    OpCode.CALLIND,
    OpCode.RETURN,
)

_BIN = {
    OpCode.INT_ADD: "({a} + {b} & {M})",
    OpCode.INT_SUB: "({a} - {b} & {M})",
    OpCode.INT_MULT: "({a} * {b} & {M})",
    OpCode.INT_AND: "({a} & {b})",
    OpCode.INT_OR: "({a} | {b})",
    OpCode.INT_XOR: "({a} ^ {b})",
    OpCode.INT_EQUAL: "({a} == {b})",
    OpCode.INT_NOTEQUAL: "({a} != {b})",
    OpCode.INT_LESS: "({a} < {b})",
    OpCode.INT_LESSEQUAL: "({a} <= {b})",
    OpCode.INT_SLESS: "({a} ^ {S} < {b} ^ {S})",
    OpCode.INT_SLESSEQUAL: "({a} ^ {S} <= {b} ^ {S})",
    OpCode.INT_CARRY: "({a} + {b} > {M})",
    OpCode.INT_SCARRY: "SCARRY({a}, {b}, {n})",
    OpCode.INT_SBORROW: "SBORROW({a}, {b}, {n})",
    OpCode.BOOL_AND: "({a} & {b})",
    OpCode.BOOL_OR: "({a} | {b})",
    OpCode.BOOL_XOR: "({a} ^ {b})",
    OpCode.FLOAT_ADD: "FADD({a}, {b}, {n})",
    OpCode.FLOAT_SUB: "FSUB({a}, {b}, {n})",
    OpCode.FLOAT_MULT: "FMUL({a}, {b}, {n})",
    OpCode.FLOAT_DIV: "FDIV({a}, {b}, {n})",
    OpCode.FLOAT_EQUAL: "(FF({a}, {n}) == FF({b}, {n}))",
    OpCode.FLOAT_NOTEQUAL: "(FF({a}, {n}) != FF({b}, {n}))",
    OpCode.FLOAT_LESS: "(FF({a}, {n}) < FF({b}, {n}))",
    OpCode.FLOAT_LESSEQUAL: "(FF({a}, {n}) <= FF({b}, {n}))",
}
# ops whose input size (not output size) defines M / S / n
_IN_SIZED = {
    OpCode.INT_EQUAL,
    OpCode.INT_NOTEQUAL,
    OpCode.INT_LESS,
    OpCode.INT_LESSEQUAL,
    OpCode.INT_SLESS,
    OpCode.INT_SLESSEQUAL,
    OpCode.INT_CARRY,
    OpCode.INT_SCARRY,
    OpCode.INT_SBORROW,
    OpCode.FLOAT_EQUAL,
    OpCode.FLOAT_NOTEQUAL,
    OpCode.FLOAT_LESS,
    OpCode.FLOAT_LESSEQUAL,
}


class CompileError(Exception):
    """The block could not be compiled (a bug or an unsupported P-code construct)."""


@dataclass
class CompileCfg:
    """What a block's code depends on besides its bytes."""

    code_hook: Any = None  # callable(addr) -> bool: emit a code-hook call before this insn
    block_hook: bool = False
    pc_word: int = 0
    # Compact form: registers live in ``R`` (no locals, no write-back), memory through LD/ST.
    # Tier 0 runs such one-instruction snippets for the instructions it does not interpret.
    compact: bool = False
    idx0: int = 0  # index of the first instruction within its block (Trap indices, vt + idx)


class BlockEmitter:
    """Accumulates the Python source of one block."""

    def __init__(self, arch: ArchModel, cfg: CompileCfg) -> None:
        self.arch = arch
        self.cfg = cfg
        self.zero = arch.zero_words
        self.lines: list[Any] = []
        self.compact = cfg.compact
        self.ind = 1
        self.words: set[int] = set()
        self.dirty: set[int] = set()
        self.ntmp = 0
        self.idx = 0
        self.insn: Insn | None = None
        self.uniq: dict[int, tuple[str, int]] = {}
        self.pend: dict[int, tuple[str, set[str]]] = {}
        self.uses: dict[int, int] = {}
        self.defs: dict[int, int] = {}
        self.inline = True
        self.dead = False  # the current control path already left the block

    # -- low level
    def line(self, s: Any) -> None:
        if self.dead:
            return
        if isinstance(s, tuple):
            if self.compact and s[0] != "MARK":
                return  # WB / RELOAD: the register file is always current
            self.lines.append((s[0], self.ind))
        else:
            self.lines.append("    " * self.ind + s)

    def tmp(self) -> str:
        self.ntmp += 1
        return f"t{self.ntmp}"

    def simple(self, expr: str) -> str:
        """Make ``expr`` cheap to repeat: a literal or a local name."""
        if lit(expr) or _SIMPLE.fullmatch(expr):
            return expr
        t = self.tmp()
        self.line(f"{t} = {expr}")
        return t

    def fold(self, expr: str, args: list[str], size: int) -> str:
        if args and all(lit(a) for a in args):
            try:
                v = eval(expr, dict(HELPERS))  # noqa: S307 - our own generated expression
            except Exception:  # noqa: BLE001 - not foldable: keep the expression
                return expr
            return hex(int(v) & mask(size))
        return expr

    # -- registers
    def reg_name(self, w: int) -> str:
        if self.compact:
            return f"R[{w}]"
        self.words.add(w)
        return f"r{w}"

    def rd_reg(self, off: int, size: int) -> str:
        sh = (off & 7) * 8
        if sh + 8 * size <= 64:
            w = self.arch.word(off >> 3)
            if w in self.zero:
                return "0"
            n = self.reg_name(w)
            if sh == 0 and size == 8:
                return n
            if sh == 0:
                return f"({n} & {hex(mask(size))})"
            return f"({n} >> {sh} & {hex(mask(size))})"
        # spans several words
        parts = []
        pos = 0
        o = off
        while pos < 8 * size:
            w, sh = o >> 3, (o & 7) * 8
            take = min(64 - sh, 8 * size - pos)
            p = self.rd_reg(o, take // 8)
            parts.append(f"({p} << {pos})" if pos else p)
            pos += take
            o += take // 8
        return "(" + " | ".join(parts) + ")"

    def wr_reg(self, off: int, size: int, expr: str) -> None:
        sh = (off & 7) * 8
        if sh + 8 * size <= 64:
            w = self.arch.word(off >> 3)
            if w in self.zero:
                if _CALL.search(expr):  # a helper with side effects (csrwr $zero, ...)
                    self.line(f"_ = {expr}")
                return
            n = f"R[{w}]" if self.compact else f"r{w}"
            self.flush_refs(n)
            if not self.compact:
                self.words.add(w)
                self.dirty.add(w)
            if sh == 0 and size == 8:
                self.line(f"{n} = {expr}")
            else:
                keep = M64 & ~(mask(size) << sh)
                self.line(f"{n} = {n} & {hex(keep)} | {expr} << {sh}" if sh else
                          f"{n} = {n} & {hex(keep)} | {expr}")
            return
        v = self.simple(expr)
        pos = 0
        o = off
        while pos < 8 * size:
            w, sh = o >> 3, (o & 7) * 8
            take = min(64 - sh, 8 * size - pos)
            self.wr_reg(o, take // 8, f"({v} >> {pos} & {hex((1 << take) - 1)})")
            pos += take
            o += take // 8

    # -- pending (inlined) unique values
    def flush_refs(self, name: str) -> None:
        for off in [o for o, (_, refs) in self.pend.items() if name in refs]:
            self.materialize(off)

    def materialize(self, off: int) -> None:
        expr, _ = self.pend.pop(off)
        name = f"u{off:x}"
        self.line(f"{name} = {expr}")

    # -- varnodes
    def val(self, vn: Vn) -> str:
        sp, off, size = vn
        if sp == "const":
            return hex(off & mask(size))
        if sp == "register":
            return self.rd_reg(off, size)
        if sp == "unique":
            if off in self.pend:
                expr, _ = self.pend.pop(off)
                dsize = self.uniq[off][1]
                return expr if size >= dsize else f"({expr} & {hex(mask(size))})"
            if off not in self.uniq:
                raise CompileError(f"read of undefined unique {off:#x}")
            name, dsize = self.uniq[off]
            return name if size >= dsize else f"({name} & {hex(mask(size))})"
        if sp == "ram":
            return self.load("ram", hex(off), size)
        raise CompileError(f"varnode in space {sp}")

    def put(self, vn: Vn, expr: str, pure: bool = True) -> None:
        sp, off, size = vn
        if sp == "register":
            self.wr_reg(off, size, expr)
        elif sp == "unique":
            name = f"u{off:x}"
            self.flush_refs(name)
            self.pend.pop(off, None)
            self.uniq[off] = (name, size)
            if (pure and self.inline and self.uses.get(off, 0) == 1
                    and self.defs.get(off, 0) == 1):
                self.pend[off] = (expr, set(_NAMES.findall(expr)))
            else:
                self.line(f"{name} = {expr}")
        elif sp == "ram":
            self.store("ram", hex(off), size, expr)
        elif sp == "const":
            return  # SLEIGH's view of a hardwired-zero destination: the write is discarded
        else:
            raise CompileError(f"write to space {sp}")

    # -- memory
    def load(self, space: str, addr: str, size: int) -> str:
        if space != "ram":
            return self.arch.space_load(self, space, addr, size)
        t = self.tmp()
        if self.compact:
            self.line(f"{t} = LD({addr}, {size}, {self.idx})")
            return t
        a = self.simple(addr)
        if size == 1:
            self.line(f"if VLO <= {a} <= VH1: {t} = RAM[{a} - VLO]")
            self.line(f"else: {t} = LD({a}, 1, {self.idx})")
        elif size in (2, 4, 8):
            self.line(f"if VLO <= {a} <= VH{size}: {t} = U{size}(RAM, {a} - VLO)[0]")
            self.line(f"else: {t} = LD({a}, {size}, {self.idx})")
        else:
            self.line(f"{t} = LD({a}, {size}, {self.idx})")
        return t

    def store(self, space: str, addr: str, size: int, value: str) -> None:
        if space != "ram":
            self.arch.space_store(self, space, addr, size, value)
            return
        if self.compact:
            self.line(f"ST({addr}, {size}, {value}, {self.idx})")
            return
        a = self.simple(addr)
        v = self.simple(value)
        if size == 1:
            self.line(f"if WLO <= {a} <= WH1 and not CP[({a} - WLO) >> 12]: RAM[{a} - WLO] = {v}")
        elif size in (2, 4, 8):
            self.line(f"if WLO <= {a} <= WH{size} and not CP[({a} - WLO) >> 12]: "
                      f"P{size}(RAM, {a} - WLO, {v})")
        else:
            self.line(f"ST({a}, {size}, {v}, {self.idx})")
            return
        self.line(f"else: ST({a}, {size}, {v}, {self.idx})")

    # -- control flow
    def exit(self, target: str) -> None:
        self.line(("WB",))
        self.line(f"return {target}")

    def trap(self, kind: int, a: str = "0", b: str = "0", c: str = "None") -> None:
        # registers written back here (the engine then need not read them from the frame)
        self.line(("WB",))
        self.line(f"raise Trap({kind}, {self.idx}, {a}, {b}, {c}, True)")

    def trap_return(self, kind: int, a: int = 0, b: int = 0) -> None:
        """Leave with a trap by returning it, ``(kind, idx, pc, a, b, None)`` (a constant),
        instead of raising a Trap: for an instruction that always traps and always ends its
        block (the arch's terminators, e.g. breaks), so the engine counts the whole block.
        Raising and catching an exception costs several times a return."""
        self.line(("WB",))
        self.line(f"return ({kind}, {self.idx}, {self.insn.addr:#x}, {a}, {b}, None)")

    # -- ops
    def op(self, p: POp) -> None:
        opc = p.opc
        if opc in _BIN:
            a, b = self.val(p.ins[0]), self.val(p.ins[1])
            size = p.ins[0][2] if opc in _IN_SIZED else p.out[2]  # type: ignore[index]
            n = p.ins[0][2] if opc in _IN_SIZED else size
            sgn = 1 << (8 * n - 1)
            if opc in (OpCode.INT_SLESS, OpCode.INT_SLESSEQUAL) and (lit(a) or lit(b)):
                op = "<" if opc == OpCode.INT_SLESS else "<="
                x = hex(int(a, 0) ^ sgn) if lit(a) else f"({a} ^ {sgn:#x})"
                y = hex(int(b, 0) ^ sgn) if lit(b) else f"({b} ^ {sgn:#x})"
                e = f"({x} {op} {y})"
            else:
                e = _BIN[opc].format(a=a, b=b, M=hex(mask(n)), S=hex(sgn), n=n)
            if opc in (OpCode.INT_ADD, OpCode.INT_SUB, OpCode.INT_OR, OpCode.INT_XOR) and b == "0x0":
                e = a
            elif opc in (OpCode.INT_ADD, OpCode.INT_OR, OpCode.INT_XOR) and a == "0x0":
                e = b
            e = self.fold(e, [a, b], p.out[2])  # type: ignore[index]
            self.put(p.out, e)  # type: ignore[arg-type]
            return
        h = getattr(self, "op_" + opc.name, None)
        if h is None:
            raise CompileError(f"P-code op {opc.name} not supported")
        h(p)

    def op_COPY(self, p: POp) -> None:
        self.put(p.out, self.val(p.ins[0]))  # type: ignore[arg-type]

    def _un(self, p: POp, fmt: str, **kw: Any) -> None:
        a = self.val(p.ins[0])
        osz = p.out[2]  # type: ignore[index]
        isz = p.ins[0][2]
        e = fmt.format(a=a, M=hex(mask(osz)), S=hex(1 << (8 * isz - 1)), n=isz, o=osz, **kw)
        self.put(p.out, self.fold(e, [a], osz))  # type: ignore[arg-type]

    def op_INT_NEGATE(self, p: POp) -> None:
        self._un(p, "({a} ^ {M})")

    def op_INT_2COMP(self, p: POp) -> None:
        self._un(p, "(-{a} & {M})")

    def op_INT_ZEXT(self, p: POp) -> None:
        self._un(p, "{a}")

    def op_INT_SEXT(self, p: POp) -> None:
        self._un(p, "(({a} ^ {S}) - {S} & {M})")

    def op_BOOL_NEGATE(self, p: POp) -> None:
        self._un(p, "({a} ^ 1)")

    def op_POPCOUNT(self, p: POp) -> None:
        self._un(p, "{a}.bit_count()")

    def op_LZCOUNT(self, p: POp) -> None:
        self._un(p, "({bits} - {a}.bit_length())", bits=8 * p.ins[0][2])

    def op_SUBPIECE(self, p: POp) -> None:
        a = self.val(p.ins[0])
        c = p.ins[1][1]
        osz = p.out[2]  # type: ignore[index]
        if c == 0 and osz >= p.ins[0][2]:
            e = a
        elif c == 0:
            e = f"({a} & {hex(mask(osz))})"
        else:
            e = f"({a} >> {8 * c} & {hex(mask(osz))})"
        self.put(p.out, self.fold(e, [a], osz))  # type: ignore[arg-type]

    def op_PIECE(self, p: POp) -> None:
        a, b = self.val(p.ins[0]), self.val(p.ins[1])
        e = f"({a} << {8 * p.ins[1][2]} | {b})"
        self.put(p.out, self.fold(e, [a, b], p.out[2]))  # type: ignore[arg-type,index]

    def _shift(self, p: POp, kind: str) -> None:
        a, b = self.val(p.ins[0]), self.val(p.ins[1])
        size = p.out[2]  # type: ignore[index]
        bits = 8 * size
        M = hex(mask(size))
        S = hex(1 << (bits - 1))
        if lit(b):
            sh = int(b, 0)
            if kind == "l":
                e = "0x0" if sh >= bits else f"({a} << {sh} & {M})"
            elif kind == "r":
                e = "0x0" if sh >= bits else f"({a} >> {sh})"
            else:
                e = f"(({a} ^ {S}) - {S} >> {min(sh, bits - 1)} & {M})"
        else:
            b = self.simple(b)
            if kind == "l":
                e = f"({a} << {b} & {M} if {b} < {bits} else 0)"
            elif kind == "r":
                e = f"({a} >> {b})"
            else:
                e = f"(({a} ^ {S}) - {S} >> {b} & {M})"
        self.put(p.out, self.fold(e, [a, b], size))  # type: ignore[arg-type]

    def op_INT_LEFT(self, p: POp) -> None:
        self._shift(p, "l")

    def op_INT_RIGHT(self, p: POp) -> None:
        self._shift(p, "r")

    def op_INT_SRIGHT(self, p: POp) -> None:
        self._shift(p, "s")

    def _div(self, p: POp, fn: str) -> None:
        a, b = self.val(p.ins[0]), self.val(p.ins[1])
        size = p.out[2]  # type: ignore[index]
        e = f"{fn}({a}, {b}, {size})"
        self.put(p.out, e)  # type: ignore[arg-type]

    def op_INT_DIV(self, p: POp) -> None:
        self._div(p, "DIVU")

    def op_INT_REM(self, p: POp) -> None:
        self._div(p, "REMU")

    def op_INT_SDIV(self, p: POp) -> None:
        self._div(p, "DIVS")

    def op_INT_SREM(self, p: POp) -> None:
        self._div(p, "REMS")

    def op_FLOAT_NEG(self, p: POp) -> None:
        self._un(p, "({a} ^ {S})")

    def op_FLOAT_ABS(self, p: POp) -> None:
        self._un(p, "({a} & ({S} - 1))")

    def op_FLOAT_SQRT(self, p: POp) -> None:
        self._un(p, "FSQRT({a}, {n})")

    def op_FLOAT_NAN(self, p: POp) -> None:
        self._un(p, "isnan(FF({a}, {n}))")

    def op_FLOAT_INT2FLOAT(self, p: POp) -> None:
        self._un(p, "FB(float((({a} ^ {S}) - {S})), {o})")

    def op_FLOAT_FLOAT2FLOAT(self, p: POp) -> None:
        self._un(p, "FB(FF({a}, {n}), {o})")

    def op_FLOAT_TRUNC(self, p: POp) -> None:
        self._un(p, "F2I({a}, {n}, {o}, trunc)")

    def op_FLOAT_CEIL(self, p: POp) -> None:
        self._un(p, "FROUND({a}, {n}, ceil)")

    def op_FLOAT_FLOOR(self, p: POp) -> None:
        self._un(p, "FROUND({a}, {n}, floor)")

    def op_FLOAT_ROUND(self, p: POp) -> None:
        self._un(p, "FROUND({a}, {n}, rnd)")

    def op_LOAD(self, p: POp) -> None:
        a = self.val(p.ins[0])
        t = self.load(p.space, a, p.out[2])  # type: ignore[arg-type,index]
        self.put(p.out, t)  # type: ignore[arg-type]  # a fresh temporary: safe to inline

    def op_STORE(self, p: POp) -> None:
        a = self.val(p.ins[0])
        v = self.val(p.ins[1])
        self.store(p.space, a, p.ins[1][2], v)  # type: ignore[arg-type]

    def op_CALLOTHER(self, p: POp) -> None:
        args = [self.val(v) for v in p.ins]
        r = self.arch.userop(self, p.name, args, p)  # type: ignore[arg-type]
        if p.out is not None:
            if r is None:
                raise CompileError(f"user-op {p.name} gave no value")
            self.put(p.out, r, pure=False)

    # Branch handling for linear (no internal branches) instructions
    def op_BRANCH(self, p: POp) -> None:
        self.exit(hex(p.ins[0][1]))
        self.dead = True

    op_CALL = op_BRANCH

    def op_CBRANCH(self, p: POp) -> None:
        c = self.val(p.ins[1])
        tgt = p.ins[0][1]
        if tgt == self.next_pc:
            return  # `goto inst_next` as the last op
        self.line(f"if {c}:")
        self.ind += 1
        self.exit(hex(tgt))
        self.ind -= 1

    def op_BRANCHIND(self, p: POp) -> None:
        t = self.val(p.ins[0])
        self.exit(self.arch.indirect_target(t))
        self.dead = True

    op_CALLIND = op_BRANCHIND
    op_RETURN = op_BRANCHIND

    def op_MULTIEQUAL(self, p: POp) -> None:  # pragma: no cover - not produced by SLEIGH
        raise CompileError("MULTIEQUAL")

    # -- instructions
    next_pc = 0

    def begin_insn(self, insn: Insn, idx: int) -> None:
        self.idx = idx
        self.insn = insn
        self.next_pc = insn.addr + insn.length
        self.uniq.clear()
        self.pend.clear()
        self.uses.clear()
        self.defs.clear()
        self.dead = False

    def _count(self, ops: list[POp]) -> None:
        uses, defs = self.uses, self.defs
        for p in ops:
            for v in p.ins:
                if v[0] == "unique":
                    uses[v[1]] = uses.get(v[1], 0) + 1
            if p.out is not None and p.out[0] == "unique":
                defs[p.out[1]] = defs.get(p.out[1], 0) + 1

    def emit_ops(self, insn: Insn) -> None:
        """Emit an instruction's P-code (state machine if it branches internally)."""
        ops = insn.ops
        internal = any(
            (p.opc in (OpCode.BRANCH, OpCode.CBRANCH) and
             (p.ins[0][0] == "const" or (p.ins[0][1] == self.next_pc and i != len(ops) - 1)))
            for i, p in enumerate(ops))
        if not internal:
            self.inline = True
            ops = _narrow_mults(ops)
            self._count(ops)
            for p in ops:
                if p.opc != OpCode.IMARK:
                    self.op(p)
            return
        self._count(ops)
        self.inline = False
        labels = {0}
        for i, p in enumerate(ops):
            if p.opc in (OpCode.BRANCH, OpCode.CBRANCH) and p.ins[0][0] == "const":
                labels.add(i + _signed(p.ins[0][1], p.ins[0][2]))
        n = len(ops)
        order = sorted(x for x in labels if x < n)
        self.line("_s = 0")
        self.line("while True:")
        self.ind += 1
        for k, start in enumerate(order):
            end = order[k + 1] if k + 1 < len(order) else n
            self.line(f"if _s == {start}:")
            self.ind += 1
            self.dead = False
            for i in range(start, end):
                p = ops[i]
                if p.opc in (OpCode.BRANCH, OpCode.CBRANCH):
                    sp, off, sz = p.ins[0]
                    if sp == "const":
                        tgt = i + _signed(off, sz)
                        jump = "break" if tgt >= n else f"_s = {tgt}; continue"
                    elif off == self.next_pc:
                        jump = "break"
                    else:
                        jump = None
                    if p.opc == OpCode.BRANCH:
                        if jump is None:
                            self.exit(hex(off))
                        else:
                            self.line(jump)
                        self.dead = True
                        break
                    c = self.val(p.ins[1])
                    if jump is None:
                        self.line(f"if {c}:")
                        self.ind += 1
                        self.exit(hex(off))
                        self.ind -= 1
                    else:
                        self.line(f"if {c}: {jump}")
                else:
                    self.op(p)
            if not self.dead:
                self.line(f"_s = {end}; continue" if end < n else "break")
            self.dead = False
            self.ind -= 1
        self.line("break")
        self.ind -= 1


def _narrow_mults(ops: list[POp]) -> list[POp]:
    """Peephole: the low n bytes of ext(a:n) * ext(b:n) are (a * b) mod 2**(8n).

    SLEIGH writes ``mul.d``/``mul`` as a 128-bit product of sign-extended operands truncated
    to 64 bits; the narrow multiply is exact and much cheaper.
    """
    if not any(p.opc == OpCode.INT_MULT for p in ops):
        return ops
    defs = {p.out: p for p in ops if p.out is not None and p.out[0] == "unique"}
    uses: dict[Vn, int] = {}
    for p in ops:
        for v in p.ins:
            uses[v] = uses.get(v, 0) + 1
    out = []
    for p in ops:
        if (p.opc == OpCode.SUBPIECE and p.ins[1][1] == 0 and p.ins[0] in defs
                and uses.get(p.ins[0]) == 1):
            m = defs[p.ins[0]]
            n = p.out[2]  # type: ignore[index]
            if m.opc == OpCode.INT_MULT:
                srcs = []
                for v in m.ins:
                    d = defs.get(v)
                    if d is not None and d.opc in (OpCode.INT_SEXT, OpCode.INT_ZEXT) \
                            and d.ins[0][2] == n:
                        srcs.append(d.ins[0])
                    elif v[0] == "const":
                        srcs.append(("const", v[1] & mask(n), n))
                if len(srcs) == 2:
                    out.append(POp(OpCode.INT_MULT, p.out, srcs))
                    continue
        out.append(p)
    return _dead_uniques(out)


_IMPURE = frozenset({OpCode.LOAD, OpCode.STORE, OpCode.CALLOTHER, *_BRANCHES})


def _dead_uniques(ops: list[POp]) -> list[POp]:
    """Drop side-effect-free ops whose unique (temporary) result nothing reads."""
    while True:
        used = {v for p in ops for v in p.ins if v[0] == "unique"}
        keep = [p for p in ops if p.out is None or p.out[0] != "unique" or p.out in used
                or p.opc in _IMPURE]
        if len(keep) == len(ops):
            return ops
        ops = keep


def _signed(v: int, size: int) -> int:
    s = 1 << (8 * size - 1)
    return ((v & mask(size)) ^ s) - s


@dataclass
class Block:
    """A compiled block: the function, its instruction count, instruction addresses, bytes."""

    fn: Any
    n: int
    pcs: tuple[int, ...]
    start: int
    end: int  # exclusive
    src: str = ""
    pa0: int = 0
    pages: tuple[int, ...] = ()


def compile_block(arch: ArchModel, insns: list[Insn],
                  cfg: CompileCfg) -> tuple[Any, str, str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Generate and compile the function for ``insns``: (code object, source, function name,
    (instruction line marks, written register words)) (see :func:`block_source`).

    The code object depends only on the instructions and the hook configuration, so it can be
    shared by every engine of the same architecture; ``exec`` it in an engine's namespace.
    """
    src, fname, marks = block_source(arch, insns, cfg)
    code = compile(src, f"<block {insns[0].addr:#x}>", "exec")
    return code, src, fname, marks


def compile_snippets(arch: ArchModel, items: list[tuple[int, Insn]]) -> tuple[Any, str, list[str]]:
    """One code object defining a compact one-instruction function for each (block index,
    instruction) (tier 0's non-interpreted instructions): (code, source, function names)."""
    srcs, names = [], []
    for idx, insn in items:
        src, fname, _ = block_source(arch, [insn], CompileCfg(pc_word=arch.pc_word, compact=True,
                                                              idx0=idx))
        srcs.append(src)
        names.append(fname)
    src = "\n".join(srcs)
    return compile(src, f"<snippets {items[0][1].addr:#x}>", "exec"), src, names


def block_source(arch: ArchModel, insns: list[Insn],
                 cfg: CompileCfg) -> tuple[str, str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """The Python source of the block function: (source, function name, (the source line
    where each instruction starts, the register words the block writes)).

    Registers live in locals and are written back at every exit; a Trap leaves them in the
    locals, and the engine writes the written ones back from the block's frame."""
    em = BlockEmitter(arch, cfg)
    pcw = cfg.pc_word
    for idx, insn in enumerate(insns, cfg.idx0):
        em.begin_insn(insn, idx)
        em.line(("MARK",))
        em.line(f"# {insn.addr:#x}: {insn.raw.hex()} {insn.mnem}")
        if cfg.code_hook is not None and cfg.code_hook(insn.addr):
            em.line(("WB",))
            em.line(f"R[{pcw}] = {insn.addr:#x}")
            # a stop here leaves this instruction unexecuted but counted (as Unicorn does)
            em.line(f"if CH({insn.addr:#x}, {insn.length}): raise Leave({idx + 1})")
            em.line(("RELOAD",))
        if insn.invalid:
            arch.emit_invalid(em, insn)
            em.dead = True
            break
        if not arch.emit_override(em, insn):
            em.emit_ops(insn)
        for off in list(em.pend):
            em.pend.pop(off)
    if not em.dead:
        last = insns[-1]
        em.exit(hex(last.addr + last.length))
    words = sorted(em.words)
    dirty = sorted(em.dirty)
    start = insns[0].addr
    size = insns[-1].addr + insns[-1].length - start
    out = [f"def B_{start:x}(R, vt):"]
    if cfg.block_hook:
        out.append(f"    R[{pcw}] = {start:#x}")
        out.append(f"    if BH({start:#x}, {size}): raise Leave(0)")
    for w in words:
        out.append(f"    r{w} = R[{w}]")
    marks: list[int] = []
    for ln in em.lines:
        if isinstance(ln, tuple):
            kind, ind = ln
            pre = "    " * ind
            if kind == "MARK":
                marks.append(len(out) + 1)  # the 1-based line where this instruction starts
            elif kind == "WB":
                out.extend(f"{pre}R[{w}] = r{w}" for w in dirty)
            elif kind == "RELOAD":
                out.extend(f"{pre}r{w} = R[{w}]" for w in words)
        else:
            out.append(ln)
    src = "\n".join(out) + "\n"
    return src, f"B_{start:x}", (tuple(marks), tuple(dirty))
