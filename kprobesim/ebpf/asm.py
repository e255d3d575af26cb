"""Assembler for the bpf_conformance syntax (a superset of it).

One instruction per line; ``#`` starts a comment; ``name:`` defines a label (it may share the line
with an instruction).  Registers are ``%r0``..``%r10`` (``r0`` also accepted; ``%r11``..``%r15``
assemble, for negative verifier tests).  Forms::

    add %r0, %r1        add32 %r0, 5        neg %r0        sdiv/smod[32] ...
    movsx832 %r0, %r1   movsx1664 %r0, %r1  (movsx<bits><32|64>)
    le16/le32/le64 %r0  be16/be32/be64 %r0  bswap16/32/64 %r0 (swapN is an alias)
    lddw %r0, 0x1122334455667788
    lddw %r1, map_fd[3]   lddw %r1, map_value[3]+8   map_idx[0]   map_idx_value[0]+8
    lddw %r1, btf_id[7]   lddw %r1, func[label]      (loader placeholders, RFC 9669 5.4)
    ldxb/ldxh/ldxw/ldxdw %r0, [%r1+8]   ldxsb/ldxsh/ldxsw %r0, [%r10-4]
    stb/sth/stw/stdw [%r10-8], 5        stxb/stxh/stxw/stxdw [%r10-8], %r1
    lock [fetch] add|or|and|xor[32] [%r10-8], %r1   lock xchg[32] / cmpxchg[32] [...], %r1
    ja LABEL | ja +N    ja32 LABEL (gotol)    jeq[32] %r1, %r2|imm, LABEL|+N|-N
    call 5   call helper 5   call local LABEL   call runtime N (kfunc)   call %r2 (callx)
    exit
    raw 0x0000000000000095   (one slot given as a 64-bit little-endian word)

The label ``exit`` refers to the first ``exit`` instruction unless defined explicitly.
"""

from __future__ import annotations

import re

from . import isa
from .errors import AsmError
from .isa import Insn

_REG_RE = re.compile(r"%?r(\d+)$")
_MEM_RE = re.compile(r"\[\s*(%?r\d+)\s*(?:([+-])\s*(\w+))?\s*\]$")
_PSEUDO_RE = re.compile(r"(\w+)\[([^\]]*)\](?:\s*([+-]\s*\w+))?$")
_LABEL_RE = re.compile(r"^([A-Za-z_.$][\w.$]*)\s*:\s*")
_MOVSX_RE = re.compile(r"movsx(8|16|32)(32|64)$")

_ALU_OPS = {"add": (isa.ADD, 0), "sub": (isa.SUB, 0), "mul": (isa.MUL, 0), "div": (isa.DIV, 0),
            "sdiv": (isa.DIV, 1), "or": (isa.OR, 0), "and": (isa.AND, 0), "lsh": (isa.LSH, 0),
            "rsh": (isa.RSH, 0), "mod": (isa.MOD, 0), "smod": (isa.MOD, 1), "xor": (isa.XOR, 0),
            "mov": (isa.MOV, 0), "arsh": (isa.ARSH, 0)}
_JMP_OPS = {name: op for op, name in isa.JMP_NAMES.items()}
_LDX = {"ldxb": (isa.B, isa.MEM), "ldxh": (isa.H, isa.MEM), "ldxw": (isa.W, isa.MEM),
        "ldxdw": (isa.DW, isa.MEM), "ldxsb": (isa.B, isa.MEMSX), "ldxsh": (isa.H, isa.MEMSX),
        "ldxsw": (isa.W, isa.MEMSX)}
_ST = {"stb": isa.B, "sth": isa.H, "stw": isa.W, "stdw": isa.DW}
_STX = {"stxb": isa.B, "stxh": isa.H, "stxw": isa.W, "stxdw": isa.DW}
_ATOMIC = {"add": isa.ADD, "or": isa.OR, "and": isa.AND, "xor": isa.XOR}
_PSEUDO = {name: src for src, name in isa.PSEUDO_NAMES.items()}


def parse_int(text: str) -> int:
    """Decimal or ``0x`` hex, with an optional sign."""
    s = text.strip().replace("_", "")
    neg = s.startswith("-")
    if s[:1] in "+-":
        s = s[1:].strip()
    try:
        v = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
    except ValueError:
        raise ValueError(f"bad number {text!r}") from None
    return -v if neg else v


def _imm32(text: str) -> int:
    v = parse_int(text)
    if not -(1 << 31) <= v < (1 << 32):
        raise ValueError(f"immediate {text} does not fit in 32 bits")
    return isa.to_s32(v)


def _off16(v: int, what: str = "offset") -> int:
    if not -(1 << 15) <= v < (1 << 16):
        raise ValueError(f"{what} {v} does not fit in 16 bits")
    return v - (1 << 16) if v >= (1 << 15) else v


