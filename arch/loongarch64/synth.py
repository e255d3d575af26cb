"""loongarch64 synthetic functions for the probe fuzzer (LoongArch base integer ISA).

Encodings are built from bit fields here; each instruction also carries its assembler text.
The function saves ``ra`` in a stack frame, runs random groups (3R/2R ALU, immediates, shifts,
mul/div/mod with non-zero divisors, bstrins/bstrpick, ext, clz/ctz, rev, bytepick,
maskeqz/masknez, alsl, lu12i/lu32i/lu52i, loads/stores of every width and form (ld/st, ldx/stx,
ldptr/stptr, ldgt/ldle) on the data buffer and the stack, addresses formed with
pcaddi/pcaddu12i/pcalau12i/pcaddu18i, forward b/bl/beq../beqz/bnez/jirl, calls to a local
helper, bounded loops, and ll/sc and am* atomics, which the decoder rejects), then returns
with ``jirl r0, r1, 0``. ``sp`` and the data register are never written by the body.
"""

from __future__ import annotations

import random
import struct

from kprobesim.fuzz.synth import DATA_OFFSET, DATA_SIZE, Asm, Insn, SynthFunction

from .regs import GPR_NAMES

FRAME = 256
ZERO, RA, SP = 0, 1, 3
UART = 0x1FE0_01E0  # the board's NS16550

R3 = {  # op[31:15]
    "add.w": 0x20, "add.d": 0x21, "sub.w": 0x22, "sub.d": 0x23, "slt": 0x24, "sltu": 0x25,
    "maskeqz": 0x26, "masknez": 0x27, "nor": 0x28, "and": 0x29, "or": 0x2A, "xor": 0x2B,
    "orn": 0x2C, "andn": 0x2D, "sll.w": 0x2E, "srl.w": 0x2F, "sra.w": 0x30, "sll.d": 0x31,
    "srl.d": 0x32, "sra.d": 0x33, "rotr.w": 0x36, "rotr.d": 0x37, "mul.w": 0x38,
    "mulh.w": 0x39, "mulh.wu": 0x3A, "mul.d": 0x3B, "mulh.d": 0x3C, "mulh.du": 0x3D,
    "mulw.d.w": 0x3E, "mulw.d.wu": 0x3F,
}  # fmt: skip
DIV = {"div.w": 0x40, "mod.w": 0x41, "div.wu": 0x42, "mod.wu": 0x43, "div.d": 0x44, "mod.d": 0x45,
       "div.du": 0x46, "mod.du": 0x47}  # fmt: skip
LDX = {"ldx.b": (0x7000, 1), "ldx.h": (0x7008, 2), "ldx.w": (0x7010, 4), "ldx.d": (0x7018, 8),
       "ldx.bu": (0x7040, 1), "ldx.hu": (0x7048, 2), "ldx.wu": (0x7050, 4)}  # fmt: skip
STX = {"stx.b": (0x7020, 1), "stx.h": (0x7028, 2), "stx.w": (0x7030, 4), "stx.d": (0x7038, 8)}
BOUND = {"ldgt.b": (0x70F0, 1), "ldgt.h": (0x70F1, 2), "ldgt.w": (0x70F2, 4), "ldgt.d": (0x70F3, 8),
         "ldle.b": (0x70F4, 1), "ldle.h": (0x70F5, 2), "ldle.w": (0x70F6, 4), "ldle.d": (0x70F7, 8),
         "stgt.b": (0x70F8, 1), "stgt.d": (0x70FB, 8), "stle.w": (0x70FE, 4), "stle.h": (0x70FD, 2)}  # fmt: skip
R2 = {"clo.w": 4, "clz.w": 5, "cto.w": 6, "ctz.w": 7, "clo.d": 8, "clz.d": 9, "cto.d": 0xA, "ctz.d": 0xB,
      "revb.2h": 0xC, "revb.4h": 0xD, "revb.2w": 0xE, "revb.d": 0xF, "revh.2w": 0x10, "revh.d": 0x11,
      "bitrev.4b": 0x12, "bitrev.8b": 0x13, "bitrev.w": 0x14, "bitrev.d": 0x15, "ext.w.h": 0x16,
      "ext.w.b": 0x17}  # fmt: skip
