"""A small LoongArch64 instruction encoder for the engine tests (integer + privileged subset)."""

from __future__ import annotations

import struct

R3 = {  # op[31:15]
    "add.w": 0x20, "add.d": 0x21, "sub.w": 0x22, "sub.d": 0x23, "slt": 0x24, "sltu": 0x25,
    "maskeqz": 0x26, "masknez": 0x27, "nor": 0x28, "and": 0x29, "or": 0x2A, "xor": 0x2B,
    "orn": 0x2C, "andn": 0x2D, "sll.w": 0x2E, "srl.w": 0x2F, "sra.w": 0x30, "sll.d": 0x31,
    "srl.d": 0x32, "sra.d": 0x33, "rotr.w": 0x36, "rotr.d": 0x37, "mul.w": 0x38,
    "mulh.w": 0x39, "mulh.wu": 0x3A, "mul.d": 0x3B, "mulh.d": 0x3C, "mulh.du": 0x3D,
    "mulw.d.w": 0x3E, "mulw.d.wu": 0x3F, "div.w": 0x40, "mod.w": 0x41, "div.wu": 0x42,
    "mod.wu": 0x43, "div.d": 0x44, "mod.d": 0x45, "div.du": 0x46, "mod.du": 0x47,
    "crc.w.b.w": 0x48, "crc.w.h.w": 0x49, "crc.w.w.w": 0x4A, "crc.w.d.w": 0x4B,
    "crcc.w.b.w": 0x4C, "crcc.w.h.w": 0x4D, "crcc.w.w.w": 0x4E, "crcc.w.d.w": 0x4F,
    "ldx.b": 0x7000, "ldx.h": 0x7008, "ldx.w": 0x7010, "ldx.d": 0x7018, "stx.b": 0x7020,
    "stx.h": 0x7028, "stx.w": 0x7030, "stx.d": 0x7038, "ldx.bu": 0x7040, "ldx.hu": 0x7048,
    "ldx.wu": 0x7050,
    "ldgt.b": 0x70F0, "ldgt.h": 0x70F1, "ldgt.w": 0x70F2, "ldgt.d": 0x70F3,
    "ldle.b": 0x70F4, "ldle.h": 0x70F5, "ldle.w": 0x70F6, "ldle.d": 0x70F7,
    "stgt.b": 0x70F8, "stgt.h": 0x70F9, "stgt.w": 0x70FA, "stgt.d": 0x70FB,
    "stle.b": 0x70FC, "stle.h": 0x70FD, "stle.w": 0x70FE, "stle.d": 0x70FF,
}
AM_NAMES = ["amswap", "amadd", "amand", "amor", "amxor", "ammax", "ammin", "ammax", "ammin"]
AM = {}
for _k in range(18):
    _base = AM_NAMES[_k // 2]
    _suf = ("w", "d") if _k < 14 else ("wu", "du")
    _name = f"{_base}.{_suf[_k & 1]}"
    AM[_name] = 0x70C0 + _k
    AM[_name.replace(".", "_db.", 1)] = 0x70D2 + _k
R2 = {  # op[31:10]
    "clo.w": 4, "clz.w": 5, "cto.w": 6, "ctz.w": 7, "clo.d": 8, "clz.d": 9, "cto.d": 0xA,
    "ctz.d": 0xB, "revb.2h": 0xC, "revb.4h": 0xD, "revb.2w": 0xE, "revb.d": 0xF,
    "revh.2w": 0x10, "revh.d": 0x11, "bitrev.4b": 0x12, "bitrev.8b": 0x13, "bitrev.w": 0x14,
    "bitrev.d": 0x15, "ext.w.h": 0x16, "ext.w.b": 0x17, "rdtimel.w": 0x18, "rdtimeh.w": 0x19,
    "rdtime.d": 0x1A, "cpucfg": 0x1B,
}
I12 = {  # op[31:22]
    "slti": 0x8, "sltui": 0x9, "addi.w": 0xA, "addi.d": 0xB, "lu52i.d": 0xC, "andi": 0xD,
    "ori": 0xE, "xori": 0xF, "ld.b": 0xA0, "ld.h": 0xA1, "ld.w": 0xA2, "ld.d": 0xA3,
    "st.b": 0xA4, "st.h": 0xA5, "st.w": 0xA6, "st.d": 0xA7, "ld.bu": 0xA8, "ld.hu": 0xA9,
    "ld.wu": 0xAA, "preld": 0xAB, "cacop": 0x18,
}
UNSIGNED_I12 = {"andi", "ori", "xori"}
I14 = {  # op[31:24]
    "ll.w": 0x20, "sc.w": 0x21, "ll.d": 0x22, "sc.d": 0x23, "ldptr.w": 0x24, "stptr.w": 0x25,
    "ldptr.d": 0x26, "stptr.d": 0x27,
}
I20 = {  # op[31:25]
    "lu12i.w": 0xA, "lu32i.d": 0xB, "pcaddi": 0xC, "pcalau12i": 0xD, "pcaddu12i": 0xE,
    "pcaddu18i": 0xF,
}
SHI = {  # name -> (opcode, field width)
    "slli.w": (0x81 << 15, 5), "slli.d": (0x41 << 16, 6), "srli.w": (0x89 << 15, 5),
    "srli.d": (0x45 << 16, 6), "srai.w": (0x91 << 15, 5), "srai.d": (0x49 << 16, 6),
    "rotri.w": (0x99 << 15, 5), "rotri.d": (0x4D << 16, 6),
}
# Floating point (the FPU is enabled in both runners): three-register ops op[31:15], two-register
# ops op[31:10]; the FPR<->GPR moves carry operands in and results out.
FP3 = {
    "fadd.s": 0x201, "fadd.d": 0x202, "fsub.s": 0x205, "fsub.d": 0x206, "fmul.s": 0x209,
    "fmul.d": 0x20A, "fdiv.s": 0x20D, "fdiv.d": 0x20E, "fmax.s": 0x211, "fmax.d": 0x212,
    "fmin.s": 0x215, "fmin.d": 0x216, "fmaxa.s": 0x219, "fmaxa.d": 0x21A, "fmina.s": 0x21D,
    "fmina.d": 0x21E, "fcopysign.s": 0x225, "fcopysign.d": 0x226,
}
FP2 = {
    "fabs.s": 0x4501, "fabs.d": 0x4502, "fneg.s": 0x4505, "fneg.d": 0x4506, "fclass.s": 0x450D,
    "fclass.d": 0x450E, "fsqrt.s": 0x4511, "fsqrt.d": 0x4512, "fmov.s": 0x4525, "fmov.d": 0x4526,
    "fcvt.s.d": 0x4646, "fcvt.d.s": 0x4649, "ffint.s.w": 0x4744, "ffint.s.l": 0x4746,
    "ffint.d.w": 0x4748, "ffint.d.l": 0x474A, "frint.s": 0x4791, "frint.d": 0x4792,
    **{f"ftint{rm}.{i}.{f}": base | {"w.s": 0x1, "w.d": 0x2, "l.s": 0x9, "l.d": 0xA}[f"{i}.{f}"]
       for rm, base in (("rm", 0x4680), ("rp", 0x4690), ("rz", 0x46A0), ("rne", 0x46B0), ("", 0x46C0))
       for i in "wl" for f in "sd"},
}
FP4 = {  # op[31:20] fd, fj, fk, fa
    "fmadd.s": 0x081, "fmadd.d": 0x082, "fmsub.s": 0x085, "fmsub.d": 0x086, "fnmadd.s": 0x089,
    "fnmadd.d": 0x08A, "fnmsub.s": 0x08D, "fnmsub.d": 0x08E,
}
FCMP = {"fcmp.s": 0x0C1, "fcmp.d": 0x0C2}  # op[31:20], cond[19:15], cd[2:0]
FCMP_CONDS = {
    "caf": 0x0, "saf": 0x1, "clt": 0x2, "slt": 0x3, "ceq": 0x4, "seq": 0x5, "cle": 0x6, "sle": 0x7,
    "cun": 0x8, "sun": 0x9, "cult": 0xA, "sult": 0xB, "cueq": 0xC, "sueq": 0xD, "cule": 0xE,
    "sule": 0xF, "cne": 0x10, "sne": 0x11, "cor": 0x14, "sor": 0x15, "cune": 0x18, "sune": 0x19,
}
MOVGR2FR_D, MOVFR2GR_S, MOVFR2GR_D = 0x452A, 0x452D, 0x452E
MOVFR2CF, MOVCF2GR = 0x4534, 0x4537  # op[31:10]
FSEL = 0x0D0  # op[31:20] fd, fj, fk, ca[17:15]


def fp_single_result(name: str) -> bool:
    """Does ``name`` write a single-precision (or 32-bit integer) result to the FPR?"""
    if name.startswith("ftint"):
        return ".w." in name
    if name.startswith(("ffint", "fcvt")):
        return name.split(".")[1] == "s"
    return name.endswith(".s")


BR16 = {"beq": 0x16, "bne": 0x17, "blt": 0x18, "bge": 0x19, "bltu": 0x1A, "bgeu": 0x1B}
BR21 = {"beqz": 0x10, "bnez": 0x11}
BR26 = {"b": 0x14, "bl": 0x15}


def r3(name: str, rd: int, rj: int, rk: int) -> int:
    op = R3.get(name)
    if op is None:
        op = AM[name]
    return op << 15 | rk << 10 | rj << 5 | rd


def am(name: str, rd: int, rk: int, rj: int) -> int:
    """AM* in assembler operand order: ``amadd.w rd, rk, rj`` (rj holds the address)."""
    return AM[name] << 15 | rk << 10 | rj << 5 | rd


def r2(name: str, rd: int, rj: int) -> int:
    return R2[name] << 10 | rj << 5 | rd


def i12(name: str, rd: int, rj: int, imm: int) -> int:
    if name in UNSIGNED_I12:
        assert 0 <= imm < 4096
    else:
        assert -2048 <= imm < 2048, imm
    return I12[name] << 22 | (imm & 0xFFF) << 10 | rj << 5 | rd


def i14(name: str, rd: int, rj: int, byte_off: int) -> int:
    assert byte_off % 4 == 0 and -(1 << 15) <= byte_off < (1 << 15)
    return I14[name] << 24 | ((byte_off >> 2) & 0x3FFF) << 10 | rj << 5 | rd


def i20(name: str, rd: int, imm: int) -> int:
    assert -(1 << 19) <= imm < (1 << 20)
    return I20[name] << 25 | (imm & 0xFFFFF) << 5 | rd


def addu16i(rd: int, rj: int, imm: int) -> int:
    return 0x4 << 26 | (imm & 0xFFFF) << 10 | rj << 5 | rd


def jirl(rd: int, rj: int, byte_off: int) -> int:
    assert byte_off % 4 == 0
    return 0x13 << 26 | ((byte_off >> 2) & 0xFFFF) << 10 | rj << 5 | rd


def shi(name: str, rd: int, rj: int, sh: int) -> int:
    op, width = SHI[name]
    assert 0 <= sh < (1 << width)
    return op | sh << 10 | rj << 5 | rd


def alsl(name: str, rd: int, rj: int, rk: int, sa: int) -> int:
    op = {"alsl.w": 0x2, "alsl.wu": 0x3, "alsl.d": 0x16}[name]
    assert 1 <= sa <= 4
    return op << 17 | (sa - 1) << 15 | rk << 10 | rj << 5 | rd


def bytepick(name: str, rd: int, rj: int, rk: int, sa: int) -> int:
    if name == "bytepick.w":
        return 0x4 << 17 | sa << 15 | rk << 10 | rj << 5 | rd
    return 0x3 << 18 | sa << 15 | rk << 10 | rj << 5 | rd


def bstr(name: str, rd: int, rj: int, msb: int, lsb: int) -> int:
    if name == "bstrins.w":
        return 0x3 << 21 | msb << 16 | lsb << 10 | rj << 5 | rd
    if name == "bstrpick.w":
        return 0x3 << 21 | msb << 16 | 1 << 15 | lsb << 10 | rj << 5 | rd
    if name == "bstrins.d":
        return 0x2 << 22 | msb << 16 | lsb << 10 | rj << 5 | rd
    return 0x3 << 22 | msb << 16 | lsb << 10 | rj << 5 | rd


def br16(name: str, rj: int, rd: int, byte_off: int) -> int:
    assert byte_off % 4 == 0
    return BR16[name] << 26 | ((byte_off >> 2) & 0xFFFF) << 10 | rj << 5 | rd


def br21(name: str, rj: int, byte_off: int) -> int:
    o = byte_off >> 2
    return BR21[name] << 26 | (o & 0xFFFF) << 10 | rj << 5 | ((o >> 16) & 0x1F)


def br26(name: str, byte_off: int) -> int:
    o = byte_off >> 2
    return BR26[name] << 26 | (o & 0xFFFF) << 10 | ((o >> 16) & 0x3FF)


# privileged / system
def brk(code: int = 0) -> int:
    return 0x002A0000 | code


def syscall(code: int = 0) -> int:
    return 0x002B0000 | code


def csrrd(rd: int, csr: int) -> int:
    return 0x04000000 | csr << 10 | rd


def csrwr(rd: int, csr: int) -> int:
    return 0x04000000 | csr << 10 | 1 << 5 | rd


def csrxchg(rd: int, rj: int, csr: int) -> int:
    assert rj > 1
    return 0x04000000 | csr << 10 | rj << 5 | rd


ERTN = 0x06483800
NOP = 0x03400000  # andi r0, r0, 0


def idle(level: int = 0) -> int:
    return 0x06488000 | level


def ibar(hint: int = 0) -> int:
    return 0x38728000 | hint


def dbar(hint: int = 0) -> int:
    return 0x38720000 | hint


def li(rd: int, value: int) -> list[int]:
    """Load a 64-bit constant (lu12i.w/ori/lu32i.d/lu52i.d)."""
    value &= (1 << 64) - 1
    out = [i20("lu12i.w", rd, _sx((value >> 12) & 0xFFFFF, 20)), i12("ori", rd, rd, value & 0xFFF)]
    out.append(i20("lu32i.d", rd, _sx((value >> 32) & 0xFFFFF, 20)))
    out.append(i12("lu52i.d", rd, rd, _sx((value >> 52) & 0xFFF, 12)))
    return out


def _sx(v: int, bits: int) -> int:
    s = 1 << (bits - 1)
    return (v ^ s) - s


def code(words: list[int]) -> bytes:
    return b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in words)