def _reg(text: str) -> int:
    m = _REG_RE.match(text.strip())
    if not m or int(m.group(1)) > 15:
        raise ValueError(f"bad register {text!r}")
    return int(m.group(1))


def _is_reg(text: str) -> bool:
    return bool(_REG_RE.match(text.strip()))


def _mem(text: str) -> tuple[int, int]:
    m = _MEM_RE.match(text.strip())
    if not m:
        raise ValueError(f"bad memory operand {text!r}")
    off = 0
    if m.group(2):
        off = parse_int(m.group(3))
        off = -off if m.group(2) == "-" else off
    return _reg(m.group(1)), _off16(off)


def _split_operands(rest: str) -> list[str]:
    rest = rest.strip()
    return [p.strip() for p in rest.split(",")] if rest else []


class _Line:
    __slots__ = ("lineno", "mnemonic", "rest", "pc", "size")

    def __init__(self, lineno: int, mnemonic: str, rest: str, pc: int, size: int) -> None:
        self.lineno, self.mnemonic, self.rest, self.pc, self.size = lineno, mnemonic, rest, pc, size


def _strip_comment(line: str) -> str:
    for marker in ("#", "//", ";"):
        i = line.find(marker)
        if i >= 0:
            line = line[:i]
    return line.strip()


def assemble(text: str) -> list[Insn]:
    """Assemble ``text`` into slots.  Raises :class:`AsmError` naming the line."""
    labels: dict[str, int] = {}
    lines: list[_Line] = []
    pc = 0
    first_exit: int | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        while True:
            m = _LABEL_RE.match(line)
            if not m:
                break
            name = m.group(1)
            if name in labels:
                raise AsmError(f"duplicate label {name!r}", lineno)
            labels[name] = pc
            line = line[m.end():]
        if not line:
            continue
        parts = line.split(None, 1)
        mnemonic = parts[0].lower()
        rest = parts[1] if len(parts) > 1 else ""
        size = 2 if mnemonic == "lddw" else 1
        if mnemonic == "exit" and first_exit is None:
            first_exit = pc
        lines.append(_Line(lineno, mnemonic, rest, pc, size))
        pc += size
    if first_exit is not None:
        labels.setdefault("exit", first_exit)

    out: list[Insn] = []
    for ln in lines:
        try:
            insns = _encode(ln, labels)
        except AsmError:
            raise
        except (ValueError, KeyError, IndexError) as e:
            raise AsmError(str(e), ln.lineno) from None
        out.extend(insns)
    return out


def assemble_bytes(text: str) -> bytes:
    return isa.encode(assemble(text))


def _target(text: str, pc: int, labels: dict[str, int], bits: int = 16) -> int:
    t = text.strip()
    if t[:1] in "+-":
        v = parse_int(t)
    elif t in labels:
        v = labels[t] - pc - 1
    else:
        raise ValueError(f"unknown label {t!r}")
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        raise ValueError(f"jump offset {v} does not fit in {bits} bits")
    return v


