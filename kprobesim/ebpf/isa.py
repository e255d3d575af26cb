"""The eBPF instruction set (RFC 9669): encodings, constants and the :class:`Insn` slot type.

A program is a sequence of 8-byte *slots*.  ``lddw`` (the 64-bit immediate load) occupies two
slots: the second one has opcode 0 and carries the upper 32 bits of the immediate in ``imm``.
Program counters, jump offsets and verifier messages all count slots, as Linux does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# --- instruction classes (low 3 bits of the opcode) -----------------------------------------
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)

# --- ALU / JMP: source bit -------------------------------------------------------------------
K = 0x00  # use the 32-bit immediate
X = 0x08  # use the src register

# --- ALU operations (high 4 bits) --------------------------------------------------------------
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70)
NEG, MOD, XOR, MOV, ARSH, END = (0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
ALU_OPS = (ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END)
ALU_NAMES = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", OR: "or", AND: "and", LSH: "lsh",
             RSH: "rsh", NEG: "neg", MOD: "mod", XOR: "xor", MOV: "mov", ARSH: "arsh", END: "end"}
TO_LE, TO_BE = 0x00, 0x08  # END source bit in the ALU class; ALU64|END is bswap

# --- JMP operations ----------------------------------------------------------------------------
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70)
CALL, EXIT, JLT, JLE, JSLT, JSLE = (0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0)
COND_JMP_OPS = (JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE)
JMP_NAMES = {JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset", JNE: "jne", JSGT: "jsgt",
             JSGE: "jsge", JLT: "jlt", JLE: "jle", JSLT: "jslt", JSLE: "jsle"}

# --- load/store: size and mode -----------------------------------------------------------------
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}
SIZE_CODE = {4: W, 2: H, 1: B, 8: DW}
IMM, ABS, IND, MEM, MEMSX, ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

# --- atomic operations (in imm) ----------------------------------------------------------------
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
ATOMIC_OPS = {ADD, OR, AND, XOR, ADD | FETCH, OR | FETCH, AND | FETCH, XOR | FETCH, XCHG, CMPXCHG}

# --- frequently used full opcodes ---------------------------------------------------------------
LDDW = LD | IMM | DW  # 0x18
CALL_OP = JMP | CALL  # 0x85 (src 0: helper, src 1: bpf-to-bpf, src 2: kfunc)
CALLX_OP = JMP | CALL | X  # 0x8d: call the helper whose id is in the dst register
EXIT_OP = JMP | EXIT  # 0x95
JA_OP = JMP | JA  # 0x05
JA32_OP = JMP32 | JA  # 0x06 (gotol: the offset is in imm)

# --- call kinds (src field of CALL) ------------------------------------------------------------
CALL_HELPER, CALL_LOCAL, CALL_KFUNC = 0, 1, 2

# --- lddw pseudo sources: placeholders a loader resolves ----------------------------------------
PSEUDO_IMM = 0  # plain 64-bit constant
PSEUDO_MAP_FD = 1  # imm = map fd -> address of the map
PSEUDO_MAP_VALUE = 2  # imm = map fd, next imm = offset -> address in the map's value
PSEUDO_BTF_ID = 3  # imm = BTF id of a kernel variable
PSEUDO_FUNC = 4  # imm = pc-relative offset of a subprogram
PSEUDO_MAP_IDX = 5  # imm = index into the object's map array
PSEUDO_MAP_IDX_VALUE = 6  # like MAP_VALUE with a map index
PSEUDO_NAMES = {PSEUDO_MAP_FD: "map_fd", PSEUDO_MAP_VALUE: "map_value", PSEUDO_BTF_ID: "btf_id",
                PSEUDO_FUNC: "func", PSEUDO_MAP_IDX: "map_idx",
                PSEUDO_MAP_IDX_VALUE: "map_idx_value"}

# --- machine limits -----------------------------------------------------------------------------
NREGS = 11  # r0..r10; r10 is the read-only frame pointer
FP = 10
STACK_SIZE = 512  # bytes per frame
MAX_CALL_FRAMES = 8  # the main program plus up to 7 nested bpf-to-bpf calls
#: What ``lddw PSEUDO_FUNC`` loads: this tag in the high half, the subprogram's pc in the low half
#: (an address no memory region has, so a load through it faults).
FUNC_TAG = 0xFFFF_FFF0_0000_0000
MAX_INSNS = 1_000_000  # Linux's limit for privileged programs

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1

_SLOT = struct.Struct("<BBhi")


class Insn(NamedTuple):
    """One 8-byte slot: ``opcode``, ``dst``/``src`` registers (4 bits each), signed 16-bit
    ``off`` and signed 32-bit ``imm``."""

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def cls(self) -> int:
        return self.opcode & 7

    def encode(self) -> bytes:
        """The 8 little-endian bytes of the slot."""
        return _SLOT.pack(self.opcode, (self.src << 4) | self.dst, self.off, self.imm)

    def word(self) -> int:
        """The slot as a 64-bit little-endian word (the conformance suite's ``-- raw`` form)."""
        return int.from_bytes(self.encode(), "little")

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> Insn:
        op, regs, off, imm = _SLOT.unpack_from(data, offset)
        return cls(op, regs & 15, regs >> 4, off, imm)

    @classmethod
    def from_word(cls, word: int) -> Insn:
        return cls.decode((word & MASK64).to_bytes(8, "little"))


def lddw(dst: int, value: int, src: int = PSEUDO_IMM, next_imm: int | None = None) -> list[Insn]:
    """The two slots of ``lddw dst, value`` (or of a pseudo form: ``value`` is then the imm)."""
    if src == PSEUDO_IMM:
        value &= MASK64
        lo, hi = to_s32(value & MASK32), to_s32(value >> 32)
    else:
        lo, hi = to_s32(value & MASK32), to_s32((next_imm or 0) & MASK32)
    return [Insn(LDDW, dst, src, 0, lo), Insn(0, 0, 0, 0, hi)]


def decode(data: bytes | bytearray | memoryview) -> list[Insn]:
    """Split raw program bytes into slots (the length must be a multiple of 8)."""
    if len(data) % 8:
        raise ValueError(f"program length {len(data)} is not a multiple of 8")
    return [Insn.decode(data, i) for i in range(0, len(data), 8)]


def encode(insns: Iterable[Insn]) -> bytes:
    """Concatenate the encodings of ``insns``."""
    return b"".join(i.encode() for i in insns)


def from_words(words: Iterable[int]) -> list[Insn]:
    return [Insn.from_word(w) for w in words]


def to_words(insns: Sequence[Insn]) -> list[int]:
    return [i.word() for i in insns]


def to_s32(v: int) -> int:
    v &= MASK32
    return v - (1 << 32) if v & 0x80000000 else v


def to_s64(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def is_lddw(insn: Insn) -> bool:
    return insn.opcode == LDDW


def lddw_value(first: Insn, second: Insn) -> int:
    """The 64-bit constant of a plain ``lddw`` pair."""
    return (first.imm & MASK32) | ((second.imm & MASK32) << 32)
