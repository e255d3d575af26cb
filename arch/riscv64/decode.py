"""riscv64 (RV64GC) kprobe instruction decoder, following Linux arch/riscv/kernel/probes.

Rejected: the whole SYSTEM major opcode (ecall, ebreak, csr*, mret/sret, wfi, sfence.vma,
the 32-bit unimp), the whole MISC-MEM major opcode (fence, fence.i, fence.tso, cbo.*),
c.ebreak, c.unimp (0x0000, which would only trap from the slot), and probes at odd
addresses. Simulated: jal, jalr, auipc, the six conditional branches, c.j, c.jr, c.jalr,
c.beqz, c.bnez (c.jal is RV32-only: its encoding is c.addiw on RV64). Everything else,
including loads/stores, lr/sc and AMOs, is stepped out of line, as Linux does: an lr stepped
alone just sets the reservation; an sc stepped out of line either succeeds (our break is
handled without a guest trap, so the reservation survives) or fails, which its retry loop
already handles.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone

from kprobesim.probes.insn import Decision, DecodeError, Kind, sext

_CS_MODE = (
    capstone.CS_MODE_RISCV64
    | capstone.CS_MODE_RISCV_C
    | capstone.CS_MODE_RISCV_A
    | capstone.CS_MODE_RISCV_FD
    | capstone.CS_MODE_RISCV_ZBA
    | capstone.CS_MODE_RISCV_ZBB
    | capstone.CS_MODE_RISCV_ZBS
)
_md: capstone.Cs | None = None

OP_SYSTEM = 0x73
OP_MISC_MEM = 0x0F
OP_JAL = 0x6F
OP_JALR = 0x67
OP_AUIPC = 0x17
OP_BRANCH = 0x63
C_EBREAK = 0x9002

BRANCH_OPS = {0: "beq", 1: "bne", 4: "blt", 5: "bge", 6: "bltu", 7: "bgeu"}
SIMULATED = frozenset(
    ["jal", "jalr", "auipc", *BRANCH_OPS.values(), "c.j", "c.jr", "c.jalr", "c.beqz", "c.bnez"]
)


@dataclass(frozen=True)
class RvInsn:
    """Decoded fields of a simulated instruction (``op`` names it; "" for out-of-line)."""

    op: str = ""
    rd: int = 0
    rs1: int = 0
    rs2: int = 0
    imm: int = 0


def _disasm(raw: bytes, addr: int) -> str | None:
    global _md
    if _md is None:
        _md = capstone.Cs(capstone.CS_ARCH_RISCV, _CS_MODE)
    try:
        for insn in _md.disasm(raw, addr & 0xFFFF_FFFF_FFFF_FFFF, 1):
            if insn.size != len(raw):
                return None
            return f"{insn.mnemonic} {insn.op_str}".strip()
    except capstone.CsError:
        return None
    return None


def insn_length(code: bytes, addr: int) -> int:
    """Length of the instruction at ``addr`` from its low bits (2 or 4)."""
    if len(code) < 2:
        raise DecodeError(f"{addr:#x}: need at least 2 bytes, got {len(code)}")
    half = code[0] | code[1] << 8
    if half & 3 != 3:
        return 2
    if (half >> 2) & 7 != 7:
        return 4
    raise DecodeError(f"{addr:#x}: instruction encodings longer than 32 bits are not supported")


def _j_imm(w: int) -> int:
    v = ((w >> 31) & 1) << 20 | ((w >> 21) & 0x3FF) << 1 | ((w >> 20) & 1) << 11
    return sext(v | ((w >> 12) & 0xFF) << 12, 21)


def _b_imm(w: int) -> int:
    v = ((w >> 31) & 1) << 12 | ((w >> 25) & 0x3F) << 5 | ((w >> 8) & 0xF) << 1
    return sext(v | ((w >> 7) & 1) << 11, 13)


def _cj_imm(h: int) -> int:
    v = ((h >> 12) & 1) << 11 | ((h >> 11) & 1) << 4 | ((h >> 9) & 3) << 8
    v |= ((h >> 8) & 1) << 10 | ((h >> 7) & 1) << 6 | ((h >> 6) & 1) << 7
    v |= ((h >> 3) & 7) << 1 | ((h >> 2) & 1) << 5
    return sext(v, 12)


def _cb_imm(h: int) -> int:
    v = ((h >> 12) & 1) << 8 | ((h >> 10) & 3) << 3 | ((h >> 5) & 3) << 6
    v |= ((h >> 3) & 3) << 1 | ((h >> 2) & 1) << 5
    return sext(v, 9)


def _classify32(w: int, text: str) -> tuple[Kind, str, RvInsn | None]:
    op = w & 0x7F
    rd, f3, rs1, rs2 = (w >> 7) & 31, (w >> 12) & 7, (w >> 15) & 31, (w >> 20) & 31
    mnem = text.split()[0]
    if op == OP_SYSTEM:
        return Kind.REJECT, f"{mnem}: SYSTEM instruction (trap, CSR or privilege change)", None
    if op == OP_MISC_MEM:
        return Kind.REJECT, f"{mnem}: fence/cache-management instruction (MISC-MEM)", None
    if op == OP_JAL:
        return Kind.SIMULATE, "", RvInsn("jal", rd=rd, imm=_j_imm(w))
    if op == OP_JALR and f3 == 0:
        return Kind.SIMULATE, "", RvInsn("jalr", rd=rd, rs1=rs1, imm=sext(w >> 20, 12))
    if op == OP_AUIPC:
        return Kind.SIMULATE, "", RvInsn("auipc", rd=rd, imm=sext(w & 0xFFFFF000, 32))
    if op == OP_BRANCH and f3 in BRANCH_OPS:
        return Kind.SIMULATE, "", RvInsn(BRANCH_OPS[f3], rs1=rs1, rs2=rs2, imm=_b_imm(w))
    return Kind.OOL, "", None


def _classify16(h: int) -> tuple[Kind, str, RvInsn | None]:
    quadrant, f3 = h & 3, (h >> 13) & 7
    if h == C_EBREAK:
        return Kind.REJECT, "c.ebreak: breakpoint instruction", None
    if h == 0:
        return Kind.REJECT, "c.unimp: defined illegal instruction", None
    if quadrant == 1:
        if f3 == 5:
            return Kind.SIMULATE, "", RvInsn("c.j", imm=_cj_imm(h))
        if f3 in (6, 7):
            op = "c.beqz" if f3 == 6 else "c.bnez"
            return Kind.SIMULATE, "", RvInsn(op, rs1=8 + ((h >> 7) & 7), imm=_cb_imm(h))
    if quadrant == 2 and f3 == 4:
        rs1, rs2 = (h >> 7) & 31, (h >> 2) & 31
        if rs2 == 0 and rs1 != 0:
            if (h >> 12) & 1:
                return Kind.SIMULATE, "", RvInsn("c.jalr", rd=1, rs1=rs1)
            return Kind.SIMULATE, "", RvInsn("c.jr", rs1=rs1)
    return Kind.OOL, "", None


def decode(code: bytes, addr: int) -> Decision:
    """Classify the instruction at ``addr`` (``code`` holds at least its bytes)."""
    code = bytes(code)
    n = insn_length(code, addr)
    if len(code) < n:
        raise DecodeError(f"{addr:#x}: truncated {n}-byte instruction ({len(code)} bytes given)")
    raw = code[:n]
    w = int.from_bytes(raw, "little")
    text = _disasm(raw, addr)
    if addr & 1:
        return Decision(
            Kind.REJECT, addr, n, raw, text or f".insn {w:#x}", f"misaligned: {addr:#x} is not 2-byte aligned"
        )
    if text is None:
        raise DecodeError(f"{addr:#x}: {w:#0{2 * n + 2}x} is not a valid RV64GC instruction")
    kind, reason, info = _classify32(w, text) if n == 4 else _classify16(w)
    return Decision(kind, addr, n, raw, text, reason, info)


def boundaries(code: bytes, start: int) -> list[int]:
    """Instruction start addresses walking ``code`` from ``start`` (Linux's length rule)."""
    out: list[int] = []
    i = 0
    while i + 2 <= len(code):
        try:
            n = insn_length(code[i : i + 2], start + i)
        except DecodeError:
            break
        if i + n > len(code):
            break
        out.append(start + i)
        i += n
    return out
