"""A minimal RV64 encoder for the engine tests."""

from __future__ import annotations

import struct

OP = {  # (funct7, funct3) for opcode 0x33 / 0x3B
    "add": (0, 0), "sub": (0x20, 0), "sll": (0, 1), "slt": (0, 2), "sltu": (0, 3),
    "xor": (0, 4), "srl": (0, 5), "sra": (0x20, 5), "or": (0, 6), "and": (0, 7),
    "mul": (1, 0), "mulh": (1, 1), "mulhsu": (1, 2), "mulhu": (1, 3), "div": (1, 4),
    "divu": (1, 5), "rem": (1, 6), "remu": (1, 7),
}
OPW = {"addw": (0, 0), "subw": (0x20, 0), "sllw": (0, 1), "srlw": (0, 5), "sraw": (0x20, 5),
       "mulw": (1, 0), "divw": (1, 4), "divuw": (1, 5), "remw": (1, 6), "remuw": (1, 7)}
IMM = {"addi": 0, "slti": 2, "sltiu": 3, "xori": 4, "ori": 6, "andi": 7}
LOAD = {"lb": 0, "lh": 1, "lw": 2, "ld": 3, "lbu": 4, "lhu": 5, "lwu": 6}
STORE = {"sb": 0, "sh": 1, "sw": 2, "sd": 3}
BRANCH = {"beq": 0, "bne": 1, "blt": 4, "bge": 5, "bltu": 6, "bgeu": 7}
AMO = {"amoswap": 1, "amoadd": 0, "amoxor": 4, "amoand": 0xC, "amoor": 8, "amomin": 0x10,
       "amomax": 0x14, "amominu": 0x18, "amomaxu": 0x1C}

ECALL = 0x00000073
EBREAK = 0x00100073
MRET = 0x30200073
SRET = 0x10200073
WFI = 0x10500073
NOP = 0x00000013
C_EBREAK = 0x9002
C_NOP = 0x0001


def r(name: str, rd: int, rs1: int, rs2: int) -> int:
    if name in OP:
        f7, f3 = OP[name]
        opc = 0x33
    else:
        f7, f3 = OPW[name]
        opc = 0x3B
    return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | opc


def i(name: str, rd: int, rs1: int, imm: int) -> int:
    assert -2048 <= imm < 2048
    return (imm & 0xFFF) << 20 | rs1 << 15 | IMM[name] << 12 | rd << 7 | 0x13


def addiw(rd: int, rs1: int, imm: int) -> int:
    return (imm & 0xFFF) << 20 | rs1 << 15 | rd << 7 | 0x1B


def shift(name: str, rd: int, rs1: int, sh: int) -> int:
    word = name.endswith("w")
    f3 = 1 if name.startswith("sll") else 5
    hi = 0x400 if name.startswith("sra") else 0
    opc = 0x1B if word else 0x13
    return (hi << 20) | (sh << 20) | rs1 << 15 | f3 << 12 | rd << 7 | opc


def lui(rd: int, imm20: int) -> int:
    return (imm20 & 0xFFFFF) << 12 | rd << 7 | 0x37


def auipc(rd: int, imm20: int) -> int:
    return (imm20 & 0xFFFFF) << 12 | rd << 7 | 0x17


def load(name: str, rd: int, rs1: int, imm: int) -> int:
    return (imm & 0xFFF) << 20 | rs1 << 15 | LOAD[name] << 12 | rd << 7 | 0x03


def store(name: str, rs2: int, rs1: int, imm: int) -> int:
    return ((imm >> 5) & 0x7F) << 25 | rs2 << 20 | rs1 << 15 | STORE[name] << 12 | \
        (imm & 0x1F) << 7 | 0x23


def branch(name: str, rs1: int, rs2: int, off: int) -> int:
    assert off % 2 == 0
    return (((off >> 12) & 1) << 31 | ((off >> 5) & 0x3F) << 25 | rs2 << 20 | rs1 << 15
            | BRANCH[name] << 12 | ((off >> 1) & 0xF) << 8 | ((off >> 11) & 1) << 7 | 0x63)


def jal(rd: int, off: int) -> int:
    return (((off >> 20) & 1) << 31 | ((off >> 1) & 0x3FF) << 21 | ((off >> 11) & 1) << 20
            | ((off >> 12) & 0xFF) << 12 | rd << 7 | 0x6F)


def jalr(rd: int, rs1: int, imm: int) -> int:
    return (imm & 0xFFF) << 20 | rs1 << 15 | rd << 7 | 0x67


def amo(name: str, size: int, rd: int, rs1: int, rs2: int) -> int:
    f3 = 2 if size == 4 else 3
    return AMO[name] << 27 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | 0x2F


def lr(size: int, rd: int, rs1: int) -> int:
    return 0x2 << 27 | rs1 << 15 | (2 if size == 4 else 3) << 12 | rd << 7 | 0x2F


def sc(size: int, rd: int, rs1: int, rs2: int) -> int:
    return 0x3 << 27 | rs2 << 20 | rs1 << 15 | (2 if size == 4 else 3) << 12 | rd << 7 | 0x2F


def csr(op: str, rd: int, c: int, rs1: int) -> int:
    f3 = {"csrrw": 1, "csrrs": 2, "csrrc": 3, "csrrwi": 5, "csrrsi": 6, "csrrci": 7}[op]
    return c << 20 | rs1 << 15 | f3 << 12 | rd << 7 | 0x73


def li32(rd: int, value: int) -> list[int]:
    """lui + addiw for a 32-bit signed value."""
    lo = ((value & 0xFFF) ^ 0x800) - 0x800
    hi = ((value - lo) >> 12) & 0xFFFFF
    return [lui(rd, hi), addiw(rd, rd, lo)]


def code(items: list[int | bytes]) -> bytes:
    out = b""
    for it in items:
        out += it if isinstance(it, bytes) else struct.pack("<I", it & 0xFFFFFFFF)
    return out


def c16(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)
