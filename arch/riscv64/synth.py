"""riscv64 synthetic functions for the probe fuzzer (RV64IMAC, compressed forms included).

Encodings are built from bit fields here; each instruction also carries its assembler text.
The function saves ``ra`` in a stack frame, runs random groups (ALU, M, loads/stores of every
width on the data buffer and the stack, compressed forms, lui/auipc, AMOs and lr/sc, forward
branches and jumps of every kind, calls to a local helper, loops on a bounded counter), then
restores ``ra`` and returns. ``sp`` and the data register are never written by the body.
"""

from __future__ import annotations

import random
import struct

from kprobesim.fuzz.synth import DATA_OFFSET, DATA_SIZE, Asm, Insn, SynthFunction

from .regs import GPR_NAMES as N

FRAME = 256
SP, RA, ZERO = 2, 1, 0
UART, MTIMECMP, MTIME = 0x1000_0000, 0x200_4000, 0x200_BFF8  # the board's device registers
CREGS = range(8, 16)  # registers the 3-bit compressed fields reach

R_OPS = {  # name: (opcode, funct3, funct7)
    "add": (0x33, 0, 0), "sub": (0x33, 0, 0x20), "sll": (0x33, 1, 0), "slt": (0x33, 2, 0),
    "sltu": (0x33, 3, 0), "xor": (0x33, 4, 0), "srl": (0x33, 5, 0), "sra": (0x33, 5, 0x20),
    "or": (0x33, 6, 0), "and": (0x33, 7, 0),
    "mul": (0x33, 0, 1), "mulh": (0x33, 1, 1), "mulhsu": (0x33, 2, 1), "mulhu": (0x33, 3, 1),
    "div": (0x33, 4, 1), "divu": (0x33, 5, 1), "rem": (0x33, 6, 1), "remu": (0x33, 7, 1),
    "addw": (0x3B, 0, 0), "subw": (0x3B, 0, 0x20), "sllw": (0x3B, 1, 0), "srlw": (0x3B, 5, 0),
    "sraw": (0x3B, 5, 0x20), "mulw": (0x3B, 0, 1), "divw": (0x3B, 4, 1), "divuw": (0x3B, 5, 1),
    "remw": (0x3B, 6, 1), "remuw": (0x3B, 7, 1),
}  # fmt: skip
I_OPS = {"addi": (0x13, 0), "slti": (0x13, 2), "sltiu": (0x13, 3), "xori": (0x13, 4), "ori": (0x13, 6),
         "andi": (0x13, 7), "addiw": (0x1B, 0)}  # fmt: skip
SHIFTS = {"slli": (0x13, 1, 0, 6), "srli": (0x13, 5, 0, 6), "srai": (0x13, 5, 0x10, 6),
          "slliw": (0x1B, 1, 0, 5), "srliw": (0x1B, 5, 0, 5), "sraiw": (0x1B, 5, 0x20, 5)}  # fmt: skip
LOADS = {"lb": (0, 1), "lh": (1, 2), "lw": (2, 4), "ld": (3, 8), "lbu": (4, 1), "lhu": (5, 2), "lwu": (6, 4)}
STORES = {"sb": (0, 1), "sh": (1, 2), "sw": (2, 4), "sd": (3, 8)}
BRANCHES = {"beq": 0, "bne": 1, "blt": 4, "bge": 5, "bltu": 6, "bgeu": 7}
AMOS = {"amoswap": 1, "amoadd": 0, "amoxor": 4, "amoand": 0xC, "amoor": 8, "amomin": 0x10,
        "amomax": 0x14, "amominu": 0x18, "amomaxu": 0x1C}  # fmt: skip
C_ALU = {"c.sub": (0, 0), "c.xor": (0, 1), "c.or": (0, 2), "c.and": (0, 3), "c.subw": (1, 0), "c.addw": (1, 1)}


def _w(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFF_FFFF)


def _h(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)


def _bits(value: int, spec: dict[int, int]) -> int:
    """Scatter bits of ``value``: ``{source bit: destination bit}``."""
    return sum(((value >> s) & 1) << d for s, d in spec.items())


