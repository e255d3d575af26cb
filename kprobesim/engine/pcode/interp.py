"""Tier 0: run a block's P-code directly, without compiling it.

Most blocks of a short run (start-up code, one-time set-up) execute once or a few times;
generating and compiling Python for them costs far more than interpreting their P-code. A new
block therefore starts here, and the engine compiles it (:mod:`.codegen`) once it has run
``hot_after`` times. The semantics mirror the code generator's op for op. Instructions the
architecture emits itself (privileged, CSR, atomics, ...: ``ArchModel.needs_codegen``) run as
compiled one-instruction snippets in the code generator's compact form, or, for the commonest
(``ArchModel.tier0_op``: LoongArch bit-field and shift ops), as the architecture's own Python
functions. Registers live in the register file ``R`` throughout. Both tiers are checked against
QEMU and against each other (tests/engine).
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

from .codegen import HELPERS, Insn, OpCode, POp

if TYPE_CHECKING:  # pragma: no cover
    from .arch import ArchModel

_SPACES = frozenset({"const", "register", "unique", "ram"})


def interpretable(arch: ArchModel, insn: Insn) -> bool:
    """Can tier 0 run this instruction's P-code as is (no arch-specific code generation)?"""
    ok = insn.meta.get("t0")
    if ok is None:
        ok = insn.meta["t0"] = _interpretable(arch, insn)
    return ok


def _interpretable(arch: ArchModel, insn: Insn) -> bool:
    if insn.invalid or arch.needs_codegen(insn):
        return False
    for p in insn.ops:
        if p.opc not in _TIER0_OPS or (p.space is not None and p.space != "ram"):
            return False
        if p.out is not None and p.out[0] not in _SPACES:
            return False
        for v in p.ins:
            if v[0] not in _SPACES:
                return False
    return True


def _sgn(v: int, size: int) -> int:
    s = 1 << (8 * size - 1)
    return (v ^ s) - s