I12 = {"slti": 0x8, "sltui": 0x9, "addi.w": 0xA, "addi.d": 0xB, "lu52i.d": 0xC, "andi": 0xD, "ori": 0xE,
       "xori": 0xF}  # fmt: skip
UNSIGNED12 = {"andi", "ori", "xori"}
LD = {"ld.b": (0xA0, 1), "ld.h": (0xA1, 2), "ld.w": (0xA2, 4), "ld.d": (0xA3, 8), "ld.bu": (0xA8, 1),
      "ld.hu": (0xA9, 2), "ld.wu": (0xAA, 4)}  # fmt: skip
ST = {"st.b": (0xA4, 1), "st.h": (0xA5, 2), "st.w": (0xA6, 4), "st.d": (0xA7, 8)}
PTR = {"ldptr.w": (0x24, 4), "stptr.w": (0x25, 4), "ldptr.d": (0x26, 8), "stptr.d": (0x27, 8)}
LLSC = {"ll.w": 0x20, "sc.w": 0x21, "ll.d": 0x22, "sc.d": 0x23}
I20 = {"lu12i.w": 0xA, "lu32i.d": 0xB, "pcaddi": 0xC, "pcalau12i": 0xD, "pcaddu12i": 0xE, "pcaddu18i": 0xF}
SHI = {
    "slli.w": (0x408000, 5), "slli.d": (0x410000, 6), "srli.w": (0x448000, 5), "srli.d": (0x450000, 6),
    "srai.w": (0x488000, 5), "srai.d": (0x490000, 6), "rotri.w": (0x4C8000, 5), "rotri.d": (0x4D0000, 6),
}  # fmt: skip
BR16 = {"beq": 0x16, "bne": 0x17, "blt": 0x18, "bge": 0x19, "bltu": 0x1A, "bgeu": 0x1B}
AM = {"amswap.w": 0x70C0, "amswap.d": 0x70C1, "amadd.w": 0x70C2, "amadd.d": 0x70C3, "amand.d": 0x70C5,
      "amor.w": 0x70C6, "amxor.d": 0x70C9, "ammax.w": 0x70CA, "ammin.d": 0x70CD, "ammax.wu": 0x70CE,
      "amadd_db.d": 0x70D5}  # fmt: skip


def _r(r: int) -> str:
    return f"$r{r}"


def _w(v: int, text: str) -> Insn:
    return Insn(struct.pack("<I", v & 0xFFFF_FFFF), text)


def r3(name: str, rd: int, rj: int, rk: int) -> Insn:
    op = {**R3, **DIV}.get(name) or {**LDX, **STX, **BOUND}[name][0]
    return _w(op << 15 | rk << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}, {_r(rk)}")


def r2(name: str, rd: int, rj: int) -> Insn:
    return _w(R2[name] << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}")


def i12(name: str, rd: int, rj: int, imm: int) -> Insn:
    op = I12.get(name) or (LD.get(name) or ST[name])[0]
    return _w(op << 22 | (imm & 0xFFF) << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}, {imm}")


def i14(name: str, rd: int, rj: int, off: int) -> Insn:
    """ldptr/stptr/ll/sc: ``off`` is the byte offset (a multiple of 4)."""
    op = (PTR.get(name) or (LLSC[name], 0))[0]
    return _w(op << 24 | ((off >> 2) & 0x3FFF) << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}, {off}")


def i20(name: str, rd: int, imm: int) -> Insn:
    return _w(I20[name] << 25 | (imm & 0xFFFFF) << 5 | rd, f"{name} {_r(rd)}, {imm}")


def shi(name: str, rd: int, rj: int, sh: int) -> Insn:
    return _w(SHI[name][0] | sh << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}, {sh}")