# -- 32-bit encoders ------------------------------------------------------------------------------
def r_op(name: str, rd: int, rs1: int, rs2: int) -> Insn:
    op, f3, f7 = R_OPS[name]
    return Insn(_w(op | rd << 7 | f3 << 12 | rs1 << 15 | rs2 << 20 | f7 << 25), f"{name} {N[rd]}, {N[rs1]}, {N[rs2]}")


def i_op(name: str, rd: int, rs1: int, imm: int) -> Insn:
    op, f3 = I_OPS[name]
    return Insn(_w(op | rd << 7 | f3 << 12 | rs1 << 15 | (imm & 0xFFF) << 20), f"{name} {N[rd]}, {N[rs1]}, {imm}")


def shift(name: str, rd: int, rs1: int, sh: int) -> Insn:
    op, f3, top, _ = SHIFTS[name]
    w = op | rd << 7 | f3 << 12 | rs1 << 15 | sh << 20 | (1 << 30 if top else 0)
    return Insn(_w(w), f"{name} {N[rd]}, {N[rs1]}, {sh}")


def load(name: str, rd: int, rs1: int, off: int) -> Insn:
    f3 = LOADS[name][0]
    return Insn(_w(0x03 | rd << 7 | f3 << 12 | rs1 << 15 | (off & 0xFFF) << 20), f"{name} {N[rd]}, {off}({N[rs1]})")


def store(name: str, rs2: int, rs1: int, off: int) -> Insn:
    f3, imm = STORES[name][0], off & 0xFFF
    w = 0x23 | (imm & 31) << 7 | f3 << 12 | rs1 << 15 | rs2 << 20 | (imm >> 5) << 25
    return Insn(_w(w), f"{name} {N[rs2]}, {off}({N[rs1]})")


def lui(rd: int, imm20: int) -> Insn:
    return Insn(_w(0x37 | rd << 7 | (imm20 & 0xFFFFF) << 12), f"lui {N[rd]}, {imm20 & 0xFFFFF}")


def auipc(rd: int, imm20: int) -> Insn:
    return Insn(_w(0x17 | rd << 7 | (imm20 & 0xFFFFF) << 12), f"auipc {N[rd]}, {imm20 & 0xFFFFF}")


def jal(rd: int, off: int) -> Insn:
    imm = _bits(off, {20: 31, **{b: 20 + b for b in range(1, 11)}, 11: 20, **{b: b for b in range(12, 20)}})
    return Insn(_w(0x6F | rd << 7 | imm), f"jal {N[rd]}, {off}")


def jalr(rd: int, rs1: int, off: int) -> Insn:
    return Insn(_w(0x67 | rd << 7 | rs1 << 15 | (off & 0xFFF) << 20), f"jalr {N[rd]}, {off}({N[rs1]})")


def branch(name: str, rs1: int, rs2: int, off: int) -> Insn:
    imm = _bits(off, {12: 31, **{b: 20 + b for b in range(5, 11)}, **{b: 7 + b for b in range(1, 5)}, 11: 7})
    return Insn(_w(0x63 | BRANCHES[name] << 12 | rs1 << 15 | rs2 << 20 | imm), f"{name} {N[rs1]}, {N[rs2]}, {off}")


def amo(name: str, size: int, rd: int, rs2: int, rs1: int, aq: int = 0, rl: int = 0) -> Insn:
    """AMOs, ``lr`` (rs2 = 0) and ``sc``."""
    f5 = {"lr": 2, "sc": 3}.get(name, AMOS.get(name, 0))
    w = 0x2F | rd << 7 | (2 if size == 4 else 3) << 12 | rs1 << 15 | rs2 << 20 | rl << 25 | aq << 26 | f5 << 27
    text = (
        f"{name}.{'w' if size == 4 else 'd'}{'.aq' * (aq and not rl)}{'.rl' * (rl and not aq)}{'.aqrl' * (aq and rl)}"
    )
    if name == "lr":
        return Insn(_w(w), f"{text} {N[rd]}, ({N[rs1]})")
    return Insn(_w(w), f"{text} {N[rd]}, {N[rs2]}, ({N[rs1]})")


