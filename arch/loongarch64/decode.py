"""loongarch64 kprobe instruction decoder (Linux arch/loongarch/kernel/{kprobes,inst}.c).

Rejected as Linux's ``insns_not_supported``: ll.w/ll.d/sc.w/sc.d, sc.q, llacq.w/d,
screl.w/d, the am* atomics (including the LAMCAS/LAM-BH ones of ISA v1.1), bceqz/bcnez; plus
probes at addresses that are not 4-byte aligned. Also rejected here, where Linux relies on
blacklisting instead: break/dbcl/syscall (they trap out of the slot and a break there would be
taken for a kprobe break), ertn (jumps through ERA: the step never reaches its break), idle
(would wait with interrupts masked), and csrwr/csrxchg of CRMD or PRMD (they fight the
interrupt masking around the step). Simulated as Linux's ``simu_pc``/``simu_branch``:
pcaddi, pcalau12i, pcaddu12i, pcaddu18i, b, bl, jirl, beq/bne/blt/bge/bltu/bgeu,
beqz/bnez. Everything else is stepped out of line.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone

from kprobesim.probes.insn import Decision, DecodeError, Kind, sext

_md: capstone.Cs | None = None

PC_OPS = {0x0C: "pcaddi", 0x0D: "pcalau12i", 0x0E: "pcaddu12i", 0x0F: "pcaddu18i"}  # [31:25]
BRANCH_OPS = {  # bits [31:26]
    0x10: "beqz", 0x11: "bnez", 0x13: "jirl", 0x14: "b", 0x15: "bl",
    0x16: "beq", 0x17: "bne", 0x18: "blt", 0x19: "bge", 0x1A: "bltu", 0x1B: "bgeu",
}  # fmt: skip
SIMULATED = frozenset([*PC_OPS.values(), *BRANCH_OPS.values()])
CSR_CRMD, CSR_PRMD = 0x0, 0x1


@dataclass(frozen=True)
class LaInsn:
    """Decoded fields of a simulated instruction (``imm`` is the byte offset or value)."""

    op: str = ""
    rd: int = 0
    rj: int = 0
    imm: int = 0


def _disasm(raw: bytes, addr: int) -> str | None:
    global _md
    if _md is None:
        _md = capstone.Cs(capstone.CS_ARCH_LOONGARCH, capstone.CS_MODE_LOONGARCH64)
    try:
        for insn in _md.disasm(raw, addr & 0xFFFF_FFFF_FFFF_FFFF, 1):
            return f"{insn.mnemonic} {insn.op_str}".strip()
    except capstone.CsError:
        return None
    return None


def insn_length(code: bytes, addr: int) -> int:
    """Every LoongArch instruction is 4 bytes."""
    if len(code) < 4:
        raise DecodeError(f"{addr:#x}: need 4 bytes, got {len(code)}")
    return 4


def reject_reason(w: int, mnemonic: str) -> str:
    """Why the word ``w`` cannot be probed, or "" if it can."""
    if (w >> 24) in (0x20, 0x21, 0x22, 0x23):
        return f"{mnemonic}: ll/sc instruction (the step would break the reservation pair)"
    op17 = w >> 15
    if op17 == 0x70AE:
        return f"{mnemonic}: sc.q instruction"
    if 0x70B0 <= op17 <= 0x70E3:
        return f"{mnemonic}: am* atomic memory access instruction"
    if 0xE15E0 <= (w >> 10) <= 0xE15E3:
        return f"{mnemonic}: llacq/screl instruction"
    if (w >> 26) == 0x12:
        return f"{mnemonic}: bceqz/bcnez (condition-flag branch) instruction"
    if op17 in (0x54, 0x55, 0x56):
        return f"{mnemonic}: trapping instruction (break/dbcl/syscall) cannot run in a slot"
    if w == 0x06483800:
        return f"{mnemonic}: returns through ERA, the step would never end"
    if op17 == 0xC91:
        return f"{mnemonic}: would wait with interrupts masked during the step"
    if (w >> 24) == 0x04 and (w >> 5) & 31 != 0 and (w >> 10) & 0x3FFF in (CSR_CRMD, CSR_PRMD):
        return f"{mnemonic}: writes CRMD/PRMD, which are masked around the step"
    return ""


def _classify(w: int) -> LaInsn | None:
    rd, rj = w & 31, (w >> 5) & 31
    op7 = w >> 25
    if op7 in PC_OPS:
        si20 = (w >> 5) & 0xFFFFF
        shift = {"pcaddi": 2, "pcalau12i": 12, "pcaddu12i": 12, "pcaddu18i": 18}[PC_OPS[op7]]
        return LaInsn(PC_OPS[op7], rd=rd, imm=sext(si20, 20) << shift)
    op6 = w >> 26
    if op6 not in BRANCH_OPS:
        return None
    name = BRANCH_OPS[op6]
    lo16 = (w >> 10) & 0xFFFF
    if name in ("b", "bl"):
        return LaInsn(name, rd=1 if name == "bl" else 0, imm=sext((w & 0x3FF) << 16 | lo16, 26) << 2)
    if name in ("beqz", "bnez"):
        return LaInsn(name, rj=rj, imm=sext((w & 31) << 16 | lo16, 21) << 2)
    return LaInsn(name, rd=rd, rj=rj, imm=sext(lo16, 16) << 2)


def decode(code: bytes, addr: int) -> Decision:
    """Classify the instruction at ``addr`` (``code`` holds at least its 4 bytes)."""
    code = bytes(code)
    insn_length(code, addr)
    raw = code[:4]
    w = int.from_bytes(raw, "little")
    text = _disasm(raw, addr)
    if addr & 3:
        return Decision(
            Kind.REJECT,
            addr,
            4,
            raw,
            text or f".word {w:#010x}",
            f"misaligned: {addr:#x} is not 4-byte aligned",
        )
    if text is None:
        raise DecodeError(f"{addr:#x}: {w:#010x} is not a valid LoongArch instruction")
    reason = reject_reason(w, text.split()[0])
    if reason:
        return Decision(Kind.REJECT, addr, 4, raw, text, reason)
    info = _classify(w)
    if info is not None:
        return Decision(Kind.SIMULATE, addr, 4, raw, text, "", info)
    return Decision(Kind.OOL, addr, 4, raw, text)


def boundaries(code: bytes, start: int) -> list[int]:
    """Instruction start addresses: every 4 bytes from ``start``."""
    return [start + i for i in range(0, len(code) - 3, 4)]