def bstr(name: str, rd: int, rj: int, msb: int, lsb: int) -> Insn:
    base = {"bstrins.w": 0x00600000, "bstrpick.w": 0x00608000, "bstrins.d": 0x00800000,
            "bstrpick.d": 0x00C00000}[name]  # fmt: skip
    return _w(base | msb << 16 | lsb << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}, {msb}, {lsb}")


def alsl(name: str, rd: int, rj: int, rk: int, sa: int) -> Insn:
    base = {"alsl.w": 0x00040000, "alsl.wu": 0x00060000, "alsl.d": 0x002C0000}[name]
    return _w(base | (sa - 1) << 15 | rk << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}, {_r(rk)}, {sa}")


def bytepick(name: str, rd: int, rj: int, rk: int, sa: int) -> Insn:
    base = 0x00080000 if name == "bytepick.w" else 0x000C0000
    return _w(base | sa << 15 | rk << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rj)}, {_r(rk)}, {sa}")


def addu16i(rd: int, rj: int, imm: int) -> Insn:
    return _w(0x10000000 | (imm & 0xFFFF) << 10 | rj << 5 | rd, f"addu16i.d {_r(rd)}, {_r(rj)}, {imm}")


def am(name: str, rd: int, rk: int, rj: int) -> Insn:
    return _w(AM[name] << 15 | rk << 10 | rj << 5 | rd, f"{name} {_r(rd)}, {_r(rk)}, {_r(rj)}")


def br16(name: str, rj: int, rd: int, off: int) -> Insn:
    return _w(BR16[name] << 26 | ((off >> 2) & 0xFFFF) << 10 | rj << 5 | rd, f"{name} {_r(rj)}, {_r(rd)}, {off}")


def jirl(rd: int, rj: int, off: int) -> Insn:
    return _w(0x13 << 26 | ((off >> 2) & 0xFFFF) << 10 | rj << 5 | rd, f"jirl {_r(rd)}, {_r(rj)}, {off}")


def br21(name: str, rj: int, off: int) -> Insn:
    o = (off >> 2) & 0x1FFFFF
    return _w(
        (0x10 if name == "beqz" else 0x11) << 26 | (o & 0xFFFF) << 10 | rj << 5 | o >> 16, f"{name} {_r(rj)}, {off}"
    )


def b26(name: str, off: int) -> Insn:
    o = (off >> 2) & 0x3FFFFFF
    return _w((0x14 if name == "b" else 0x15) << 26 | (o & 0xFFFF) << 10 | o >> 16, f"{name} {off}")


DBAR = _w(0x38720000, "dbar 0")
IBAR = _w(0x38728000, "ibar 0")
NOP = _w(0x03400000, "nop")