# -- compressed encoders --------------------------------------------------------------------------
def c_ls(name: str, r: int, base: int, off: int) -> Insn:
    """c.lw / c.ld / c.sw / c.sd (registers in x8..x15)."""
    f3 = {"c.lw": 2, "c.ld": 3, "c.sw": 6, "c.sd": 7}[name]
    spec = {5: 12, 4: 11, 3: 10, 2: 6, 6: 5} if name in ("c.lw", "c.sw") else {5: 12, 4: 11, 3: 10, 7: 6, 6: 5}
    h = f3 << 13 | _bits(off, spec) | (base - 8) << 7 | (r - 8) << 2
    return Insn(_h(h), f"{name} {N[r]}, {off}({N[base]})")


def c_sp_ls(name: str, r: int, off: int) -> Insn:
    """c.lwsp / c.ldsp / c.swsp / c.sdsp."""
    if name == "c.lwsp":
        h = 2 << 13 | _bits(off, {5: 12, 4: 6, 3: 5, 2: 4, 7: 3, 6: 2}) | r << 7 | 2
    elif name == "c.ldsp":
        h = 3 << 13 | _bits(off, {5: 12, 4: 6, 3: 5, 8: 4, 7: 3, 6: 2}) | r << 7 | 2
    elif name == "c.swsp":
        h = 6 << 13 | _bits(off, {5: 12, 4: 11, 3: 10, 2: 9, 7: 8, 6: 7}) | r << 2 | 2
    else:
        h = 7 << 13 | _bits(off, {5: 12, 4: 11, 3: 10, 8: 9, 7: 8, 6: 7}) | r << 2 | 2
    return Insn(_h(h), f"{name} {N[r]}, {off}(sp)")


def c_ci(name: str, rd: int, imm: int) -> Insn:
    """c.addi / c.addiw / c.li (6-bit signed), c.slli (6-bit shamt), c.lui (imm = 6-bit field)."""
    f3, q = {"c.addi": (0, 1), "c.addiw": (1, 1), "c.li": (2, 1), "c.lui": (3, 1), "c.slli": (0, 2)}[name]
    h = f3 << 13 | ((imm >> 5) & 1) << 12 | rd << 7 | (imm & 31) << 2 | q
    text = imm & 0xFFFFF if name == "c.lui" and imm < 0 else imm
    return Insn(_h(h), f"{name} {N[rd]}, {text}")


def c_addi16sp(imm: int) -> Insn:
    return Insn(_h(3 << 13 | _bits(imm, {9: 12, 4: 6, 6: 5, 8: 4, 7: 3, 5: 2}) | SP << 7 | 1), f"c.addi16sp sp, {imm}")


def c_addi4spn(rd: int, imm: int) -> Insn:
    return Insn(
        _h(_bits(imm, {5: 12, 4: 11, 9: 10, 8: 9, 7: 8, 6: 7, 2: 6, 3: 5}) | (rd - 8) << 2),
        f"c.addi4spn {N[rd]}, sp, {imm}",
    )


def c_cb_alu(name: str, rd: int, imm: int) -> Insn:
    """c.srli / c.srai / c.andi."""
    k = {"c.srli": 0, "c.srai": 1, "c.andi": 2}[name]
    h = 4 << 13 | ((imm >> 5) & 1) << 12 | k << 10 | (rd - 8) << 7 | (imm & 31) << 2 | 1
    return Insn(_h(h), f"{name} {N[rd]}, {imm}")


def c_alu(name: str, rd: int, rs2: int) -> Insn:
    hi, k = C_ALU[name]
    h = 4 << 13 | hi << 12 | 3 << 10 | (rd - 8) << 7 | k << 5 | (rs2 - 8) << 2 | 1
    return Insn(_h(h), f"{name} {N[rd]}, {N[rs2]}")


def c_cr(name: str, r1: int, r2: int = 0) -> Insn:
    """c.mv / c.add (rd, rs2), c.jr / c.jalr (rs1)."""
    link = name in ("c.add", "c.jalr")
    h = 4 << 13 | link << 12 | r1 << 7 | r2 << 2 | 2
    return Insn(_h(h), f"{name} {N[r1]}, {N[r2]}" if name in ("c.mv", "c.add") else f"{name} {N[r1]}")


