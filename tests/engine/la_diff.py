"""Differential testing of the LoongArch P-code engine against qemu-loongarch64.

A seeded generator builds random instruction sequences (every integer instruction class, forward
branches, memory accesses into a scratch block, and the scalar floating-point arithmetic,
min/max, classification and conversion instructions on special and random values). Each
sequence is wrapped in a prologue that loads all registers from a context block and an epilogue
that stores them back, and runs unchanged under both ``qemu-loongarch64`` (many sequences per
process through ``la_runner.c``) and the engine.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import la_isa as A

CODE = 0x10000000
SCR = 0x10100000
CTX = 0x10200000
RET = 0x10300000
EPI = CODE + 0x8000  # the epilogue lives at a fixed address (its translation is reused)
MEM = 0x1000
SAVED = [1, 2, 3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]
M64 = (1 << 64) - 1
HERE = Path(__file__).resolve().parent


def build_runner(out_dir: Path) -> Path:
    """Compile la_runner.c for loongarch64 with ziglang's clang (cached by source contents)."""
    src = (HERE / "la_runner.c").read_bytes()
    import hashlib

    tag = hashlib.sha256(src).hexdigest()[:16]
    exe = out_dir / f"la_runner_{tag}"
    if exe.exists():
        return exe
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"la_runner_{tag}.tmp{os.getpid()}"
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "loongarch64-linux-musl",
           "-mcpu=generic_la64", "-O1", "-nostdlib", "-static", "-ffreestanding",
           "-fno-stack-protector", "-o", str(tmp), str(HERE / "la_runner.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the runner failed: {r.stderr}")
    tmp.replace(exe)
    return exe


def qemu_path() -> str | None:
    return shutil.which("qemu-loongarch64")


@dataclass
class Seq:
    words: list[int]
    regs: list[int]
    mem: bytes
    groups: list
    R: int
    epi: list[int]


def _sx(v: int, bits: int) -> int:
    s = 1 << (bits - 1)
    return ((v & ((1 << bits) - 1)) ^ s) - s