class Interpreter:
    """Evaluates P-code ops on an engine's register file (one per engine)."""

    def __init__(self, arch: ArchModel, namespace: dict[str, Any]) -> None:
        self.arch = arch
        self.R: list[int] = arch.eng._R
        self.zero = arch.zero_words
        self.ns = namespace  # the generated code's globals: LD, ST, DIVU, ...

    # -- varnodes
    def rd(self, vn: tuple[str, int, int], U: dict[int, int], idx: int) -> int:
        sp, off, size = vn
        if sp == "const":
            return off & ((1 << (8 * size)) - 1)
        if sp == "unique":
            return U[off] & ((1 << (8 * size)) - 1)
        if sp == "register":
            return self.rd_reg(off, size)
        return self.ns["LD"](off, size, idx)

    def rd_reg(self, off: int, size: int) -> int:
        sh = (off & 7) * 8
        if sh + 8 * size <= 64:
            w = self.arch.word(off >> 3)
            if w in self.zero:
                return 0
            v = self.R[w]
            if sh == 0 and size == 8:
                return v
            return (v >> sh) & ((1 << (8 * size)) - 1)
        v = pos = 0
        o = off
        while pos < 8 * size:
            sh = (o & 7) * 8
            take = min(64 - sh, 8 * size - pos)
            v |= self.rd_reg(o, take // 8) << pos
            pos += take
            o += take // 8
        return v

    def wr(self, vn: tuple[str, int, int], v: Any, U: dict[int, int], idx: int) -> None:
        sp, off, size = vn
        if sp == "unique":
            U[off] = v
        elif sp == "register":
            self.wr_reg(off, size, v)
        elif sp == "ram":
            self.ns["ST"](off, size, v, idx)
        # const: SLEIGH's view of a hardwired-zero destination, discarded

    def wr_reg(self, off: int, size: int, v: Any) -> None:
        sh = (off & 7) * 8
        if sh + 8 * size <= 64:
            w = self.arch.word(off >> 3)
            if w in self.zero:
                return
            R = self.R
            if sh == 0 and size == 8:
                R[w] = v
            else:
                keep = ((1 << 64) - 1) & ~(((1 << (8 * size)) - 1) << sh)
                R[w] = (R[w] & keep) | (v << sh)
            return
        pos = 0
        o = off
        while pos < 8 * size:
            sh = (o & 7) * 8
            take = min(64 - sh, 8 * size - pos)
            self.wr_reg(o, take // 8, (v >> pos) & ((1 << take) - 1))
            pos += take
            o += take // 8

    # -- one instruction
    def run_insn(self, insn: Insn, idx: int) -> int | None:
        """Execute ``insn`` (block index ``idx``); a branch target leaving the block, or None
        to fall through."""
        ops = insn.ops
        n = len(ops)
        nxt = insn.addr + insn.length
        U: dict[int, int] = {}
        R = self.R
        zero = self.zero
        word = self.arch.word
        rd, wr = self.rd, self.wr
        i = 0
        while i < n:
            p = ops[i]
            opc = p.opc
            ins = p.ins
            f = _VALUE.get(opc)
            if f is not None:  # computational: read inputs (fast paths inline), write output
                a = []
                for v in ins:
                    sp, off, size = v
                    if sp == "register" and size == 8 and not off & 7:
                        w = off >> 3
                        w = word(w)
                        a.append(0 if w in zero else R[w])
                    elif sp == "const":
                        a.append(off & ((1 << (8 * size)) - 1))
                    elif sp == "unique":
                        a.append(U[off] & ((1 << (8 * size)) - 1))
                    else:
                        a.append(rd(v, U, idx))
                val = f(p, a, self.ns)
                sp, off, size = p.out  # type: ignore[misc]
                if sp == "unique":
                    U[off] = val
                elif sp == "register" and size == 8 and not off & 7:
                    w = word(off >> 3)
                    if w not in zero:
                        R[w] = val
                else:
                    wr(p.out, val, U, idx)  # type: ignore[arg-type]
            elif opc == _CBRANCH or opc == _BRANCH:
                if opc == _CBRANCH and not rd(ins[1], U, idx):
                    i += 1
                    continue
                sp, off, size = ins[0]
                if sp == "const":  # P-code relative branch inside the instruction
                    i += _sgn(off & ((1 << (8 * size)) - 1), size)
                    if i >= n:
                        return None
                    continue
                return None if off == nxt else off
            elif opc == _STORE:
                self.ns["ST"](rd(ins[0], U, idx), ins[1][2], rd(ins[1], U, idx), idx)
            elif opc == _LOAD:
                wr(p.out, self.ns["LD"](rd(ins[0], U, idx), p.out[2], idx), U, idx)  # type: ignore[index,arg-type]
            elif opc == _CALL:
                return ins[0][1]
            elif opc in _INDIRECT:
                return self.arch.indirect_value(rd(ins[0], U, idx))
            else:  # pragma: no cover - interpretable() admits only the ops above
                raise NotImplementedError(f"P-code op {opc.name} in tier 0")
            i += 1
        return None


_CBRANCH, _BRANCH, _CALL = OpCode.CBRANCH, OpCode.BRANCH, OpCode.CALL
_LOAD, _STORE = OpCode.LOAD, OpCode.STORE
_INDIRECT = frozenset({OpCode.BRANCHIND, OpCode.CALLIND, OpCode.RETURN})


def _m(size: int) -> int:
    return (1 << (8 * size)) - 1


def _s(size: int) -> int:
    return 1 << (8 * size - 1)


def _osz(p: POp) -> int:
    return p.out[2]  # type: ignore[index]


def _isz(p: POp) -> int:
    return p.ins[0][2]


# The code generator's templates, evaluated: opcode -> f(op, input values, namespace).
_VALUE: dict[int, Any] = {
    OpCode.COPY: lambda p, a, ns: a[0],
    OpCode.INT_ZEXT: lambda p, a, ns: a[0],
    OpCode.INT_ADD: lambda p, a, ns: (a[0] + a[1]) & _m(_osz(p)),
    OpCode.INT_SUB: lambda p, a, ns: (a[0] - a[1]) & _m(_osz(p)),
    OpCode.INT_MULT: lambda p, a, ns: (a[0] * a[1]) & _m(_osz(p)),
    OpCode.INT_AND: lambda p, a, ns: a[0] & a[1],
    OpCode.INT_OR: lambda p, a, ns: a[0] | a[1],
    OpCode.INT_XOR: lambda p, a, ns: a[0] ^ a[1],
    OpCode.BOOL_AND: lambda p, a, ns: a[0] & a[1],
    OpCode.BOOL_OR: lambda p, a, ns: a[0] | a[1],
    OpCode.BOOL_XOR: lambda p, a, ns: a[0] ^ a[1],
    OpCode.INT_SEXT: lambda p, a, ns: ((a[0] ^ _s(_isz(p))) - _s(_isz(p))) & _m(_osz(p)),
    OpCode.SUBPIECE: lambda p, a, ns: (a[0] >> (8 * p.ins[1][1])) & _m(_osz(p)),
    OpCode.PIECE: lambda p, a, ns: (a[0] << (8 * p.ins[1][2])) | a[1],
    OpCode.INT_LEFT: lambda p, a, ns: (a[0] << a[1]) & _m(_osz(p)) if a[1] < 8 * _osz(p) else 0,
    OpCode.INT_RIGHT: lambda p, a, ns: a[0] >> a[1],
    OpCode.INT_SRIGHT: lambda p, a, ns: (((a[0] ^ _s(_osz(p))) - _s(_osz(p)))
                                         >> min(a[1], 8 * _osz(p) - 1)) & _m(_osz(p)),
    OpCode.INT_EQUAL: lambda p, a, ns: a[0] == a[1],
    OpCode.INT_NOTEQUAL: lambda p, a, ns: a[0] != a[1],
    OpCode.INT_LESS: lambda p, a, ns: a[0] < a[1],
    OpCode.INT_LESSEQUAL: lambda p, a, ns: a[0] <= a[1],
    OpCode.INT_SLESS: lambda p, a, ns: (a[0] ^ _s(_isz(p))) < (a[1] ^ _s(_isz(p))),
    OpCode.INT_SLESSEQUAL: lambda p, a, ns: (a[0] ^ _s(_isz(p))) <= (a[1] ^ _s(_isz(p))),
    OpCode.INT_CARRY: lambda p, a, ns: a[0] + a[1] > _m(_isz(p)),
    OpCode.INT_SCARRY: lambda p, a, ns: ns["SCARRY"](a[0], a[1], _isz(p)),
    OpCode.INT_SBORROW: lambda p, a, ns: ns["SBORROW"](a[0], a[1], _isz(p)),
    OpCode.INT_NEGATE: lambda p, a, ns: a[0] ^ _m(_osz(p)),
    OpCode.INT_2COMP: lambda p, a, ns: -a[0] & _m(_osz(p)),
    OpCode.BOOL_NEGATE: lambda p, a, ns: a[0] ^ 1,
    OpCode.POPCOUNT: lambda p, a, ns: a[0].bit_count(),
    OpCode.LZCOUNT: lambda p, a, ns: 8 * _isz(p) - a[0].bit_length(),
    OpCode.INT_DIV: lambda p, a, ns: ns["DIVU"](a[0], a[1], _osz(p)),
    OpCode.INT_REM: lambda p, a, ns: ns["REMU"](a[0], a[1], _osz(p)),
    OpCode.INT_SDIV: lambda p, a, ns: ns["DIVS"](a[0], a[1], _osz(p)),
    OpCode.INT_SREM: lambda p, a, ns: ns["REMS"](a[0], a[1], _osz(p)),
    OpCode.FLOAT_ADD: lambda p, a, ns: ns["FADD"](a[0], a[1], _osz(p)),
    OpCode.FLOAT_SUB: lambda p, a, ns: ns["FSUB"](a[0], a[1], _osz(p)),
    OpCode.FLOAT_MULT: lambda p, a, ns: ns["FMUL"](a[0], a[1], _osz(p)),
    OpCode.FLOAT_DIV: lambda p, a, ns: ns["FDIV"](a[0], a[1], _osz(p)),
    OpCode.FLOAT_EQUAL: lambda p, a, ns: _ff(a[0], p) == _ff(a[1], p),
    OpCode.FLOAT_NOTEQUAL: lambda p, a, ns: _ff(a[0], p) != _ff(a[1], p),
    OpCode.FLOAT_LESS: lambda p, a, ns: _ff(a[0], p) < _ff(a[1], p),
    OpCode.FLOAT_LESSEQUAL: lambda p, a, ns: _ff(a[0], p) <= _ff(a[1], p),
    OpCode.FLOAT_NEG: lambda p, a, ns: a[0] ^ _s(_isz(p)),
    OpCode.FLOAT_ABS: lambda p, a, ns: a[0] & (_s(_isz(p)) - 1),
    OpCode.FLOAT_SQRT: lambda p, a, ns: ns["FSQRT"](a[0], _isz(p)),
    OpCode.FLOAT_NAN: lambda p, a, ns: ns["isnan"](_ff(a[0], p)),
    OpCode.FLOAT_INT2FLOAT: lambda p, a, ns: ns["FB"](
        float((a[0] ^ _s(_isz(p))) - _s(_isz(p))), _osz(p)),
    OpCode.FLOAT_FLOAT2FLOAT: lambda p, a, ns: ns["FB"](_ff(a[0], p), _osz(p)),
    OpCode.FLOAT_TRUNC: lambda p, a, ns: ns["F2I"](a[0], _isz(p), _osz(p), ns["trunc"]),
    OpCode.FLOAT_CEIL: lambda p, a, ns: ns["FROUND"](a[0], _isz(p), ns["ceil"]),
    OpCode.FLOAT_FLOOR: lambda p, a, ns: ns["FROUND"](a[0], _isz(p), ns["floor"]),
    OpCode.FLOAT_ROUND: lambda p, a, ns: ns["FROUND"](a[0], _isz(p), ns["rnd"]),
}
_TIER0_OPS = frozenset({*_VALUE, _CBRANCH, _BRANCH, _CALL, _LOAD, _STORE, *_INDIRECT})


def _ff(v: int, p: POp) -> float:
    return HELPERS["FF"](v, _isz(p))


def block_runner(interp: Interpreter, insns: list[Insn], snippets: list[Any], runs: list[int],
                 hot: int, on_hot: Any) -> Any:
    """A ``fn(R, vt) -> next_pc`` that runs the block in tier 0. ``snippets[i]`` is the compiled
    one-instruction function of an instruction tier 0 does not interpret (else None). Each run
    counts in ``runs[0]`` (shared by every engine running this code); from the ``hot``-th on,
    ``on_hot()`` is called (the engine then compiles the block)."""
    plan = list(zip(range(len(insns)), insns, snippets, strict=True))
    last = insns[-1]
    end = last.addr + last.length

    def run(R: list[int], vt: int) -> int:
        runs[0] += 1
        if runs[0] >= hot:
            on_hot()
        for idx, insn, snip in plan:  # the engine reads idx, insn and vt from this frame
            if snip is not None:
                nxt = snip(R, vt)
                if nxt != insn.addr + insn.length:
                    return nxt
                continue
            tgt = interp.run_insn(insn, idx)
            if tgt is not None:
                return tgt
        return end

    return run


RUN_CODE = next(c for c in block_runner.__code__.co_consts
                if isinstance(c, types.CodeType) and c.co_name == "run")


__all__ = ["RUN_CODE", "Interpreter", "block_runner", "interpretable"]