def c_j(off: int) -> Insn:
    spec = {11: 12, 4: 11, 9: 10, 8: 9, 10: 8, 6: 7, 7: 6, 3: 5, 2: 4, 1: 3, 5: 2}
    return Insn(_h(5 << 13 | _bits(off, spec) | 1), f"c.j {off}")


def c_bz(name: str, rs1: int, off: int) -> Insn:
    spec = {8: 12, 4: 11, 3: 10, 7: 6, 6: 5, 2: 4, 1: 3, 5: 2}
    f3 = 6 if name == "c.beqz" else 7
    return Insn(_h(f3 << 13 | _bits(off, spec) | (rs1 - 8) << 7 | 1), f"{name} {N[rs1]}, {off}")


C_NOP = Insn(_h(1), "c.nop")
FENCE = Insn(_w(0x0FF0000F), "fence iorw, iorw")
FENCE_I = Insn(_w(0x0000100F), "fence.i")


def _split(off: int) -> tuple[int, int]:
    """auipc hi20 and addi/jalr lo12 reaching ``off``."""
    lo = ((off & 0xFFF) ^ 0x800) - 0x800
    return ((off - lo) >> 12) & 0xFFFFF, lo


class _Gen:
    """The random choices of one function."""

    def __init__(self, rng: random.Random, data: int, devices: bool = False) -> None:
        self.rng = rng
        self.dp = rng.choice(list(CREGS))
        self.data = data
        self.a = Asm(rng)
        self.avoid: set[int] = set()  # extra registers a group must not write (loop counters)
        self.devices = devices

    # registers
    def dst(self, *extra: int, zero: bool = True) -> int:
        bad = {SP, self.dp, *self.avoid, *extra}
        while True:
            r = 0 if zero and self.rng.random() < 0.04 else self.rng.randrange(1, 32)
            if r not in bad and (r or zero):
                return r

    def cdst(self, *extra: int) -> int:
        choices = [r for r in CREGS if r not in {self.dp, *self.avoid, *extra}]
        return self.rng.choice(choices)

    def src(self) -> int:
        return self.rng.randrange(32)

    def csrc(self) -> int:
        return self.rng.choice(list(CREGS))

    # groups
    def alu(self) -> list[Insn]:
        """One ALU instruction (the classes a helper or loop body may use too)."""
        r, k = self.rng, self.rng.randrange(9)
        if k < 3:
            return [r_op(r.choice(list(R_OPS)), self.dst(), self.src(), self.src())]
        if k < 5:
            name = r.choice(list(I_OPS))
            imm = r.randrange(-2048, 2048)
            return [i_op(name, self.dst(), self.src(), imm)]
        if k == 5:
            name = r.choice(list(SHIFTS))
            return [shift(name, self.dst(), self.src(), r.randrange(1 << SHIFTS[name][3]))]
        if k == 6:
            return [lui(self.dst(), r.getrandbits(20))]
        return [self.c_alu()]

    def c_alu(self) -> Insn:
        r, k = self.rng, self.rng.randrange(9)
        nz = [v for v in range(-32, 32) if v]
        if k == 0:
            return c_ci(r.choice(["c.addi", "c.addiw"]), self.dst(zero=False), r.choice(nz))
        if k == 1:
            return c_ci("c.li", self.dst(zero=False), r.randrange(-32, 32))
        if k == 2:
            return c_ci("c.lui", self.dst(SP, zero=False), r.choice(nz))
        if k == 3:
            return c_ci("c.slli", self.dst(zero=False), r.randrange(1, 64))
        if k == 4:
            name = r.choice(["c.srli", "c.srai", "c.andi"])
            imm = r.randrange(-32, 32) if name == "c.andi" else r.randrange(1, 64)
            return c_cb_alu(name, self.cdst(), imm)
        if k == 5:
            return c_alu(r.choice(list(C_ALU)), self.cdst(), self.csrc())
        if k == 6:
            return c_cr(r.choice(["c.mv", "c.add"]), self.dst(zero=False), r.randrange(1, 32))
        if k == 7:
            return c_addi4spn(self.cdst(), 4 * r.randrange(1, FRAME // 4))
        return C_NOP

    def mem(self) -> list[Insn]:
        """A load or store of any width on the data buffer (directly or via a temporary)."""
        r = self.rng
        name = r.choice(list(LOADS) + list(STORES))
        size = (LOADS.get(name) or STORES[name])[1]
        half = DATA_SIZE // 2
        off = r.randrange(-half, half, size)
        out, base = [], self.dp
        if r.random() < 0.3:
            base = self.dst(zero=False)
            delta = r.randrange(-256, 256, 8)
            out.append(i_op("addi", base, self.dp, delta))
            off = r.randrange(max(-half, delta - 2048), min(half, delta + 2048), size) - delta
        if name in LOADS:
            out.append(load(name, self.dst(), base, off))
        else:
            out.append(store(name, self.src(), base, off))
        return out

    def c_mem(self) -> list[Insn]:
        r = self.rng
        name = r.choice(["c.lw", "c.ld", "c.sw", "c.sd"])
        size = 4 if name.endswith("w") else 8
        out, base = [], self.dp
        if r.random() < 0.4:
            base = self.cdst()
            out.append(i_op("addi", base, self.dp, r.randrange(-DATA_SIZE // 2, 0, 8)))
        off = r.randrange(0, 32 * size, size)
        reg = self.cdst(base) if name in ("c.lw", "c.ld") else self.csrc()
        return out + [c_ls(name, reg, base, off)]

    def stack(self) -> list[Insn]:
        """sp-relative loads/stores inside the frame (not the saved ra)."""
        r = self.rng
        name = r.choice(["c.lwsp", "c.ldsp", "c.swsp", "c.sdsp", "ld", "sd", "lw", "sw", "lbu", "sh"])
        size = 4 if name in ("c.lwsp", "c.swsp", "lw", "sw") else {"lbu": 1, "sh": 2}.get(name, 8)
        off = r.randrange(0, FRAME - 16, size)
        if name.startswith("c."):
            reg = self.dst(zero=False) if "l" in name[2:3] else self.src()
            return [c_sp_ls(name, reg, off)]
        if name in LOADS:
            return [load(name, self.dst(), SP, off)]
        return [store(name, self.src(), SP, off)]

    def sp_adjust(self) -> list[Insn]:
        """c.addi16sp down, stack traffic in the new room, and back up."""
        n = 16 * self.rng.randrange(1, 8)
        body = [c_sp_ls("c.sdsp", self.src(), 8 * self.rng.randrange(n // 8)), *self.stack()]
        return [c_addi16sp(-n), *body, c_addi16sp(n)]

    def pcrel(self) -> list[Insn]:
        r = self.rng
        rd = self.dst()
        out = [auipc(rd, r.choice([0, 1, -1, r.getrandbits(20)]))]
        if rd and r.random() < 0.5:
            out.append(i_op("addi", rd, rd, r.randrange(-2048, 2048)))
        return out

    def atomic(self) -> list[Insn]:
        r = self.rng
        size = r.choice([4, 8])
        t = self.dst(zero=False)
        out = [i_op("addi", t, self.dp, r.randrange(-DATA_SIZE // 2, DATA_SIZE // 2, size))]
        aq, rl = r.randrange(2), r.randrange(2)
        if r.random() < 0.6:
            return out + [amo(r.choice(list(AMOS)), size, self.dst(), self.src(), t, aq, rl)]
        rd = self.dst(t, zero=False)
        out.append(amo("lr", size, rd, 0, t, aq, rl))
        if r.random() < 0.5:
            out.append(r_op(r.choice(["add", "xor", "sub"]), self.dst(t), self.src(), self.src()))
        return out + [amo("sc", size, self.dst(), self.src(), t, aq, rl)]

    def branch(self) -> None:
        """A forward branch or jump of any kind to a random group start."""
        r, a = self.rng, self.a
        k = r.randrange(8)
        if k < 3:
            name, rs1, rs2 = r.choice(list(BRANCHES)), self.src(), self.src()
            a.fixup([4], lambda pc, t: [branch(name, rs1, rs2, t - pc)], reach=4094)
        elif k == 3:
            name, rs = r.choice(["c.beqz", "c.bnez"]), self.csrc()
            a.fixup([2], lambda pc, t: [c_bz(name, rs, t - pc)], reach=254)
        elif k == 4:
            a.fixup([2], lambda pc, t: [c_j(t - pc)], reach=2046)
        elif k == 5:
            rd = self.dst()
            a.fixup([4], lambda pc, t: [jal(rd, t - pc)])
        else:
            self.indirect(None)

    def indirect(self, target: str | None, link: bool = False) -> None:
        """auipc + jalr, or auipc + addi + c.jr/c.jalr, to ``target`` (a call if ``link``)."""
        r, a = self.rng, self.a
        t = self.dst(zero=False) if not link else self.dst(SP, zero=False)
        rd = RA if link else r.choice([0, t, self.dst()])
        if r.random() < 0.5:

            def enc(pc: int, tgt: int) -> list[Insn]:
                hi, lo = _split(tgt - pc)
                return [auipc(t, hi), jalr(rd, t, lo)]

            a.fixup([4, 4], enc, target=target)
        else:
            name = "c.jalr" if link or r.random() < 0.3 else "c.jr"

            def enc2(pc: int, tgt: int) -> list[Insn]:
                hi, lo = _split(tgt - pc)
                return [auipc(t, hi), i_op("addi", t, t, lo), c_cr(name, t)]

            a.fixup([4, 4, 2], enc2, target=target)

    def call(self) -> None:
        if self.rng.random() < 0.4:
            self.a.fixup([4], lambda pc, t: [jal(RA, t - pc)], target="helper")
        else:
            self.indirect("helper", link=True)

    def loop(self) -> None:
        r, a = self.rng, self.a
        cnt = self.dst(zero=False)
        a.add(c_ci("c.li", cnt, r.randrange(1, 5)) if r.random() < 0.5 else i_op("addi", cnt, 0, r.randrange(1, 5)))
        top = a.label()
        self.avoid = {cnt}
        for _ in range(r.randrange(1, 4)):
            a.add(r.choice([self.alu, self.mem, self.stack])())
        self.avoid = set()
        a.add(c_ci("c.addi", cnt, -1) if r.random() < 0.5 else i_op("addi", cnt, cnt, -1))
        if cnt in CREGS and r.random() < 0.5:
            a.fixup([2], lambda pc, t: [c_bz("c.bnez", cnt, t - pc)], target=top)
        else:
            name = r.choice(["bne", "bltu"])
            a.fixup([4], lambda pc, t: [branch(name, 0, cnt, t - pc)], target=top)

    def device(self) -> list[Insn]:
        """A load or store on the board's devices: UART transmit and status, the CLINT's
        ``mtime`` (virtual time) and ``mtimecmp`` (a store reprograms the timer, often to a
        moment just ahead or behind, which ends the slice there; ``mie`` stays 0, so the
        interrupt only becomes pending)."""
        r = self.rng
        t = self.dst(zero=False)
        k = r.randrange(6)
        if k == 5:  # mtimecmp = mtime + a little
            v = self.dst(t, zero=False)
            return [
                lui(t, (MTIME + 8) >> 12),
                load("ld", v, t, -8),
                i_op("addi", v, v, r.randrange(-8, 40)),
                lui(t, MTIMECMP >> 12),
                store("sd", v, t, 0),
            ]
        if k == 0:
            return [lui(t, UART >> 12), store("sb", self.src(), t, 0)]
        if k == 1:
            return [lui(t, UART >> 12), load(r.choice(["lbu", "lb"]), self.dst(), t, 5)]
        if k == 2:
            name = r.choice(["ld", "lw", "lwu"])
            return [
                lui(t, (MTIME + 8) >> 12),
                load(name, self.dst(), t, -8 + (4 if name != "ld" and r.random() < 0.5 else 0)),
            ]
        name = r.choice(["sd", "sw"])
        off = 4 if name == "sw" and r.random() < 0.5 else 0
        if k == 3:
            return [lui(t, MTIMECMP >> 12), load("ld" if name == "sd" else "lwu", self.dst(), t, off)]
        return [lui(t, MTIMECMP >> 12), store(name, self.src(), t, off)]

    def group(self) -> None:
        r, a = self.rng, self.a
        a.boundary()
        groups = ["alu", "mem", "c_mem", "stack", "sp_adjust", "pcrel", "atomic", "branch", "call", "loop", "fence"]
        weights = [30, 10, 6, 5, 2, 5, 4, 14, 4, 3, 1]
        if self.devices:
            groups, weights = [*groups, "device"], [*weights, 25]
        k = r.choices(groups, weights=weights)[0]
        if k == "branch":
            self.branch()
        elif k == "call":
            self.call()
        elif k == "loop":
            self.loop()
        elif k == "fence":
            a.add(r.choice([FENCE, FENCE_I]))
        else:
            a.add(getattr(self, k)())


def generate(
    rng: random.Random, length: int, base: int, data: int | None = None, devices: bool = False
) -> SynthFunction:
    """A random function for ``base`` with about ``length`` body instructions.

    ``data`` is the data buffer (default ``base + DATA_OFFSET``); the data register holds its
    middle at the call, ``ra`` the return address, ``sp`` a stack with ``FRAME`` bytes free.
    ``devices`` adds loads and stores on the board's devices to the mix.
    """
    data = base + DATA_OFFSET if data is None else data
    g = _Gen(rng, data, devices)
    a = g.a
    a.add(c_addi16sp(-FRAME) if rng.random() < 0.5 else i_op("addi", SP, SP, -FRAME))
    a.add(c_sp_ls("c.sdsp", RA, FRAME - 8) if rng.random() < 0.5 else store("sd", RA, SP, FRAME - 8))
    while len(a.items) < length + 2:
        g.group()
    a.boundary()
    a.label("end")
    a.add(c_sp_ls("c.ldsp", RA, FRAME - 8) if rng.random() < 0.5 else load("ld", RA, SP, FRAME - 8))
    a.add(c_addi16sp(FRAME) if rng.random() < 0.5 else i_op("addi", SP, SP, FRAME))
    a.add(jalr(0, RA, 0) if rng.random() < 0.5 else c_cr("c.jr", RA))
    a.label("helper")
    g.avoid = {RA}
    for _ in range(rng.randrange(1, 4)):
        a.add(g.alu() if rng.random() < 0.7 else [g.c_alu()])
    a.add(jalr(0, RA, 0) if rng.random() < 0.5 else c_cr("c.jr", RA))
    code, starts, texts = a.resolve(base)
    return SynthFunction("riscv64", base, code, starts, texts, data, N[g.dp], ("sp", N[g.dp]))


def call_setup(fn: SynthFunction, ret: int, sp: int) -> tuple[dict[str, int], list[tuple[int, bytes]]]:
    """Registers (and memory) for calling ``fn`` with return address ``ret`` and stack ``sp``."""
    return {"ra": ret, "sp": sp, fn.data_reg: fn.data + DATA_SIZE // 2, "pc": fn.base}, []


def exit_stub(base: int) -> bytes:
    """Code ending the run through the test device with status 0 (sw 0x5555 to 0x100000)."""
    t0, t1 = 5, 6
    return b"".join(i.raw for i in (lui(t0, 0x100), lui(t1, 5), i_op("addi", t1, t1, 0x555), store("sw", t1, t0, 0)))


#: Registers compared between the unprobed and the probed runs.
COMPARE_REGS: tuple[str, ...] = (*N[1:], "mstatus")
_IRQ_BITS = 0x2 | 0x8 | 0x20 | 0x80  # SIE, MIE, SPIE, MPIE


def random_state(rng: random.Random) -> dict[str, int]:
    """Random non-GPR state for a call: the interrupt-enable bits of mstatus (no interrupt
    can arrive: nothing is enabled in mie), which the step masks and must restore."""
    return {"mstatus": 0xA00000000 | (rng.getrandbits(8) & _IRQ_BITS)}
