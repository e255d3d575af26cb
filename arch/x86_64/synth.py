"""x86_64 synthetic functions for the probe fuzzer, encoded here from prefixes, REX and ModRM.

A function allocates a small stack frame, runs random groups (ALU of every size and operand
form, mul/div, shifts and rotates, mov/lea/movzx/movsx incl. RIP-relative loads, stores, lea and
read-modify-write with an immediate after the displacement, cmov/setcc, xchg/xadd/cmpxchg,
bit ops, bswap, push/pop and pushf/popf pairs, rep movs/stos, enter/leave, jcc/jmp rel8/rel32
forward, jrcxz, loop and dec/jnz loops on a bounded counter, call rel32 to local helpers (one
returning with ``ret 8``), call/jmp through a register), frees the frame and returns. ``rsp``
and the data register are only written by balanced pairs.
"""

from __future__ import annotations

import random
import struct

from kprobesim.fuzz.synth import DATA_OFFSET, DATA_SIZE, Asm, Insn, SynthFunction

from .regs import GPR_NAMES

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
FRAME = 64
DATA_REGS = (RBX, RBP, 12, 13, 14, 15, 8, 9, 10, 11)
COM1 = 0x3F8
HIGH8 = 16  # register ids 16..19: ah, ch, dh, bh (encodings 4..7 without REX)
ALU = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")
SHIFT = {"rol": 0, "ror": 1, "rcl": 2, "rcr": 3, "shl": 4, "shr": 5, "sar": 7}
CC = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}
#: rflags bits a generated popf may change (no TF: it would trap; no AC/NT/IOPL).
FLAG_BITS = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800 | 0x200


def reg_name(r: int, size: int) -> str:
    """Intel name of register ``r`` (0..15, or HIGH8+k for ah..bh) at ``size`` bytes."""
    if r >= HIGH8:
        return ("ah", "ch", "dh", "bh")[r - HIGH8]
    if size == 8:
        return GPR_NAMES[r]
    if r >= 8:
        return f"r{r}{ {4: 'd', 2: 'w', 1: 'b'}[size] }"
    if size == 4:
        return "e" + GPR_NAMES[r][1:]
    if size == 2:
        return GPR_NAMES[r][1:]
    return ("al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil")[r]


class Mem:
    """A memory operand: ``[base + index*scale + disp]``, or RIP-relative to ``target``."""

    def __init__(
        self,
        base: int | None,
        disp: int = 0,
        index: int | None = None,
        scale: int = 1,
        target: int | None = None,
        wide: bool = False,
        addr32: bool = False,
    ) -> None:
        self.base, self.disp, self.index, self.scale = base, disp, index, scale
        self.target, self.wide, self.addr32 = target, wide, addr32

    def text(self, size: int | None, next_ip: int = 0) -> str:
        ptr = f"{PTR[size]} ptr " if size else ""
        if self.target is not None:
            return f"{ptr}[rip + {self.target - next_ip:#x}]".replace("+ -", "- ")
        rsize = 4 if self.addr32 else 8
        parts = [reg_name(self.base, rsize)] if self.base is not None else []
        if self.index is not None:
            parts.append(f"{reg_name(self.index, rsize)}*{self.scale}")
        s = " + ".join(parts)
        if self.disp or not parts:
            s += f" - {-self.disp:#x}" if self.disp < 0 else f" + {self.disp:#x}"
        return f"{ptr}[{s}]"


Operand = int | Mem


class X86Insn:
    """An encoded instruction whose RIP-relative displacement is patched at layout."""

    def __init__(self, raw: bytes, text: str, disp_at: int | None = None, target: int = 0) -> None:
        self.raw, self.text, self.disp_at, self.target = raw, text, disp_at, target

    def at(self, pc: int) -> Insn:
        if self.disp_at is None:
            return Insn(self.raw, self.text)
        raw = bytearray(self.raw)
        disp = self.target - (pc + len(raw))
        raw[self.disp_at : self.disp_at + 4] = struct.pack("<i", disp)
        rip = f"rip - {-disp:#x}" if disp < 0 else f"rip + {disp:#x}"
        return Insn(bytes(raw), self.text.replace("{rip}", rip))


def _reg_needs_rex(r: int, size: int) -> bool:
    return r < HIGH8 and (r >= 8 or (size == 1 and 4 <= r < 8))