def _encode(ln: _Line, labels: dict[str, int]) -> list[Insn]:
    mn, rest, pc = ln.mnemonic, ln.rest, ln.pc
    ops = _split_operands(rest)

    def need(n: int) -> None:
        if len(ops) != n:
            raise ValueError(f"{mn} takes {n} operand(s), got {len(ops)}")

    if mn == "raw":
        need(1)
        v = parse_int(ops[0])
        if not 0 <= v < (1 << 64):
            raise ValueError(f"raw word {ops[0]} does not fit in 64 bits")
        return [Insn.from_word(v)]
    if mn == "exit":
        need(0)
        return [Insn(isa.EXIT_OP)]
    if mn == "lddw":
        need(2)
        dst = _reg(ops[0])
        pm = _PSEUDO_RE.match(ops[1])
        if pm and pm.group(1) in _PSEUDO:
            src = _PSEUDO[pm.group(1)]
            if src == isa.PSEUDO_FUNC:
                imm = _target(pm.group(2), pc, labels, 32)
            else:
                imm = _imm32(pm.group(2))
            nxt = _imm32(pm.group(3).replace(" ", "")) if pm.group(3) else 0
            return isa.lddw(dst, imm, src, nxt)
        v = parse_int(ops[1])
        if not -(1 << 63) <= v < (1 << 64):
            raise ValueError(f"immediate {ops[1]} does not fit in 64 bits")
        return isa.lddw(dst, v)
    if mn in _LDX:
        need(2)
        size, mode = _LDX[mn]
        base, off = _mem(ops[1])
        return [Insn(isa.LDX | mode | size, _reg(ops[0]), base, off, 0)]
    if mn in _ST:
        need(2)
        base, off = _mem(ops[0])
        return [Insn(isa.ST | isa.MEM | _ST[mn], base, 0, off, _imm32(ops[1]))]
    if mn in _STX:
        need(2)
        base, off = _mem(ops[0])
        return [Insn(isa.STX | isa.MEM | _STX[mn], base, _reg(ops[1]), off, 0)]
    if mn == "lock":
        return [_encode_lock(rest)]
    if mn == "call":
        return [_encode_call(rest, pc, labels)]
    if mn in ("ja", "goto"):
        need(1)
        return [Insn(isa.JA_OP, 0, 0, _target(ops[0], pc, labels), 0)]
    if mn in ("ja32", "gotol"):
        need(1)
        return [Insn(isa.JA32_OP, 0, 0, 0, _target(ops[0], pc, labels, 32))]
    jm = mn[:-2] if mn.endswith("32") else mn
    if jm in _JMP_OPS:
        need(3)
        cls = isa.JMP32 if mn.endswith("32") else isa.JMP
        op = cls | _JMP_OPS[jm]
        dst = _reg(ops[0])
        off = _target(ops[2], pc, labels)
        if _is_reg(ops[1]):
            return [Insn(op | isa.X, dst, _reg(ops[1]), off, 0)]
        return [Insn(op | isa.K, dst, 0, off, _imm32(ops[1]))]
    for prefix, code in (("le", isa.ALU | isa.END | isa.TO_LE), ("be", isa.ALU | isa.END | isa.TO_BE),
                         ("bswap", isa.ALU64 | isa.END), ("swap", isa.ALU64 | isa.END)):
        if mn.startswith(prefix) and mn[len(prefix):] in ("16", "32", "64"):
            need(1)
            return [Insn(code, _reg(ops[0]), 0, 0, int(mn[len(prefix):]))]
    m = _MOVSX_RE.match(mn)
    if m:
        need(2)
        cls = isa.ALU if m.group(2) == "32" else isa.ALU64
        return [Insn(cls | isa.MOV | isa.X, _reg(ops[0]), _reg(ops[1]), int(m.group(1)), 0)]
    base, cls = mn, isa.ALU64
    if mn.endswith("32"):
        base, cls = mn[:-2], isa.ALU
    elif mn.endswith("64"):
        base = mn[:-2]
    if base == "neg":
        need(1)
        return [Insn(cls | isa.NEG, _reg(ops[0]), 0, 0, 0)]
    if base in _ALU_OPS:
        need(2)
        op, off = _ALU_OPS[base]
        dst = _reg(ops[0])
        if _is_reg(ops[1]):
            return [Insn(cls | op | isa.X, dst, _reg(ops[1]), off, 0)]
        return [Insn(cls | op | isa.K, dst, 0, off, _imm32(ops[1]))]
    raise ValueError(f"unknown mnemonic {mn!r}")


def _encode_lock(rest: str) -> Insn:
    words = rest.split(None, 1)
    fetch = False
    if words and words[0].lower() == "fetch":
        fetch = True
        words = words[1].split(None, 1) if len(words) > 1 else []
    if len(words) != 2:
        raise ValueError("expected: lock [fetch] OP [%rD+off], %rS")
    name = words[0].lower()
    ops = _split_operands(words[1])
    if len(ops) != 2:
        raise ValueError("expected: lock [fetch] OP [%rD+off], %rS")
    size = isa.DW
    if name.endswith("32"):
        size, name = isa.W, name[:-2]
    elif name.endswith("64"):
        name = name[:-2]
    if name in _ATOMIC:
        imm = _ATOMIC[name] | (isa.FETCH if fetch else 0)
    elif name == "xchg":
        imm = isa.XCHG
    elif name == "cmpxchg":
        imm = isa.CMPXCHG
    else:
        raise ValueError(f"unknown atomic operation {name!r}")
    base, off = _mem(ops[0])
    return Insn(isa.STX | isa.ATOMIC | size, base, _reg(ops[1]), off, imm)


def _encode_call(rest: str, pc: int, labels: dict[str, int]) -> Insn:
    words = rest.split()
    if len(words) == 1:
        words = ["helper", words[0]]
    if len(words) != 2:
        raise ValueError("expected: call [helper|local|runtime] TARGET")
    mode, target = words[0].lower(), words[1]
    if mode == "helper":
        if _is_reg(target):
            return Insn(isa.CALLX_OP, _reg(target), 0, 0, 0)
        return Insn(isa.CALL_OP, 0, isa.CALL_HELPER, 0, _imm32(target))
    if mode == "local":
        return Insn(isa.CALL_OP, 0, isa.CALL_LOCAL, 0, _target(target, pc, labels, 32))
    if mode == "runtime":
        return Insn(isa.CALL_OP, 0, isa.CALL_KFUNC, 0, _imm32(target))
    raise ValueError(f"unknown call mode {mode!r}")
