"""Helpers for the arch-layer tests: a Unicorn RegView, instruction encoders, a P-code oracle."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from unicorn import Uc

MASK64 = (1 << 64) - 1


class UcRegView:
    """RegView over a live Unicorn instance (names resolved through an arch's REG_IDS)."""

    def __init__(self, uc: Uc, reg_ids: Mapping[str, int], zero: frozenset[str] = frozenset()):
        self.uc, self.ids, self.zero = uc, reg_ids, zero

    def __getitem__(self, name: str) -> int:
        return 0 if name in self.zero else self.uc.reg_read(self.ids[name])

    def __setitem__(self, name: str, value: int) -> None:
        if name not in self.zero:
            self.uc.reg_write(self.ids[name], value & MASK64)

    def read_mem(self, addr: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(addr, size))

    def write_mem(self, addr: int, data: bytes) -> None:
        self.uc.mem_write(addr, bytes(data))


# --- riscv encoders ---------------------------------------------------------------------------


def rv_r(op: int, rd: int, f3: int, rs1: int, rs2: int, f7: int) -> bytes:
    return struct.pack("<I", op | rd << 7 | f3 << 12 | rs1 << 15 | rs2 << 20 | f7 << 25)


def rv_i(op: int, rd: int, f3: int, rs1: int, imm: int) -> bytes:
    return struct.pack("<I", op | rd << 7 | f3 << 12 | rs1 << 15 | (imm & 0xFFF) << 20)


def rv_s(op: int, f3: int, rs1: int, rs2: int, imm: int) -> bytes:
    imm &= 0xFFF
    w = op | (imm & 31) << 7 | f3 << 12 | rs1 << 15 | rs2 << 20 | (imm >> 5) << 25
    return struct.pack("<I", w)


def rv_b(f3: int, rs1: int, rs2: int, imm: int) -> bytes:
    imm &= 0x1FFF
    w = 0x63 | ((imm >> 11) & 1) << 7 | ((imm >> 1) & 0xF) << 8 | f3 << 12 | rs1 << 15
    w |= rs2 << 20 | ((imm >> 5) & 0x3F) << 25 | ((imm >> 12) & 1) << 31
    return struct.pack("<I", w)


def rv_u(op: int, rd: int, imm20: int) -> bytes:
    return struct.pack("<I", op | rd << 7 | (imm20 & 0xFFFFF) << 12)


def rv_jal(rd: int, imm: int) -> bytes:
    imm &= 0x1FFFFF
    w = 0x6F | rd << 7 | ((imm >> 12) & 0xFF) << 12 | ((imm >> 11) & 1) << 20
    w |= ((imm >> 1) & 0x3FF) << 21 | ((imm >> 20) & 1) << 31
    return struct.pack("<I", w)


def rv_jalr(rd: int, rs1: int, imm: int) -> bytes:
    return rv_i(0x67, rd, 0, rs1, imm)


def rv_cj(imm: int) -> bytes:
    imm &= 0xFFF
    bits = {11: 12, 4: 11, 9: 10, 8: 9, 10: 8, 6: 7, 7: 6, 3: 5, 2: 4, 1: 3, 5: 2}
    h = 0b101 << 13 | 0b01
    for src, dst in bits.items():
        h |= ((imm >> src) & 1) << dst
    return struct.pack("<H", h)


def rv_cb(f3: int, rs1p: int, imm: int) -> bytes:
    imm &= 0x1FF
    bits = {8: 12, 4: 11, 3: 10, 7: 6, 6: 5, 2: 4, 1: 3, 5: 2}
    h = f3 << 13 | (rs1p - 8) << 7 | 0b01
    for src, dst in bits.items():
        h |= ((imm >> src) & 1) << dst
    return struct.pack("<H", h)


def rv_cjr(rs1: int, link: bool) -> bytes:
    return struct.pack("<H", 0b100 << 13 | int(link) << 12 | rs1 << 7 | 0b10)


# --- loongarch encoders -----------------------------------------------------------------------


def la_1ri20(op7: int, rd: int, si20: int) -> bytes:
    return struct.pack("<I", op7 << 25 | (si20 & 0xFFFFF) << 5 | rd)


def la_2ri16(op6: int, rd: int, rj: int, offs: int) -> bytes:
    """beq/bne/.../jirl: ``offs`` is in instructions (bytes >> 2)."""
    return struct.pack("<I", op6 << 26 | (offs & 0xFFFF) << 10 | rj << 5 | rd)


def la_1ri21(op6: int, rj: int, offs: int) -> bytes:
    offs &= 0x1FFFFF
    return struct.pack("<I", op6 << 26 | (offs & 0xFFFF) << 10 | rj << 5 | offs >> 16)


def la_i26(op6: int, offs: int) -> bytes:
    offs &= 0x3FFFFFF
    return struct.pack("<I", op6 << 26 | (offs & 0xFFFF) << 10 | offs >> 16)


# --- loongarch P-code oracle ------------------------------------------------------------------


class PcodeOracle:
    """Evaluate one LoongArch instruction's P-code (Ghidra SLEIGH via pypcode) on a dict of GPRs.

    Supports the integer/branch ops the simulated instructions use; writes to ``zero`` are
    discarded (the CPU's r0), as any engine must.
    """

    def __init__(self) -> None:
        import pypcode

        self.pypcode = pypcode
        self.ctx = pypcode.Context("Loongarch:LE:64:lp64d")
        self.names = {(vn.offset, vn.size): n for n, vn in self.ctx.registers.items()}

    def run(self, raw: bytes, pc: int, regs: dict[str, int]) -> tuple[dict[str, int], int]:
        O = self.pypcode.OpCode
        tx = self.ctx.translate(raw, pc, max_instructions=1)
        regs = dict(regs)
        uniq: dict[int, int] = {}

        def rd(vn) -> int:
            space = vn.space.name
            if space == "const":
                return vn.offset & ((1 << 8 * vn.size) - 1)
            if space == "unique":
                return uniq[vn.offset]
            if space == "register":
                name = self.names[(vn.offset, vn.size)]
                return 0 if name == "zero" else regs.get(name, 0)
            raise AssertionError(f"unsupported space {space}")

        def wr(vn, value: int) -> None:
            value &= (1 << 8 * vn.size) - 1
            if vn.space.name == "unique":
                uniq[vn.offset] = value
            else:
                name = self.names[(vn.offset, vn.size)]
                if name != "zero":
                    regs[name] = value

        def sx(v: int, size: int) -> int:
            bits = 8 * size
            return v - (1 << bits) if v >> (bits - 1) else v

        next_pc = pc + 4
        for op in tx.ops:
            c, ins, out = op.opcode, op.inputs, op.output
            if c == O.IMARK:
                continue
            if c == O.COPY:
                wr(out, rd(ins[0]))
            elif c == O.INT_ADD:
                wr(out, rd(ins[0]) + rd(ins[1]))
            elif c == O.INT_SUB:
                wr(out, rd(ins[0]) - rd(ins[1]))
            elif c == O.INT_AND:
                wr(out, rd(ins[0]) & rd(ins[1]))
            elif c == O.INT_OR:
                wr(out, rd(ins[0]) | rd(ins[1]))
            elif c == O.INT_XOR:
                wr(out, rd(ins[0]) ^ rd(ins[1]))
            elif c == O.INT_NEGATE:
                wr(out, ~rd(ins[0]))
            elif c == O.INT_LEFT:
                wr(out, rd(ins[0]) << rd(ins[1]))
            elif c == O.INT_RIGHT:
                wr(out, rd(ins[0]) >> rd(ins[1]))
            elif c == O.INT_SRIGHT:
                wr(out, sx(rd(ins[0]), ins[0].size) >> rd(ins[1]))
            elif c == O.INT_SEXT:
                wr(out, sx(rd(ins[0]), ins[0].size))
            elif c == O.INT_ZEXT:
                wr(out, rd(ins[0]))
            elif c == O.SUBPIECE:
                wr(out, rd(ins[0]) >> (8 * rd(ins[1])))
            elif c == O.INT_EQUAL:
                wr(out, int(rd(ins[0]) == rd(ins[1])))
            elif c == O.INT_NOTEQUAL:
                wr(out, int(rd(ins[0]) != rd(ins[1])))
            elif c == O.INT_LESS:
                wr(out, int(rd(ins[0]) < rd(ins[1])))
            elif c == O.INT_LESSEQUAL:
                wr(out, int(rd(ins[0]) <= rd(ins[1])))
            elif c == O.INT_SLESS:
                wr(out, int(sx(rd(ins[0]), ins[0].size) < sx(rd(ins[1]), ins[1].size)))
            elif c == O.INT_SLESSEQUAL:
                wr(out, int(sx(rd(ins[0]), ins[0].size) <= sx(rd(ins[1]), ins[1].size)))
            elif c == O.BOOL_NEGATE:
                wr(out, int(not rd(ins[0])))
            elif c in (O.BRANCH, O.CALL):
                next_pc = ins[0].offset
                break
            elif c == O.CBRANCH:
                if rd(ins[1]):
                    next_pc = ins[0].offset
                    break
            elif c in (O.BRANCHIND, O.CALLIND, O.RETURN):
                next_pc = rd(ins[0])
                break
            else:
                raise AssertionError(f"P-code op {c} not supported by the oracle")
        return regs, next_pc & MASK64