def enc(
    opcode: bytes,
    reg: int | None,
    rm: Operand,
    size: int,
    text: str,
    imm: bytes = b"",
    digit: int = 0,
    prefix: bytes = b"",
    rm_size: int | None = None,
    w: bool | None = None,
) -> X86Insn:
    """A ModRM instruction. ``reg`` is the reg-field register (None: ``digit`` goes there);
    ``size`` sets 0x66 / REX.W (``w`` overrides REX.W); ``rm_size`` is the r/m register size
    when it differs (movzx/movsx)."""
    rex = 0
    field = digit if reg is None else reg
    high = False
    if reg is not None:
        rex |= (reg >> 3 & 1) << 2 if reg < HIGH8 else 0
        high |= reg >= HIGH8
        field = reg & 7 if reg < HIGH8 else reg - HIGH8 + 4
    empty = reg is not None and _reg_needs_rex(reg, size) and reg < 8
    disp_at = target = None
    pre = bytearray()
    if size == 2:
        pre.append(0x66)
    pre += prefix
    if isinstance(rm, int):
        rs = rm_size or size
        if rm >= HIGH8:
            high, code = True, rm - HIGH8 + 4
        else:
            rex |= rm >> 3 & 1
            empty |= rs == 1 and 4 <= rm < 8
            code = rm & 7
        tail = bytes([0xC0 | field << 3 | code])
    else:
        if rm.addr32:
            pre.append(0x67)
        if rm.target is not None:
            tail = bytes([field << 3 | 5]) + b"\0\0\0\0"
            target = rm.target
        else:
            base, disp = rm.base, rm.disp
            if base is not None:
                rex |= base >> 3 & 1
            if rm.index is not None:
                rex |= (rm.index >> 3 & 1) << 1
            if base is not None and disp == 0 and base & 7 != 5 and not rm.wide:
                mod, db = 0, b""
            elif base is not None and -128 <= disp < 128 and not rm.wide:
                mod, db = 1, struct.pack("<b", disp)
            else:
                mod, db = (2 if base is not None else 0), struct.pack("<i", disp)
            if rm.index is None and base is not None and base & 7 != 4:
                tail = bytes([mod << 6 | field << 3 | base & 7]) + db
            else:
                sib = {1: 0, 2: 1, 4: 2, 8: 3}[rm.scale] << 6 | (4 if rm.index is None else rm.index & 7) << 3
                sib |= 5 if base is None else base & 7
                tail = bytes([mod << 6 | field << 3 | 4, sib]) + db
    if size == 8 if w is None else w:
        rex |= 8
    if high and (rex or empty):
        raise ValueError("ah/ch/dh/bh cannot be encoded with a REX prefix")
    rex_b = bytes([0x40 | rex]) if rex or empty else b""
    raw = bytes(pre) + rex_b + opcode + tail + imm
    if target is not None:
        disp_at = len(pre) + len(rex_b) + len(opcode) + 1
    return X86Insn(raw, text, disp_at, target or 0)


def plain(raw: bytes, text: str) -> X86Insn:
    return X86Insn(raw, text)


def opr(rm: Operand, size: int) -> str:
    """Intel text of an operand."""
    if isinstance(rm, int):
        return reg_name(rm, size)
    if rm.target is not None:
        return f"{PTR[size]} ptr [{{rip}}]"
    return rm.text(size)


def imm_bytes(v: int, n: int) -> bytes:
    return (v & ((1 << 8 * n) - 1)).to_bytes(n, "little")


def short_reg(op: int, r: int, size: int, text: str, imm: bytes = b"") -> X86Insn:
    """``op + r`` encodings (push/pop/bswap/mov imm/xchg rax): REX.B for r8..r15."""
    rex = (8 if size == 8 and op not in (0x50, 0x58) else 0) | (r >> 3 & 1)
    empty = size == 1 and 4 <= r < 8
    if r >= HIGH8:
        return X86Insn(bytes([op + r - HIGH8 + 4]) + imm, text)
    pre = b"\x66" if size == 2 else b""
    return X86Insn(pre + (bytes([0x40 | rex]) if rex or empty else b"") + bytes([op + (r & 7)]) + imm, text)