class _Gen:
    """The random choices of one function."""

    def __init__(self, rng: random.Random, data: int, devices: bool = False) -> None:
        self.rng = rng
        self.dp = rng.choice([r for r in range(4, 32) if r != 21])
        self.data = data
        self.a = Asm(rng)
        self.avoid: set[int] = set()
        self.devices = devices

    def dst(self, *extra: int, zero: bool = True) -> int:
        bad = {SP, self.dp, *self.avoid, *extra}
        while True:
            r = 0 if zero and self.rng.random() < 0.04 else self.rng.randrange(1, 32)
            if r not in bad and (r or zero):
                return r

    def src(self) -> int:
        return self.rng.randrange(32)

    def alu(self) -> list[Insn]:
        r, k = self.rng, self.rng.randrange(12)
        if k < 3:
            return [r3(r.choice(list(R3)), self.dst(), self.src(), self.src())]
        if k == 3:
            return [r2(r.choice(list(R2)), self.dst(), self.src())]
        if k < 6:
            name = r.choice(list(I12))
            imm = r.randrange(4096) if name in UNSIGNED12 else r.randrange(-2048, 2048)
            return [i12(name, self.dst(), self.src(), imm)]
        if k == 6:
            name = r.choice(list(SHI))
            return [shi(name, self.dst(), self.src(), r.randrange(1 << SHI[name][1]))]
        if k == 7:
            name = r.choice(["bstrins.w", "bstrpick.w", "bstrins.d", "bstrpick.d"])
            top = 32 if name.endswith("w") else 64
            lsb = r.randrange(top)
            return [bstr(name, self.dst(), self.src(), r.randrange(lsb, top), lsb)]
        if k == 8:
            if r.random() < 0.5:
                return [
                    alsl(
                        r.choice(["alsl.w", "alsl.wu", "alsl.d"]), self.dst(), self.src(), self.src(), r.randrange(1, 5)
                    )
                ]
            name = r.choice(["bytepick.w", "bytepick.d"])
            return [bytepick(name, self.dst(), self.src(), self.src(), r.randrange(4 if name.endswith("w") else 8))]
        if k == 9:
            name = r.choice(["lu12i.w", "lu32i.d"])
            return [i20(name, self.dst(), r.randrange(-(1 << 19), 1 << 19))]
        if k == 10:
            return [addu16i(self.dst(), self.src(), r.randrange(-32768, 32768))]
        return [r.choice([NOP, DBAR, IBAR])] if r.random() < 0.3 else self.div()

    def div(self) -> list[Insn]:
        """div/mod with a divisor made non-zero first (LoongArch leaves x/0 undefined)."""
        r = self.rng
        t = self.dst(zero=False)
        return [i12("ori", t, self.src(), 1 << r.randrange(12)), r3(r.choice(list(DIV)), self.dst(), self.src(), t)]

    def mem(self) -> list[Insn]:
        r = self.rng
        half = DATA_SIZE // 2
        k = r.randrange(5)
        if k < 2:
            name = r.choice(list(LD) + list(ST))
            size = (LD.get(name) or ST[name])[1]
            off = r.randrange(-half, half - size + 1, size)
            reg = self.dst() if name in LD else self.src()
            return [i12(name, reg, self.dp, off)]
        if k == 2:
            name = r.choice(list(LDX) + list(STX))
            size = (LDX.get(name) or STX[name])[1]
            t = self.dst(zero=False)
            reg = self.dst() if name in LDX else self.src()
            return [i12("addi.d", t, ZERO, r.randrange(-half, half - size + 1, size)), r3(name, reg, self.dp, t)]
        if k == 3:
            name = r.choice(list(PTR))
            size = PTR[name][1]
            reg = self.dst() if name.startswith("ld") else self.src()
            return [i14(name, reg, self.dp, r.randrange(-half, half - size + 1, 4 if size == 4 else 8))]
        name = r.choice(list(BOUND))
        size = BOUND[name][1]
        t = self.dst(zero=False)
        lim = self.dst(t, zero=False)
        base = [i12("addi.d", t, self.dp, r.randrange(-half, half - size + 1, size))]
        bound = [r3("or", lim, ZERO, ZERO)] if "gt" in name else [i12("addi.d", lim, ZERO, -1)]
        reg = self.dst(t, lim) if name.startswith("ld") else self.src()
        return base + bound + [r3(name, reg, t, lim)]

    def stack(self) -> list[Insn]:
        r = self.rng
        name = r.choice(["ld.d", "st.d", "ld.w", "st.w", "ld.bu", "st.h", "ldptr.d", "stptr.w"])
        size = {"ld.d": 8, "st.d": 8, "ld.w": 4, "st.w": 4, "ld.bu": 1, "st.h": 2, "ldptr.d": 8, "stptr.w": 4}[name]
        off = r.randrange(0, FRAME - 16, max(size, 4) if "ptr" in name else size)
        reg = self.dst() if name.startswith("ld") else self.src()
        return [i14(name, reg, SP, off) if "ptr" in name else i12(name, reg, SP, off)]

    def pcrel(self) -> None:
        """A PC-relative address of the data buffer, then a load or store through it."""
        r, a = self.rng, self.a
        t = self.dst(zero=False)
        size = r.choice([1, 2, 4, 8])
        target = self.data + r.randrange(0, DATA_SIZE - 8, size)
        how = r.randrange(3)
        ld = r.random() < 0.5
        name = (
            {1: "ld.b", 2: "ld.h", 4: "ld.w", 8: "ld.d"}[size]
            if ld
            else {1: "st.b", 2: "st.h", 4: "st.w", 8: "st.d"}[size]
        )
        reg = self.dst() if ld else self.src()

        def enc(pc: int, _t: int) -> list[Insn]:
            if how == 0:  # the kernel's la.pcrel: page of the target, then its low 12 bits
                hi = ((target + 0x800) >> 12) - (pc >> 12)
                return [i20("pcalau12i", t, hi), i12(name, reg, t, ((target & 0xFFF) ^ 0x800) - 0x800)]
            d = target - pc
            if how == 1:
                lo = ((d & 0xFFF) ^ 0x800) - 0x800
                return [i20("pcaddu12i", t, (d - lo) >> 12), i12(name, reg, t, lo)]
            k = d & ~3 if -(1 << 21) <= d < (1 << 21) else 0
            return [i20("pcaddi", t, k >> 2), i12(name, reg, t, d - k)]

        a.fixup([4, 4], enc, target=".")
        if r.random() < 0.3:
            a.add(
                i20(
                    r.choice(["pcaddi", "pcaddu12i", "pcalau12i", "pcaddu18i"]),
                    self.dst(),
                    r.randrange(-(1 << 19), 1 << 19),
                )
            )

    def atomic(self) -> list[Insn]:
        """ll/sc and am* (rejected by the decoder, but executed by every run)."""
        r = self.rng
        t = self.dst(zero=False)
        size = r.choice([4, 8])
        out = [i12("addi.d", t, self.dp, r.randrange(-DATA_SIZE // 2, DATA_SIZE // 2 - 8, 8))]
        if r.random() < 0.5:
            name = r.choice(list(AM))
            rd = self.dst(t)
            rk = self.src()
            while rd and rd == rk:
                rd = self.dst(t)
            return out + [am(name, rd, rk, t)]
        rd = self.dst(t, zero=False)
        s = "w" if size == 4 else "d"
        # sc stores the loaded value back, so a dropped reservation is invisible
        return out + [i14(f"ll.{s}", rd, t, 0), i14(f"sc.{s}", rd, t, 0)]

    def branch(self) -> None:
        r, a = self.rng, self.a
        k = r.randrange(6)
        if k < 2:
            name, rj, rd = r.choice(list(BR16)), self.src(), self.src()
            a.fixup([4], lambda pc, t: [br16(name, rj, rd, t - pc)], reach=(1 << 17) - 4)
        elif k == 2:
            name, rj = r.choice(["beqz", "bnez"]), self.src()
            a.fixup([4], lambda pc, t: [br21(name, rj, t - pc)])
        elif k == 3:
            name = r.choice(["b", "bl"])
            a.fixup([4], lambda pc, t: [b26(name, t - pc)])
        else:
            self.indirect(None)

    def indirect(self, target: str | None, link: bool = False) -> None:
        """pcaddi/pcaddu12i/pcaddu18i + jirl to ``target`` (a call when ``link``)."""
        r = self.rng
        t = self.dst(zero=False)
        rd = RA if link else r.choice([0, t, self.dst()])
        how, k = r.randrange(3), r.randrange(-8, 9)

        def enc(pc: int, tgt: int) -> list[Insn]:
            d = tgt - pc
            if how == 0:
                return [i20("pcaddi", t, k), jirl(rd, t, d - 4 * k)]
            if how == 1:
                return [i20("pcaddu12i", t, 0), jirl(rd, t, d)]
            hi = (d + (1 << 17)) >> 18  # the kernel's call36: pcaddu18i + jirl
            return [i20("pcaddu18i", t, hi), jirl(rd, t, d - (hi << 18))]

        self.a.fixup([4, 4], enc, target=target)

    def call(self) -> None:
        if self.rng.random() < 0.5:
            self.a.fixup([4], lambda pc, t: [b26("bl", t - pc)], target="helper")
        else:
            self.indirect("helper", link=True)

    def loop(self) -> None:
        r, a = self.rng, self.a
        cnt = self.dst(zero=False)
        a.add(i12("ori", cnt, ZERO, r.randrange(1, 5)))
        top = a.label()
        self.avoid = {cnt}
        for _ in range(r.randrange(1, 4)):
            a.add(r.choice([self.alu, self.mem, self.stack])())
        self.avoid = set()
        a.add(i12("addi.d", cnt, cnt, -1))
        k = r.randrange(3)
        if k == 0:
            a.fixup([4], lambda pc, t: [br21("bnez", cnt, t - pc)], target=top)
        else:
            name = "bne" if k == 1 else "blt"
            a.fixup([4], lambda pc, t: [br16(name, ZERO, cnt, t - pc)], target=top)

    def device(self) -> list[Insn]:
        """A load or store on the board's UART (its registers sit inside an MMIO page):
        transmit (the byte reaches the console) or the line status register."""
        r = self.rng
        t = self.dst(zero=False)
        addr = [i20("lu12i.w", t, UART >> 12), i12("ori", t, t, UART & 0xFFF)]
        k = r.randrange(4)
        if k == 0:
            return [*addr, i12("st.b", self.src(), t, 0)]
        if k == 1:
            return [*addr, i14("stptr.w", self.src(), t, 0)]
        if k == 2:
            return [*addr, i12(r.choice(["ld.bu", "ld.b"]), self.dst(), t, 5)]
        return [*addr, r3("ldx.bu", self.dst(), t, ZERO)]

    def group(self) -> None:
        r, a = self.rng, self.a
        a.boundary()
        groups = ["alu", "div", "mem", "stack", "pcrel", "atomic", "branch", "call", "loop"]
        weights = [36, 4, 12, 5, 6, 3, 14, 4, 3]
        if self.devices:
            groups, weights = [*groups, "device"], [*weights, 25]
        k = r.choices(groups, weights=weights)[0]
        if k == "branch":
            self.branch()
        elif k == "call":
            self.call()
        elif k == "loop":
            self.loop()
        elif k == "pcrel":
            self.pcrel()
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
    a.add(i12("addi.d", SP, SP, -FRAME))
    a.add(i12("st.d", RA, SP, FRAME - 8) if rng.random() < 0.5 else i14("stptr.d", RA, SP, FRAME - 8))
    while len(a.items) < length + 2:
        g.group()
    a.boundary()
    a.label("end")
    a.add(i12("ld.d", RA, SP, FRAME - 8) if rng.random() < 0.5 else i14("ldptr.d", RA, SP, FRAME - 8))
    a.add(i12("addi.d", SP, SP, FRAME))
    a.add(jirl(ZERO, RA, 0))
    a.label("helper")
    g.avoid = {RA}
    for _ in range(rng.randrange(1, 4)):
        a.add(g.alu())
    a.add(jirl(ZERO, RA, 0))
    code, starts, texts = a.resolve(base)
    return SynthFunction("loongarch64", base, code, starts, texts, data, GPR_NAMES[g.dp], ("sp", GPR_NAMES[g.dp]))


#: Registers compared between the unprobed and the probed runs.
COMPARE_REGS: tuple[str, ...] = (*GPR_NAMES[1:], "crmd", "prmd")


def random_state(rng: random.Random) -> dict[str, int]:
    """Random PRMD.PIE (saved and restored around a step); CRMD is left as the board set it."""
    return {"prmd": rng.getrandbits(1) << 2}


def call_setup(fn: SynthFunction, ret: int, sp: int) -> tuple[dict[str, int], list[tuple[int, bytes]]]:
    """Registers (and memory) for calling ``fn`` with return address ``ret`` and stack ``sp``."""
    return {"ra": ret, "sp": sp, fn.data_reg: fn.data + DATA_SIZE // 2, "pc": fn.base}, []


def exit_stub(base: int) -> bytes:
    """Code ending the run through the test device with status 0 (st.w 0x5555 to 0x100d0000)."""
    t0, t1 = 12, 13
    code = [i20("lu12i.w", t0, 0x100D0), i20("lu12i.w", t1, 5), i12("ori", t1, t1, 0x555), i12("st.w", t1, t0, 0)]
    return b"".join(i.raw for i in code)