class Gen:
    """Random instruction sequences."""

    ALU3 = [n for n in A.R3 if not n.startswith(("ldx", "stx", "ldgt", "ldle", "stgt", "stle"))]
    ALU2 = [n for n in A.R2 if n not in ("rdtimel.w", "rdtimeh.w", "rdtime.d", "cpucfg")]
    IMM12 = ["slti", "sltui", "addi.w", "addi.d", "lu52i.d", "andi", "ori", "xori"]
    LD12 = ["ld.b", "ld.h", "ld.w", "ld.d", "ld.bu", "ld.hu", "ld.wu"]
    ST12 = ["st.b", "st.h", "st.w", "st.d"]
    LDX = ["ldx.b", "ldx.h", "ldx.w", "ldx.d", "ldx.bu", "ldx.hu", "ldx.wu"]
    STX = ["stx.b", "stx.h", "stx.w", "stx.d"]
    SIZE = {"b": 1, "h": 2, "w": 4, "d": 8, "bu": 1, "hu": 2, "wu": 4}

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    F64 = [0, 1 << 63, 0x3FF0000000000000, 0xBFF8000000000000, 0x7FF0000000000000,
           0xFFF0000000000000, 0x7FF8000000000000, 0x7FF0000000000001, 1, 0x000FFFFFFFFFFFFF,
           0x41E0000000000000, 0xC1E0000000000000, 0x43E0000000000000, 0x3FE0000000000000,
           0x3FF8000000000000, 0x4004000000000000]
    F32 = [0, 0x80000000, 0x3F800000, 0xBFC00000, 0x7F800000, 0xFF800000, 0x7FC00000,
           0x7F800001, 1, 0x007FFFFF, 0x4F000000, 0xCF000000, 0x5F000000, 0x3F000000,
           0x3FC00000, 0x40200000]

    def val(self) -> int:
        r = self.rng
        k = r.randrange(18)
        if k == 14:  # special and boundary doubles (zeros, infinities, NaNs, 2**31, 2**63, ...)
            return r.choice(self.F64)
        if k == 15:  # the same for singles, in the low word
            return r.getrandbits(32) << 32 | r.choice(self.F32)
        if k == 16:
            return struct.unpack("<Q", struct.pack("<d", r.uniform(-1e6, 1e6)))[0]
        if k == 17:
            return r.getrandbits(32) << 32 | struct.unpack("<I", struct.pack("<f", r.uniform(-1e6, 1e6)))[0]
        if k == 0:
            return r.choice([0, 1, M64, 1 << 63, (1 << 63) - 1, 2, 0xFFFFFFFF, 0x80000000])
        if k == 1:
            return _sx(r.choice([0x80000000, 0x7FFFFFFF, 0xFFFFFFFF]), 32) & M64
        if k == 2:
            return r.randrange(-16, 17) & M64
        if k == 3:
            return (1 << r.randrange(64)) & M64
        if k in (4, 5):
            return _sx(r.getrandbits(32), 32) & M64
        if k == 6:
            return r.getrandbits(32)
        if k == 7:
            return r.getrandbits(r.randrange(1, 64))
        return r.getrandbits(64)

    def dst(self) -> int:
        r = self.rng
        while True:
            d = 0 if r.random() < 0.03 else r.randrange(1, 32)
            if d != self.R:
                return d

    def src(self) -> int:
        return self.rng.randrange(32)

    def base(self, *avoid: int) -> int:
        while True:
            b = self.rng.randrange(1, 32)
            if b != self.R and b not in avoid:
                return b

    def set_addr(self, rb: int, addr: int) -> list[int]:
        hi = addr >> 12
        return [A.i20("lu12i.w", rb, hi), A.i12("ori", rb, rb, addr & 0xFFF)]

    # --- groups: lists of words, or ("br", kind, args) placeholders resolved at layout
    def group(self) -> list:
        r = self.rng
        k = r.choices(
            ["alu3", "alu2", "imm", "shift", "bits", "upper", "mem", "memx", "ptr", "llsc",
             "am", "bound", "br", "brz", "b", "jirl", "div", "fp"],
            weights=[14, 6, 8, 5, 6, 5, 6, 4, 3, 2, 4, 2, 4, 2, 1, 1, 4, 6])[0]
        return getattr(self, "g_" + k)()

    def g_fp(self) -> list:
        """GPRs into FPRs, one FP operation, the result back into a GPR (low word for singles;
        fcmp's condition flag through movcf2gr)."""
        r = self.rng
        fa, fb, fc, fd = (r.randrange(32) for _ in range(4))
        out = [A.MOVGR2FR_D << 10 | self.src() << 5 | f for f in (fa, fb, fc)]
        k = r.random()
        if k < 0.3:
            name = r.choice(list(A.FP3))
            out.append(A.FP3[name] << 15 | fb << 10 | fa << 5 | fd)
        elif k < 0.65:
            name = r.choice(list(A.FP2))
            out.append(A.FP2[name] << 10 | fa << 5 | fd)
        elif k < 0.8:
            name = r.choice(list(A.FP4))
            out.append(A.FP4[name] << 20 | fc << 15 | fb << 10 | fa << 5 | fd)
        elif k < 0.93:
            cd = r.randrange(8)
            op = A.FCMP[r.choice(list(A.FCMP))]
            out.append(op << 20 | r.choice(list(A.FCMP_CONDS.values())) << 15 | fb << 10 | fa << 5 | cd)
            return out + [A.MOVCF2GR << 10 | cd << 5 | self.dst()]
        else:
            name, ca = "fsel.d", r.randrange(8)
            out.append(A.MOVFR2CF << 10 | fc << 5 | ca)
            out.append(A.FSEL << 20 | ca << 15 | fb << 10 | fa << 5 | fd)
        move = A.MOVFR2GR_S if A.fp_single_result(name) else A.MOVFR2GR_D
        out.append(move << 10 | fd << 5 | self.dst())
        return out

    def g_alu3(self) -> list:
        return [A.r3(self.rng.choice(self.ALU3), self.dst(), self.src(), self.src())]

    def g_div(self) -> list:
        r = self.rng
        name = r.choice([n for n in self.ALU3 if n.startswith(("div", "mod"))])
        rk = self.base()
        v = r.choice([0, 0, M64, 1, 2, r.getrandbits(8)])
        out = A.li(rk, v) if v not in (0,) else [A.r3("or", rk, 0, 0)]
        return out + [A.r3(name, self.dst(), self.src(), rk)]

    def g_alu2(self) -> list:
        return [A.r2(self.rng.choice(self.ALU2), self.dst(), self.src())]

    def g_imm(self) -> list:
        r = self.rng
        n = r.choice(self.IMM12 + ["addu16i.d"])
        if n == "addu16i.d":
            return [A.addu16i(self.dst(), self.src(), r.randrange(-32768, 32768))]
        if n in A.UNSIGNED_I12:
            return [A.i12(n, self.dst(), self.src(), r.randrange(4096))]
        return [A.i12(n, self.dst(), self.src(), r.randrange(-2048, 2048))]

    def g_shift(self) -> list:
        r = self.rng
        n = r.choice(list(A.SHI))
        return [A.shi(n, self.dst(), self.src(), r.randrange(1 << A.SHI[n][1]))]

    def g_bits(self) -> list:
        r = self.rng
        k = r.randrange(4)
        if k == 0:
            n = r.choice(["alsl.w", "alsl.wu", "alsl.d"])
            return [A.alsl(n, self.dst(), self.src(), self.src(), r.randrange(1, 5))]
        if k == 1:
            n = r.choice(["bytepick.w", "bytepick.d"])
            return [A.bytepick(n, self.dst(), self.src(), self.src(),
                               r.randrange(4 if n.endswith("w") else 8))]
        n = r.choice(["bstrins.w", "bstrpick.w", "bstrins.d", "bstrpick.d"])
        top = 32 if n.endswith("w") else 64
        lsb = r.randrange(top)
        msb = r.randrange(lsb, top)
        return [A.bstr(n, self.dst(), self.src(), msb, lsb)]

    def g_upper(self) -> list:
        r = self.rng
        n = r.choice(list(A.I20))
        return [A.i20(n, self.dst(), r.randrange(-(1 << 19), 1 << 19))]

    def g_mem(self) -> list:
        r = self.rng
        rb = self.base()
        n = r.choice(self.LD12 + self.ST12)
        size = self.SIZE[n.split(".")[1]]
        off = r.randrange(-2048, 2048 - size + 1)
        rd = self.dst() if n.startswith("ld") else self.src()
        return self.set_addr(rb, SCR + 2048) + [A.i12(n, rd, rb, off)]

    def g_memx(self) -> list:
        r = self.rng
        rb = self.base()
        rk = self.base(rb)
        n = r.choice(self.LDX + self.STX)
        size = self.SIZE[n.split(".")[1]]
        off = r.randrange(0, MEM - size + 1)
        rd = self.dst() if n.startswith("ld") else self.src()
        return self.set_addr(rb, SCR) + [A.i12("ori", rk, 0, off), A.r3(n, rd, rb, rk)]

    def g_ptr(self) -> list:
        r = self.rng
        rb = self.base()
        n = r.choice(["ldptr.w", "ldptr.d", "stptr.w", "stptr.d"])
        size = 4 if n.endswith("w") else 8
        off = r.randrange(-512, (2048 - size) // 4 + 1) * 4
        rd = self.dst() if n.startswith("ld") else self.src()
        return self.set_addr(rb, SCR + 2048) + [A.i14(n, rd, rb, off)]

    def g_llsc(self) -> list:
        r = self.rng
        size = r.choice([4, 8])
        ra = self.base()
        off = r.randrange(0, MEM // size) * size
        rd = self.base(ra)
        out = self.set_addr(ra, SCR) + [A.i14("ll.w" if size == 4 else "ll.d", rd, ra, off)]
        for _ in range(r.randrange(3)):
            d = self.base(ra)
            out.append(A.r3(r.choice(["add.d", "xor", "sub.w"]), d, self.src(), self.src()))
        rs = self.dst()
        out.append(A.i14("sc.w" if size == 4 else "sc.d", rs, ra, off))
        return out

    def g_am(self) -> list:
        r = self.rng
        n = r.choice(list(A.AM))
        size = 8 if n.endswith("d") or n.endswith("du") else 4
        ra = self.base()
        rk = self.src()
        while True:
            rd = self.dst()
            if rd == 0 or rd not in (ra, rk):
                break
        addr = SCR + r.randrange(0, MEM // size) * size
        return self.set_addr(ra, addr) + [A.am(n, rd, rk, ra)]

    def g_bound(self) -> list:
        r = self.rng
        n = r.choice([k for k in A.R3 if k.startswith(("ldgt", "ldle", "stgt", "stle"))])
        size = self.SIZE[n.split(".")[1]]
        ra = self.base()
        rk = self.base(ra)
        addr = SCR + r.randrange(0, MEM // size) * size
        lim = [A.r3("or", rk, 0, 0)] if "gt" in n else [A.i12("addi.d", rk, 0, -1)]
        rd = self.dst() if n.startswith("ld") else self.src()
        return self.set_addr(ra, addr) + lim + [A.r3(n, rd, ra, rk)]

    def g_br(self) -> list:
        return [("br16", self.rng.choice(list(A.BR16)), self.src(), self.src())]

    def g_brz(self) -> list:
        return [("br21", self.rng.choice(list(A.BR21)), self.src())]

    def g_b(self) -> list:
        if self.R == 1:
            return [("br26", "b")]
        return [("br26", self.rng.choice(["b", "bl"]))]

    def g_jirl(self) -> list:
        rx = self.base()
        return [A.i20("pcaddu12i", rx, 0), ("jirl", self.dst(), rx)]

    def sequence(self) -> Seq:
        r = self.rng
        self.R = r.randrange(2, 32)
        regs = [0] + [self.val() for _ in range(31)]
        regs[self.R] = CTX
        mem = r.randbytes(MEM)
        groups = []
        for _ in range(r.randrange(6, 28)):
            g = self.group()
            groups.append([it if isinstance(it, int) else (*it, r.random()) for it in g])
        return build(groups, regs, mem, self.R)


def build(groups: list, regs: list[int], mem: bytes, R: int) -> Seq:
    """Lay out prologue, groups and epilogue; resolve forward branches (to group starts)."""
    pro = [A.i12("st.d", s, 4, 512 + 8 * k) for k, s in enumerate(SAVED)]
    pro += [A.i12("ld.d", i, 4, 8 * i) for i in range(1, 32) if i != 4]
    pro.append(A.i12("ld.d", 4, 4, 32))
    pro.append(A.br26("b", 4))  # end the prologue's block: it is the same in every sequence
    starts = []
    pos = CODE + 4 * len(pro)
    for g in groups:
        starts.append(pos)
        pos += 4 * len(g)
    starts.append(EPI)
    body: list[int] = []
    for gi, g in enumerate(groups):
        addr = starts[gi]
        for k, item in enumerate(g):
            here = addr + 4 * k
            if isinstance(item, int):
                body.append(item)
                continue
            u = item[-1]
            tgt = starts[gi + 1 + int(u * (len(starts) - gi - 1))]
            kind = item[0]
            if kind == "br16":
                body.append(A.br16(item[1], item[2], item[3], tgt - here))
            elif kind == "br21":
                body.append(A.br21(item[1], item[2], tgt - here))
            elif kind == "br26":
                body.append(A.br26(item[1], tgt - here))
            elif kind == "jirl":
                body.append(A.jirl(item[1], item[2], tgt - (here - 4)))
    epi = [A.i12("st.d", i, R, 256 + 8 * i) for i in range(32)]
    epi += [A.i12("ld.d", s, R, 512 + 8 * k) for k, s in enumerate(SAVED) if s != R]
    if R in SAVED:
        epi.append(A.i12("ld.d", R, R, 512 + 8 * SAVED.index(R)))
    epi.append(A.jirl(0, 1, 0))
    body.append(A.br26("b", EPI - pos))
    return Seq(pro + body, regs, mem, groups, R, epi)


def reduce(runner: Path, s: Seq, eng: EngineRunner) -> str:
    """Find the first group after which qemu and the engine disagree; describe it."""
    prefixes = [build(s.groups[:k], s.regs, s.mem, s.R) for k in range(len(s.groups) + 1)]
    want = run_qemu(runner, prefixes)
    for k, p in enumerate(prefixes):
        got = eng.run(p)
        if got != want[k]:
            lines = [f"first mismatch after group {k - 1}:"]
            start = 4 * (len(SAVED) + 32) + 4 * sum(len(g) for g in s.groups[:k - 1])
            lines += disasm(p.words[start // 4:start // 4 + len(s.groups[k - 1])],
                            CODE + start)
            lines.append(describe_mismatch(p, want[k], got, listing=False))
            return "\n".join(lines)
    return "no prefix reproduces the mismatch"


def encode_batch(seqs: list[Seq]) -> bytes:
    out = bytearray()
    for s in seqs:
        code = A.code(s.words)
        epi = A.code(s.epi)
        out += struct.pack("<II", len(code), len(epi))
        out += struct.pack("<32Q", *[v & M64 for v in s.regs])
        out += s.mem
        out += code
        out += epi
    return bytes(out)


def run_qemu(runner: Path, seqs: list[Seq]) -> list[tuple[list[int], bytes]]:
    p = subprocess.run([qemu_path() or "qemu-loongarch64", str(runner)],
                       input=encode_batch(seqs), capture_output=True, timeout=300)
    rec = 256 + MEM
    out = []
    data = p.stdout
    for i in range(len(data) // rec):
        chunk = data[i * rec:(i + 1) * rec]
        out.append((list(struct.unpack("<32Q", chunk[:256])), chunk[256:]))
    if len(out) != len(seqs):
        raise RuntimeError(f"qemu runner stopped after {len(out)} of {len(seqs)} sequences "
                           f"(exit {p.returncode}, stderr {p.stderr[-500:]!r})")
    return out


class EngineRunner:
    def __init__(self, hot_after: int | None = None) -> None:
        from kprobesim.engine.pcode import PcodeEngine
        from kprobesim.engine.pcode import loongarch_const as K

        self.K = K
        self.e = PcodeEngine("loongarch64", hot_after=hot_after)
        self.e.mem_map(CODE, 0x10000)
        self.e.mem_map(SCR, MEM)
        self.e.mem_map(CTX, 0x1000)
        self.e.reg_write(K.LA_REG_CSR_BASE + K.CSR_EUEN, 1)  # the FPU on, as in user mode

    def run(self, s: Seq) -> tuple[list[int], bytes]:
        e, K = self.e, self.K
        e.mem_write(CODE, A.code(s.words))
        e.mem_write(EPI, A.code(s.epi))
        e.mem_write(SCR, s.mem)
        e.mem_write(CTX, struct.pack("<32Q", *[v & M64 for v in s.regs]) + bytes(256 + 256))
        e.reg_write(K.LA_REG_A0, CTX)
        e.reg_write(K.LA_REG_RA, RET)
        e.reg_write(K.LA_REG_SP, 0)
        e.emu_start(CODE, RET, count=100000)
        if e.reg_read(K.LA_REG_PC) != RET:
            raise RuntimeError(f"sequence did not return (pc={e.reg_read(K.LA_REG_PC):#x})")
        out = list(struct.unpack("<32Q", e.mem_read(CTX + 256, 256)))
        return out, bytes(e.mem_read(SCR, MEM))


def disasm(words: list[int], base: int = CODE) -> list[str]:
    from capstone import CS_ARCH_LOONGARCH, CS_MODE_LOONGARCH64, Cs

    cs = Cs(CS_ARCH_LOONGARCH, CS_MODE_LOONGARCH64)
    out = []
    for i, w in enumerate(words):
        d = list(cs.disasm(struct.pack("<I", w), base + 4 * i))
        txt = f"{d[0].mnemonic} {d[0].op_str}" if d else "??"
        out.append(f"{base + 4 * i:#x}: {w:08x}  {txt}")
    return out


def describe_mismatch(s: Seq, want: tuple[list[int], bytes], got: tuple[list[int], bytes],
                      listing: bool = True) -> str:
    lines = ["sequence:"] + disasm(s.words) if listing else []
    lines.append("initial regs: " + " ".join(f"r{i}={v:#x}" for i, v in enumerate(s.regs)))
    for i in range(32):
        if want[0][i] != got[0][i]:
            lines.append(f"r{i}: qemu {want[0][i]:#x} engine {got[0][i]:#x}")
    for i in range(MEM):
        if want[1][i] != got[1][i]:
            lines.append(f"mem[{i:#x}]: qemu {want[1][i]:#x} engine {got[1][i]:#x}")
            break
    return "\n".join(lines)