def _sx(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


class _Gen:
    """The random choices of one function."""

    def __init__(self, rng: random.Random, data: int, devices: bool = False) -> None:
        self.rng = rng
        self.dp = rng.choice(DATA_REGS)
        self.data = data
        self.a = Asm(rng)
        self.avoid: set[int] = set()
        self.devices = devices
        self.pushed = 0  # bytes pushed by an open group ([rsp+off] operands stay in the frame)

    # -- operands ---------------------------------------------------------------------------------
    def size(self) -> int:
        return self.rng.choice([1, 2, 4, 8, 8, 4])

    def dst(self, size: int = 8, *extra: int) -> int:
        bad = {RSP, self.dp, *self.avoid, *extra}
        r = self.rng
        if size == 1 and r.random() < 0.15:
            k = r.randrange(4)
            if k not in bad:
                return HIGH8 + k
        while True:
            v = r.randrange(16)
            if v not in bad:
                return v

    def src(self, size: int = 8) -> int:
        r = self.rng
        if size == 1 and r.random() < 0.15:
            return HIGH8 + r.randrange(4)
        return r.randrange(16)

    def imm(self, n: int) -> int:
        """A signed immediate that fits ``n`` bytes."""
        return _sx(self.rng.getrandbits(8 * n), 8 * n) if self.rng.random() < 0.8 else self.rng.choice([0, 1, -1])

    def mem(self, size: int, pre: list[X86Insn]) -> Mem:
        """A memory operand inside the data buffer or the frame (set-up code goes to ``pre``)."""
        r = self.rng
        half = DATA_SIZE // 2
        k = r.randrange(20)
        if k < 10:
            return Mem(self.dp, r.randrange(-half, half - size + 1), wide=r.random() < 0.2)
        if k < 13:
            idx = self.dst()
            scale = r.choice([1, 2, 4, 8])
            v = r.randrange(64)
            pre.append(short_reg(0xB8, idx, 4, f"mov {reg_name(idx, 4)}, {v}", imm_bytes(v, 4)))
            off = r.randrange(-half, half - size - scale * v + 1)
            return Mem(self.dp, off, index=idx, scale=scale, wide=r.random() < 0.2)
        if k < 15:
            return Mem(RSP, self.pushed + r.randrange(0, FRAME - size + 1), wide=r.random() < 0.2)
        if k < 19:
            return Mem(None, target=self.data + r.randrange(0, DATA_SIZE - size + 1))
        return Mem(self.dp, r.randrange(-half, half - size + 1), addr32=True)

    def rm(self, size: int, pre: list[X86Insn], write: bool = True) -> Operand:
        if self.rng.random() < 0.5:
            return self.dst(size) if write else self.src(size)
        return self.mem(size, pre)

    # -- groups -----------------------------------------------------------------------------------
    def try_(self, make: object) -> list[X86Insn]:
        """Call ``make`` until it builds an encodable group (high-byte registers need no REX)."""
        for _ in range(50):
            pre: list[X86Insn] = []
            try:
                return pre + make(pre)  # type: ignore[operator]
            except ValueError:
                continue
        raise RuntimeError("cannot encode a group")

    def alu(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        k, size = r.randrange(8), self.size()
        name = ALU[k]
        form = r.randrange(5)
        lock = b"\xf0" if r.random() < 0.15 else b""
        if form == 0:
            rm, reg = self.rm(size, pre), self.src(size)
            lk = lock if isinstance(rm, Mem) and k != 7 else b""
            t = f"{'lock ' * bool(lk)}{name} {opr(rm, size)}, {reg_name(reg, size)}"
            return [enc(bytes([8 * k + (size > 1)]), reg, rm, size, t, prefix=lk)]
        if form == 1:
            reg, rm = self.dst(size), self.rm(size, pre, write=False)
            return [
                enc(bytes([8 * k + 2 + (size > 1)]), reg, rm, size, f"{name} {reg_name(reg, size)}, {opr(rm, size)}")
            ]
        if form == 2:
            rm = self.rm(size, pre)
            lk = lock if isinstance(rm, Mem) and k != 7 else b""
            pfx = f"{'lock ' * bool(lk)}{name} {opr(rm, size)}"
            if size == 1 or r.random() < 0.5:
                v = self.imm(1)
                return [enc(b"\x80" if size == 1 else b"\x83", None, rm, size, f"{pfx}, {v}", imm_bytes(v, 1), k, lk)]
            n = 2 if size == 2 else 4
            v = self.imm(n)
            return [enc(b"\x81", None, rm, size, f"{pfx}, {v}", imm_bytes(v, n), k, lk)]
        if form == 3:
            n = 1 if size == 1 else (2 if size == 2 else 4)
            v = self.imm(n)
            if RAX in self.avoid:
                raise ValueError("rax is a loop counter")
            op = bytes([8 * k + 4 + (size > 1)])
            return [
                plain(
                    (b"\x66" if size == 2 else b"") + (b"\x48" if size == 8 else b"") + op + imm_bytes(v, n),
                    f"{name} {reg_name(RAX, size)}, {v}",
                )
            ]
        size = r.choice([4, 8, 2])  # test
        rm, reg = self.rm(size, pre, write=False), self.src(size)
        if r.random() < 0.5:
            return [enc(b"\x85", reg, rm, size, f"test {opr(rm, size)}, {reg_name(reg, size)}")]
        n = 2 if size == 2 else 4
        v = self.imm(n)
        return [enc(b"\xf7", None, rm, size, f"test {opr(rm, size)}, {v}", imm_bytes(v, n), 0)]

    def unary(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        size = self.size()
        rm = self.rm(size, pre)
        name = r.choice(["inc", "dec", "neg", "not"])
        lk = b"\xf0" if isinstance(rm, Mem) and r.random() < 0.2 else b""
        t = f"{'lock ' * bool(lk)}{name} {opr(rm, size)}"
        if name in ("inc", "dec"):
            return [enc(b"\xfe" if size == 1 else b"\xff", None, rm, size, t, digit=name == "dec", prefix=lk)]
        return [enc(b"\xf6" if size == 1 else b"\xf7", None, rm, size, t, digit=3 if name == "neg" else 2, prefix=lk)]

    def muldiv(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        if self.avoid & {RAX, RDX}:
            raise ValueError("mul/div write rax and rdx")
        k = r.randrange(5)
        size = r.choice([2, 4, 8])
        if k == 0:
            reg, rm = self.dst(size), self.rm(size, pre, write=False)
            return [enc(b"\x0f\xaf", reg, rm, size, f"imul {reg_name(reg, size)}, {opr(rm, size)}")]
        if k == 1:
            reg, rm = self.dst(size), self.rm(size, pre, write=False)
            if r.random() < 0.5:
                v = self.imm(1)
                return [
                    enc(b"\x6b", reg, rm, size, f"imul {reg_name(reg, size)}, {opr(rm, size)}, {v}", imm_bytes(v, 1))
                ]
            n = 2 if size == 2 else 4
            v = self.imm(n)
            return [enc(b"\x69", reg, rm, size, f"imul {reg_name(reg, size)}, {opr(rm, size)}, {v}", imm_bytes(v, n))]
        if k == 2:
            size = self.size()
            rm = self.rm(size, pre, write=False)
            name = r.choice(["mul", "imul"])
            return [
                enc(
                    b"\xf6" if size == 1 else b"\xf7",
                    None,
                    rm,
                    size,
                    f"{name} {opr(rm, size)}",
                    digit=4 + (name == "imul"),
                )
            ]
        # div/idiv that cannot fault: a non-zero divisor, a dividend whose quotient fits
        d = self.dst(size, RAX, RDX)
        out: list[X86Insn] = []
        signed = r.random() < 0.5
        if signed:
            out.append(enc(b"\xd1" if size > 1 else b"\xd0", None, d, size, f"shr {reg_name(d, size)}, 1", digit=5))
        out.append(enc(b"\x83", None, d, size, f"or {reg_name(d, size)}, 1", imm_bytes(1, 1), 1))
        if signed:
            out.append(plain({2: b"\x66\x99", 4: b"\x99", 8: b"\x48\x99"}[size], {2: "cwd", 4: "cdq", 8: "cqo"}[size]))
        else:
            out.append(enc(b"\x31", RDX, RDX, 4, "xor edx, edx"))
        rm: Operand = d
        if r.random() < 0.3:
            m = self.mem(size, out)
            out.append(enc(b"\x89", d, m, size, f"mov {opr(m, size)}, {reg_name(d, size)}"))
            rm = m
        name = "idiv" if signed else "div"
        out.append(enc(b"\xf7", None, rm, size, f"{name} {opr(rm, size)}", digit=7 if signed else 6))
        return out

    def shift(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        size = self.size()
        name = r.choice(list(SHIFT))
        rm = self.rm(size, pre)
        k = r.randrange(3)
        t = f"{name} {opr(rm, size)}"
        if k == 0:
            v = r.randrange(64)
            return [enc(b"\xc0" if size == 1 else b"\xc1", None, rm, size, f"{t}, {v}", bytes([v]), SHIFT[name])]
        if k == 1:
            return [enc(b"\xd0" if size == 1 else b"\xd1", None, rm, size, f"{t}, 1", digit=SHIFT[name])]
        return [enc(b"\xd2" if size == 1 else b"\xd3", None, rm, size, f"{t}, cl", digit=SHIFT[name])]

    def mov(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        size = self.size()
        k = r.randrange(6)
        if k == 0:
            rm, reg = self.rm(size, pre), self.src(size)
            return [enc(bytes([0x88 + (size > 1)]), reg, rm, size, f"mov {opr(rm, size)}, {reg_name(reg, size)}")]
        if k == 1:
            reg, rm = self.dst(size), self.rm(size, pre, write=False)
            return [enc(bytes([0x8A + (size > 1)]), reg, rm, size, f"mov {reg_name(reg, size)}, {opr(rm, size)}")]
        if k == 2:
            rm = self.rm(size, pre)
            n = {1: 1, 2: 2}.get(size, 4)
            v = self.imm(n)
            return [enc(bytes([0xC6 + (size > 1)]), None, rm, size, f"mov {opr(rm, size)}, {v}", imm_bytes(v, n), 0)]
        reg = self.dst(size)
        if size == 8 and k == 3:
            v = r.getrandbits(64)
            return [short_reg(0xB8, reg, 8, f"movabs {reg_name(reg, 8)}, {v:#x}", imm_bytes(v, 8))]
        size = 4 if size == 8 else size
        reg = self.dst(size)
        n = size
        v = self.imm(n)
        return [short_reg(0xB0 if size == 1 else 0xB8, reg, size, f"mov {reg_name(reg, size)}, {v}", imm_bytes(v, n))]

    def ext(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        k = r.randrange(5)
        if k == 4:
            reg, rm = self.dst(8), self.rm(4, pre, write=False)
            return [enc(b"\x63", reg, rm, 8, f"movsxd {reg_name(reg, 8)}, {opr(rm, 4)}", rm_size=4)]
        src = 1 if k < 2 else 2
        size = r.choice([s for s in (2, 4, 8) if s > src])
        name = "movzx" if k % 2 == 0 else "movsx"
        op = {("movzx", 1): 0xB6, ("movzx", 2): 0xB7, ("movsx", 1): 0xBE, ("movsx", 2): 0xBF}[name, src]
        reg, rm = self.dst(size), self.rm(src, pre, write=False)
        if isinstance(rm, int) and rm < HIGH8 and src == 1 and 4 <= rm < 8:
            pass  # spl..dil need a REX, enc() adds it
        return [enc(bytes([0x0F, op]), reg, rm, size, f"{name} {reg_name(reg, size)}, {opr(rm, src)}", rm_size=src)]

    def lea(self, pre: list[X86Insn]) -> list[X86Insn]:
        size = self.rng.choice([8, 8, 4, 2])
        reg = self.dst(size)
        m = self.mem(1, pre)
        text = f"lea {reg_name(reg, size)}, " + ("[{rip}]" if m.target is not None else m.text(None))
        return [enc(b"\x8d", reg, m, size, text)]

    def riprel(self, pre: list[X86Insn]) -> list[X86Insn]:
        """RIP-relative forms, some with an immediate after the displacement."""
        r = self.rng
        size = self.size()
        m = Mem(None, target=self.data + r.randrange(0, DATA_SIZE - 8))
        k = r.randrange(7)
        if k == 0:
            reg = self.dst(size)
            return [enc(bytes([0x8A + (size > 1)]), reg, m, size, f"mov {reg_name(reg, size)}, {opr(m, size)}")]
        if k == 1:
            reg = self.src(size)
            return [enc(bytes([0x88 + (size > 1)]), reg, m, size, f"mov {opr(m, size)}, {reg_name(reg, size)}")]
        if k == 2:
            reg = self.dst(8)
            return [enc(b"\x8d", reg, m, 8, f"lea {reg_name(reg, 8)}, [{{rip}}]")]
        if k == 3:
            n = {1: 1, 2: 2}.get(size, 4)
            v = self.imm(n)
            return [enc(bytes([0xC6 + (size > 1)]), None, m, size, f"mov {opr(m, size)}, {v}", imm_bytes(v, n), 0)]
        if k == 4:
            j = r.randrange(8)
            v = self.imm(1)
            return [
                enc(
                    b"\x80" if size == 1 else b"\x83",
                    None,
                    m,
                    size,
                    f"{ALU[j]} {opr(m, size)}, {v}",
                    imm_bytes(v, 1),
                    j,
                )
            ]
        if k == 5:
            return [
                enc(b"\xff", None, m, 8, f"push {opr(m, 8)}", digit=6),
                enc(b"\x8f", None, Mem(None, target=m.target), 8, f"pop {opr(m, 8)}", digit=0),
            ]
        v = r.randrange(64)
        return [enc(b"\x0f\xba", None, m, 4, f"bts {opr(m, 4)}, {v}", bytes([v]), 5)]

    def cond(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        cc = r.randrange(16)
        if r.random() < 0.5:
            size = r.choice([2, 4, 8])
            reg, rm = self.dst(size), self.rm(size, pre, write=False)
            return [
                enc(bytes([0x0F, 0x40 + cc]), reg, rm, size, f"cmov{CC[cc]} {reg_name(reg, size)}, {opr(rm, size)}")
            ]
        rm = self.rm(1, pre)
        return [enc(bytes([0x0F, 0x90 + cc]), None, rm, 1, f"set{CC[cc]} {opr(rm, 1)}")]

    def exchange(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        size = self.size()
        reg, rm = self.dst(size), self.rm(size, pre)
        k = r.randrange(4)
        if k == 0:
            return [enc(bytes([0x86 + (size > 1)]), reg, rm, size, f"xchg {opr(rm, size)}, {reg_name(reg, size)}")]
        if k == 3 and size > 1 and reg < 16:
            if RAX in self.avoid or reg == RAX:
                raise ValueError("xchg rax needs rax")
            return [short_reg(0x90, reg, size, f"xchg {reg_name(RAX, size)}, {reg_name(reg, size)}")]
        lk = b"\xf0" if isinstance(rm, Mem) and r.random() < 0.5 else b""
        if k == 1:
            t = f"{'lock ' * bool(lk)}xadd {opr(rm, size)}, {reg_name(reg, size)}"
            return [enc(bytes([0x0F, 0xC0 + (size > 1)]), reg, rm, size, t, prefix=lk)]
        if RAX in self.avoid:
            raise ValueError("cmpxchg writes rax")
        t = f"{'lock ' * bool(lk)}cmpxchg {opr(rm, size)}, {reg_name(reg, size)}"
        return [enc(bytes([0x0F, 0xB0 + (size > 1)]), reg, rm, size, t, prefix=lk)]

    def bits(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        size = r.choice([2, 4, 8])
        k = r.randrange(6)
        if k == 0:
            name, op = r.choice([("bt", 0xA3), ("bts", 0xAB), ("btr", 0xB3), ("btc", 0xBB)])
            rm, reg = self.dst(size), self.src(size)
            return [enc(bytes([0x0F, op]), reg, rm, size, f"{name} {reg_name(rm, size)}, {reg_name(reg, size)}")]
        if k == 1:
            j = r.randrange(4)
            rm = self.rm(size, pre)
            v = r.randrange(256)
            return [
                enc(
                    b"\x0f\xba",
                    None,
                    rm,
                    size,
                    f"{('bt', 'bts', 'btr', 'btc')[j]} {opr(rm, size)}, {v}",
                    bytes([v]),
                    4 + j,
                )
            ]
        if k == 2:
            name, op, pfx = r.choice(
                [
                    ("bsf", 0xBC, b""),
                    ("bsr", 0xBD, b""),
                    ("popcnt", 0xB8, b"\xf3"),
                    ("tzcnt", 0xBC, b"\xf3"),
                    ("lzcnt", 0xBD, b"\xf3"),
                ]
            )
            reg, rm = self.dst(size), self.rm(size, pre, write=False)
            return [enc(bytes([0x0F, op]), reg, rm, size, f"{name} {reg_name(reg, size)}, {opr(rm, size)}", prefix=pfx)]
        if k == 3:
            size = r.choice([4, 8])
            reg = self.dst(size)
            rex = (8 if size == 8 else 0) | (reg >> 3)
            return [
                plain(
                    (bytes([0x40 | rex]) if rex else b"") + bytes([0x0F, 0xC8 + (reg & 7)]),
                    f"bswap {reg_name(reg, size)}",
                )
            ]
        rm, reg = self.rm(size, pre), self.src(size)
        name = r.choice(["shld", "shrd"])
        base = 0xA4 if name == "shld" else 0xAC
        if k == 4:
            v = r.randrange(64)
            return [
                enc(
                    bytes([0x0F, base]),
                    reg,
                    rm,
                    size,
                    f"{name} {opr(rm, size)}, {reg_name(reg, size)}, {v}",
                    bytes([v]),
                )
            ]
        return [enc(bytes([0x0F, base + 1]), reg, rm, size, f"{name} {opr(rm, size)}, {reg_name(reg, size)}, cl")]

    def misc(self, pre: list[X86Insn]) -> list[X86Insn]:
        r = self.rng
        k = r.randrange(9)
        if k == 0:
            if RAX in self.avoid:
                raise ValueError("writes rax")
            return [r.choice([plain(b"\x66\x98", "cbw"), plain(b"\x98", "cwde"), plain(b"\x48\x98", "cdqe")])]
        if k == 1:
            if self.avoid & {RDX}:
                raise ValueError("writes rdx")
            return [r.choice([plain(b"\x66\x99", "cwd"), plain(b"\x99", "cdq"), plain(b"\x48\x99", "cqo")])]
        if k == 2:
            if RAX in self.avoid:
                raise ValueError("writes ah")
            return [r.choice([plain(b"\x9f", "lahf"), plain(b"\x9e", "sahf")])]
        if k == 3:
            return [r.choice([plain(b"\xf8", "clc"), plain(b"\xf9", "stc"), plain(b"\xf5", "cmc")])]
        if k == 4:
            return [r.choice([plain(b"\x90", "nop"), plain(b"\xf3\x90", "pause")])]
        if k == 5:
            m = self.mem(4, pre)
            return [enc(b"\x0f\x1f", None, m, 4, f"nop {opr(m, 4)}", digit=0)]
        if k == 6 and not {RAX, RBX, RCX, RDX} & ({self.dp} | self.avoid):
            return [plain(b"\x31\xc9", "xor ecx, ecx"), plain(b"\x0f\xa2", "cpuid")]
        if k == 7:
            return [plain(b"\xfc", "cld"), plain(b"\xfd", "std")][r.randrange(2) :][:1]
        m = Mem(RSP, self.pushed + r.randrange(FRAME))
        d = self.dst(8)
        return [enc(b"\x8d", d, m, 8, f"lea {reg_name(d, 8)}, {m.text(None)}")]

    def pushpop(self, pre: list[X86Insn]) -> list[X86Insn]:
        """push X ... pop Y, balanced."""
        r = self.rng
        k = r.randrange(4)
        if k == 0:
            x = self.src()
            out = [short_reg(0x50, x, 8, f"push {reg_name(x, 8)}")]
        elif k == 1:
            v = self.imm(1)
            out = [plain(b"\x6a" + imm_bytes(v, 1), f"push {v}")]
        elif k == 2:
            v = self.imm(4)
            out = [plain(b"\x68" + imm_bytes(v, 4), f"push {v}")]
        else:
            m = self.mem(8, out := [])
            out.append(enc(b"\xff", None, m, 8, f"push {opr(m, 8)}", digit=6, w=False))
        self.pushed += 8
        if r.random() < 0.6:
            out += self.try_(r.choice([self.alu, self.mov, self.unary]))
        self.pushed -= 8
        if r.random() < 0.7:
            y = self.dst()
            out.append(short_reg(0x58, y, 8, f"pop {reg_name(y, 8)}"))
        else:
            m = Mem(self.dp, r.randrange(-DATA_SIZE // 2, DATA_SIZE // 2 - 8))
            out.append(enc(b"\x8f", None, m, 8, f"pop {opr(m, 8)}", digit=0, w=False))
        return out

    def flags(self, pre: list[X86Insn]) -> list[X86Insn]:
        """pushf/popf pairs, some popping a value with other arithmetic, DF and IF bits."""
        r = self.rng
        if r.random() < 0.3:
            return [plain(b"\x9c", "pushfq"), plain(b"\x9d", "popfq")]
        t = self.dst()
        v = r.getrandbits(32) & FLAG_BITS
        return [
            plain(b"\x9c", "pushfq"),
            short_reg(0x58, t, 8, f"pop {reg_name(t, 8)}"),
            enc(b"\x81", None, t, 4, f"xor {reg_name(t, 4)}, {v}", imm_bytes(v, 4), 6),
            short_reg(0x50, t, 8, f"push {reg_name(t, 8)}"),
            plain(b"\x9d", "popfq"),
        ]

    def string(self, pre: list[X86Insn]) -> list[X86Insn]:
        """rep movs/stos with a small count inside the data buffer (either direction)."""
        r = self.rng
        if self.avoid & {RSI, RDI, RCX}:
            raise ValueError("string ops need rsi, rdi, rcx")
        n = r.randrange(0, 9)
        src, dst = (r.randrange(-1024, 1024, 8) for _ in range(2))
        out = [
            enc(b"\x8d", RSI, Mem(self.dp, src), 8, f"lea rsi, {Mem(self.dp, src).text(None)}"),
            enc(b"\x8d", RDI, Mem(self.dp, dst), 8, f"lea rdi, {Mem(self.dp, dst).text(None)}"),
            short_reg(0xB8, RCX, 4, f"mov ecx, {n}", imm_bytes(n, 4)),
            r.choice([plain(b"\xfc", "cld"), plain(b"\xfd", "std")]),
        ]
        ops = [
            (b"\xf3\xa4", "rep movsb"),
            (b"\xf3\x48\xa5", "rep movsq"),
            (b"\xf3\xaa", "rep stosb"),
            (b"\xf3\x48\xab", "rep stosq"),
            (b"\xa4", "movsb"),
            (b"\xab", "stosd"),
            (b"\xac", "lodsb"),
        ]
        if RAX in self.avoid:
            ops = ops[:2]
        out.append(plain(*r.choice(ops)))
        return out

    def device(self, pre: list[X86Insn]) -> list[X86Insn]:
        """Port I/O on the board's devices: COM1 transmit and line status, the PIC's mask, and
        the PIT reprogrammed (the slice may end there) with a count of at least 0x1000, which
        cannot expire before the function returns (no IDT is set up here)."""
        if {RAX, RDX} & ({self.dp} | self.avoid):
            raise ValueError("port I/O needs rax and rdx")
        r = self.rng
        k = r.randrange(5)
        if k < 2:
            port = COM1 + 5 * k
            out = [short_reg(0xB8, RDX, 4, f"mov edx, {port:#x}", imm_bytes(port, 4))]
            return out + [plain(b"\xee", "out dx, al") if k == 0 else plain(b"\xec", "in al, dx")]
        if k == 2:
            return [r.choice([plain(b"\xe4\x21", "in al, 0x21"), plain(b"\xe6\x21", "out 0x21, al")])]
        low, high = r.randrange(256), r.randrange(0x10, 0x100)
        out = [plain(b"\xb0\x34", "mov al, 0x34"), plain(b"\xe6\x43", "out 0x43, al")] if k == 3 else []
        for byte in (low, high):
            out += [plain(bytes([0xB0, byte]), f"mov al, {byte:#x}"), plain(b"\xe6\x40", "out 0x40, al")]
        return out

    def frame(self, pre: list[X86Insn]) -> list[X86Insn]:
        """enter/leave around a store into the new frame."""
        n = 8 * self.rng.randrange(1, 5)
        x = self.src()
        return [
            plain(b"\xc8" + imm_bytes(n, 2) + b"\x00", f"enter {n}, 0"),
            enc(b"\x89", x, Mem(RBP, -8), 8, f"mov qword ptr [rbp - 8], {reg_name(x, 8)}"),
            plain(b"\xc9", "leave"),
        ]

    # -- control flow -----------------------------------------------------------------------------
    def emit(self, insns: list[X86Insn]) -> None:
        for x in insns:
            if x.disp_at is None:
                self.a.add(x.at(0))
            else:
                self.a.fixup([len(x.raw)], lambda pc, t, x=x: [x.at(pc)], target=".")

    def branch(self) -> None:
        r, a = self.rng, self.a
        k = r.randrange(7)
        cc = r.randrange(16)
        if k < 2:
            a.fixup([2], lambda pc, t: [Insn(bytes([0x70 + cc, (t - pc - 2) & 0xFF]), f"j{CC[cc]} {t:#x}")], reach=129)
        elif k == 2:
            a.fixup(
                [6], lambda pc, t: [Insn(bytes([0x0F, 0x80 + cc]) + struct.pack("<i", t - pc - 6), f"j{CC[cc]} {t:#x}")]
            )
        elif k == 3:
            a.fixup([2], lambda pc, t: [Insn(bytes([0xEB, (t - pc - 2) & 0xFF]), f"jmp {t:#x}")], reach=129)
        elif k == 4:
            a.fixup([5], lambda pc, t: [Insn(b"\xe9" + struct.pack("<i", t - pc - 5), f"jmp {t:#x}")])
        elif k == 5:
            a.fixup([2], lambda pc, t: [Insn(bytes([0xE3, (t - pc - 2) & 0xFF]), f"jrcxz {t:#x}")], reach=129)
        else:
            self.via_reg(None, call=False)

    def via_reg(self, target: str | None, call: bool) -> None:
        """lea reg, [rip + target]; call/jmp reg."""
        reg = self.dst()
        rex = 0x48 | (reg >> 3) << 2
        lea_len = 7
        jrex = b"\x41" if reg >= 8 else b""
        jop = bytes([0xFF, (0xD0 if call else 0xE0) | (reg & 7)])

        def encode(pc: int, t: int) -> list[Insn]:
            lea = bytes([rex, 0x8D, 0x05 | (reg & 7) << 3]) + struct.pack("<i", t - pc - lea_len)
            return [
                Insn(lea, f"lea {reg_name(reg, 8)}, [rip + {t - pc - lea_len:#x}]"),
                Insn(jrex + jop, f"{'call' if call else 'jmp'} {reg_name(reg, 8)}"),
            ]

        self.a.fixup([lea_len, len(jrex) + 2], encode, target=target)

    def call(self) -> None:
        r, a = self.rng, self.a
        k = r.randrange(3)
        if k == 0:
            a.fixup([5], lambda pc, t: [Insn(b"\xe8" + struct.pack("<i", t - pc - 5), f"call {t:#x}")], target="helper")
        elif k == 1:
            self.via_reg("helper", call=True)
        else:  # an argument on the stack, popped by the callee's ret 8
            self.emit(self.pushpop_arg())
            a.fixup(
                [5], lambda pc, t: [Insn(b"\xe8" + struct.pack("<i", t - pc - 5), f"call {t:#x}")], target="helper8"
            )

    def pushpop_arg(self) -> list[X86Insn]:
        x = self.src()
        return [short_reg(0x50, x, 8, f"push {reg_name(x, 8)}")]

    def loop(self) -> None:
        r, a = self.rng, self.a
        n = r.randrange(1, 5)
        use_loop = r.random() < 0.5
        cnt = RCX if use_loop else self.dst(8, RCX)
        self.emit([short_reg(0xB8, cnt, 4, f"mov {reg_name(cnt, 4)}, {n}", imm_bytes(n, 4))])
        top = a.label()
        self.avoid = {cnt}
        for _ in range(r.randrange(1, 3)):
            self.emit(self.try_(r.choice([self.alu, self.mov, self.shift, self.ext, self.riprel])))
        self.avoid = set()
        if use_loop:
            # not loope/loopne: Unicorn 2.1.4 corrupts the flags when they fall through
            op, name = 0xE2, "loop"
            a.fixup([2], lambda pc, t: [Insn(bytes([op, (t - pc - 2) & 0xFF]), f"{name} {t:#x}")], target=top)
        else:
            self.emit([enc(b"\xff", None, cnt, 4, f"dec {reg_name(cnt, 4)}", digit=1)])
            a.fixup([2], lambda pc, t: [Insn(bytes([0x75, (t - pc - 2) & 0xFF]), f"jne {t:#x}")], target=top)

    def group(self) -> None:
        r = self.rng
        self.a.boundary()
        k = r.choices(
            [
                "alu",
                "unary",
                "muldiv",
                "shift",
                "mov",
                "ext",
                "lea",
                "riprel",
                "cond",
                "exchange",
                "bits",
                "misc",
                "pushpop",
                "flags",
                "string",
                "frame",
                "branch",
                "call",
                "loop",
            ]
            + (["device"] if self.devices else []),
            weights=[16, 4, 5, 5, 8, 4, 4, 8, 4, 4, 5, 4, 4, 2, 2, 1, 12, 4, 3] + ([25] if self.devices else []),
        )[0]
        if k == "branch":
            self.branch()
        elif k == "call":
            self.call()
        elif k == "loop":
            self.loop()
        else:
            self.emit(self.try_(getattr(self, k)))


def generate(
    rng: random.Random, length: int, base: int, data: int | None = None, devices: bool = False
) -> SynthFunction:
    """A random function for ``base`` with about ``length`` body instructions.

    ``data`` is the data buffer (default ``base + DATA_OFFSET``, within RIP reach); the data
    register holds its middle at the call, ``[rsp]`` the return address. ``devices`` adds port
    I/O on the board's devices to the mix.
    """
    data = base + DATA_OFFSET if data is None else data
    g = _Gen(rng, data, devices)
    a = g.a
    a.add(Insn(bytes([0x48, 0x83, 0xEC, FRAME]), f"sub rsp, {FRAME}"))
    while len(a.items) < length + 1:
        g.group()
    a.boundary()
    a.label("end")
    a.add(Insn(bytes([0x48, 0x83, 0xC4, FRAME]), f"add rsp, {FRAME}"))
    a.add(Insn(b"\xc3", "ret"))
    g.pushed = 8  # in a helper [rsp] is the return address: its operands start above it
    for name, ret in (("helper", Insn(b"\xc3", "ret")), ("helper8", Insn(b"\xc2\x08\x00", "ret 8"))):
        a.label(name)
        g.emit(g.try_(rng.choice([g.alu, g.mov, g.shift, g.riprel])))
        a.add(ret)
    code, starts, texts = a.resolve(base)
    return SynthFunction("x86_64", base, code, starts, texts, data, GPR_NAMES[g.dp], ("rsp", GPR_NAMES[g.dp]))


#: Registers compared between the unprobed and the probed runs.
COMPARE_REGS: tuple[str, ...] = (*GPR_NAMES, "rflags")


def random_state(rng: random.Random) -> dict[str, int]:
    """Random arithmetic flags, DF and IF (no interrupt source is armed: IF only tests masking)."""
    return {"rflags": 0x2 | (rng.getrandbits(32) & FLAG_BITS)}


def call_setup(fn: SynthFunction, ret: int, sp: int) -> tuple[dict[str, int], list[tuple[int, bytes]]]:
    """Registers and memory for calling ``fn``: the return address pushed at ``sp - 8``."""
    return {"rsp": sp - 8, fn.data_reg: fn.data + DATA_SIZE // 2, "rip": fn.base}, [(sp - 8, ret.to_bytes(8, "little"))]


def exit_stub(base: int) -> bytes:
    """``xor eax, eax; out 0xf4, al``: the debug-exit port with status 0; then ``hlt``, never
    reached, which ends the engine's translation block (without it, the zeros after the stub
    decode as ~140 ``add [rax], al`` that Unicorn translates again after every restore)."""
    return b"\x31\xc0\xe6\xf4\xf4"
