"""x86_64 kprobe instruction decoder (Linux arch/x86/kernel/kprobes rules).

Rejected: int3, int n, into, int1, ud0/ud1/ud2, iret, far call/jmp/ret, memory-indirect
call/jmp, mov ss (and pop ss), syscall/sysret/sysenter/sysexit (the step would never come
back to the slot), xbegin (IP-relative abort target), hlt (it would halt with interrupts
masked), operand-size (0x66) prefixed near branches (Intel ignores the prefix, AMD truncates
the IP: not portable), EIP-relative (0x67 + RIP-relative) operands. Length, prefixes, REX,
ModRM and the RIP-relative displacement come from capstone's details.

Two step variants share this decoder:
- ``"tf"`` (DESIGN.md §7, old Linux): every accepted instruction runs out of line under TF; the
  resume fix-ups in step.after_step() repair IP, pushed return addresses and pushed flags.
- ``"int3"`` (current Linux): the slot ends with an int3, so instructions that leave the slot
  (jmp/jcc/loop/jrcxz/call/ret/indirect call and jmp through a register) and the interrupt
  flag users (pushf/popf/cli/sti) are SIMULATED instead, like Linux's ``emulate_op``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import capstone
from capstone import x86_const as cx

from kprobesim.probes.insn import Decision, DecodeError, Kind

_md: capstone.Cs | None = None

LEGACY_PREFIXES = frozenset({0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67})
STRING_OPS = frozenset({0x6C, 0x6D, 0x6E, 0x6F, 0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD,
                        0xAE, 0xAF})  # fmt: skip
GPR64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")  # fmt: skip
VARIANTS = ("tf", "int3")

# Resume fix-up kinds of the TF variant (step.after_step).
FIX_ADD = "add"  # rip += orig - slot
FIX_KEEP = "keep"  # ret / jmp *reg: the IP is already right
FIX_CALL = "call"  # call rel32: rip += orig - slot and fix the pushed return address
FIX_CALL_INDIRECT = "call_indirect"  # call *reg: keep the IP, fix the pushed return address
FIX_PUSHF = "pushf"  # rip += orig - slot and restore TF/IF in the pushed flags


@dataclass(frozen=True)
class X86Insn:
    """Arch-private decoded fields of an x86_64 instruction."""

    prefixes: bytes
    rex: int
    opcode: bytes  # legacy opcode bytes after prefixes/REX; b"" for VEX/EVEX/XOP encodings
    modrm: int | None  # the byte after the opcode: the ModRM for opcodes that have one
    fixup: str  # TF variant resume fix-up kind (FIX_*)
    sim: str = ""  # int3 variant simulated op: jmp jcc call call_reg jmp_reg ret loop loope
    #                loopne jrcxz pushf popf cli sti ("" when stepped)
    cond: int = 0  # jcc condition code (low nibble of the opcode)
    rel: int = 0  # branch displacement (relative to the next instruction)
    reg: str = ""  # register of call/jmp *reg
    imm: int = 0  # ret imm16
    opsize: int = 8  # operand size of push/pop-like operations (pushf/popf: 2 with 0x66)
    addr32: bool = False  # 0x67 prefix: loop/jrcxz count in ecx
    if_modifier: bool = False  # cli/sti/popf/iret: leave IF as the instruction set it
    rep_string: bool = False  # rep-prefixed string op: TF traps after every iteration
    rip_disp_offset: int | None = None  # offset of the RIP-relative disp32 in the raw bytes
    rip_disp: int = 0
    variant: str = "tf"  # the step variant this decision was made for

    @property
    def rip_target(self) -> int | None:
        """Offset of the RIP-relative operand from the next instruction, if any."""
        return None if self.rip_disp_offset is None else self.rip_disp


def _cs() -> capstone.Cs:
    global _md
    if _md is None:
        _md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _md.detail = True
    return _md


def _disasm(code: bytes, addr: int) -> capstone.CsInsn:
    try:
        for insn in _cs().disasm(code[:15], addr & 0xFFFF_FFFF_FFFF_FFFF, 1):
            return insn
    except capstone.CsError as e:
        raise DecodeError(f"{addr:#x}: capstone: {e}") from None
    raise DecodeError(f"{addr:#x}: {bytes(code[:15]).hex()} is not a valid x86_64 instruction")


def insn_length(code: bytes, addr: int) -> int:
    """Length in bytes of the instruction at ``addr``."""
    return _disasm(bytes(code), addr).size


def _split(raw: bytes) -> tuple[bytes, int, bytes, int | None]:
    """Legacy prefixes, REX, opcode bytes and ModRM (None if absent or not needed)."""
    i = 0
    while i < len(raw) and raw[i] in LEGACY_PREFIXES:
        i += 1
    prefixes = raw[:i]
    rex = 0
    if i < len(raw) and 0x40 <= raw[i] <= 0x4F:
        rex = raw[i]
        i += 1
    if i >= len(raw):
        return prefixes, rex, b"", None
    b = raw[i]
    if b in (0xC4, 0xC5, 0x62) or (b == 0x8F and i + 1 < len(raw) and raw[i + 1] & 0x38):
        return prefixes, rex, b"", None  # VEX / EVEX / XOP
    if b == 0x0F and i + 1 < len(raw):
        n = 3 if raw[i + 1] in (0x38, 0x3A) else 2
        opcode = raw[i : i + n]
    else:
        opcode = raw[i : i + 1]
    j = i + len(opcode)
    modrm = raw[j] if j < len(raw) else None
    return prefixes, rex, opcode, modrm


def _rip_relative(insn: capstone.CsInsn, raw: bytes) -> tuple[int | None, int]:
    try:
        ops = insn.operands
    except capstone.CsError:
        ops = []
    ip_regs = (cx.X86_REG_RIP, cx.X86_REG_EIP)
    if not any(op.type == cx.X86_OP_MEM and op.mem.base in ip_regs for op in ops):
        return None, 0
    # RIP-relative is always ModRM mod=00 rm=101 followed by a disp32 (capstone's disp_size
    # is unreliable with a 0x66 prefix, its disp_offset is checked against the ModRM here).
    off = insn.disp_offset
    if off <= 0 or off + 4 > len(raw) or raw[off - 1] & 0xC7 != 0x05:
        raise DecodeError(f"{insn.address:#x}: RIP-relative operand without a disp32")
    return off, int.from_bytes(raw[off : off + 4], "little", signed=True)


_REJECT_1 = {
    0xCC: "int3: breakpoint instruction",
    0xCD: "int: software interrupt",
    0xCE: "into: software interrupt",
    0xF1: "int1: debug trap instruction",
    0xCF: "iret: interrupt return",
    0xCA: "lret: far return",
    0xCB: "lret: far return",
    0x9A: "lcall: far call",
    0xEA: "ljmp: far jump",
    0x17: "pop ss: masks the single-step trap",
    0xF4: "hlt: would halt with interrupts masked during the step",
}
_REJECT_2 = {
    0x0B: "ud2: undefined instruction",
    0xB9: "ud1: undefined instruction",
    0xFF: "ud0: undefined instruction",
    0x05: "syscall: leaves the slot for the system-call entry",
    0x07: "sysret: returns to user mode",
    0x34: "sysenter: leaves the slot for the system-call entry",
    0x35: "sysexit: returns to user mode",
}
_BRANCH_1 = frozenset({0xE8, 0xE9, 0xEB, 0xC2, 0xC3, 0xE0, 0xE1, 0xE2, 0xE3, *range(0x70, 0x80)})


def _classify(raw: bytes, insn: capstone.CsInsn, variant: str) -> tuple[Kind, str, X86Insn]:
    prefixes, rex, opcode, modrm = _split(raw)
    off, disp = _rip_relative(insn, raw)
    osz16 = 0x66 in prefixes and not rex & 8
    addr32 = 0x67 in prefixes
    base = X86Insn(
        prefixes, rex, opcode, modrm, FIX_ADD, addr32=addr32, rip_disp_offset=off, rip_disp=disp,
        variant=variant,
    )  # fmt: skip

    def mk(**kw: object) -> X86Insn:
        return replace(base, **kw)

    def reject(why: str) -> tuple[Kind, str, X86Insn]:
        return Kind.REJECT, why, base

    if off is not None and addr32:
        return reject("EIP-relative operand (0x67 prefix with RIP-relative addressing)")
    if not opcode:
        return Kind.OOL, "", base
    op = opcode[0]
    two = opcode[1] if op == 0x0F and len(opcode) >= 2 else None
    if two is None and op in _REJECT_1:
        return reject(_REJECT_1[op])
    if two is not None and len(opcode) == 2 and two in _REJECT_2:
        return reject(_REJECT_2[two])
    reg = (modrm >> 3) & 7 if modrm is not None else 0
    mod = modrm >> 6 if modrm is not None else 0
    if op == 0x8E and two is None and reg == 2:
        return reject("mov ss: masks the single-step trap")
    if op == 0xC7 and two is None and modrm == 0xF8:
        return reject("xbegin: its abort target is IP-relative and is not re-based")

    near_branch = (two is None and op in _BRANCH_1) or (two is not None and 0x80 <= two <= 0x8F)
    if op == 0xFF and two is None:
        if reg in (3, 5):
            return reject("far indirect " + ("call" if reg == 3 else "jmp"))
        if reg in (2, 4):
            if mod != 3:
                return reject(("call" if reg == 2 else "jmp") + ": memory-indirect")
            near_branch = True
    if near_branch and 0x66 in prefixes:
        return reject("operand-size prefix on a near branch (vendor-specific IP truncation)")
    rm = ((rex & 1) << 3 | (modrm & 7)) if modrm is not None else 0
    imm = (
        int.from_bytes(raw[insn.imm_offset : insn.imm_offset + insn.imm_size], "little", signed=True)
        if insn.imm_size
        else 0
    )
    int3 = variant == "int3"
    sim = Kind.SIMULATE if int3 else Kind.OOL

    if two is None:
        if op == 0xE8:
            return sim, "", mk(fixup=FIX_CALL, sim="call" if int3 else "", rel=imm)
        if op in (0xE9, 0xEB):
            return sim, "", mk(sim="jmp" if int3 else "", rel=imm)
        if 0x70 <= op <= 0x7F:
            return sim, "", mk(sim="jcc" if int3 else "", cond=op & 15, rel=imm)
        if op in (0xE0, 0xE1, 0xE2, 0xE3):
            name = ("loopne", "loope", "loop", "jrcxz")[op - 0xE0]
            return sim, "", mk(sim=name if int3 else "", rel=imm)
        if op in (0xC2, 0xC3):
            n = int.from_bytes(raw[-2:], "little") if op == 0xC2 else 0
            return sim, "", mk(fixup=FIX_KEEP, sim="ret" if int3 else "", imm=n)
        if op == 0xFF and reg == 2:
            return sim, "", mk(fixup=FIX_CALL_INDIRECT, sim="call_reg" if int3 else "", reg=GPR64[rm])
        if op == 0xFF and reg == 4:
            return sim, "", mk(fixup=FIX_KEEP, sim="jmp_reg" if int3 else "", reg=GPR64[rm])
        if op == 0x9C:
            return sim, "", mk(fixup=FIX_PUSHF, sim="pushf" if int3 else "", opsize=2 if osz16 else 8)
        if op in (0x9D, 0xFA, 0xFB):
            name = {0x9D: "popf", 0xFA: "cli", 0xFB: "sti"}[op]
            return sim, "", mk(sim=name if int3 else "", if_modifier=True, opsize=2 if osz16 else 8)
        if op in STRING_OPS and (0xF2 in prefixes or 0xF3 in prefixes):
            return Kind.OOL, "", mk(rep_string=True)
    elif len(opcode) == 2 and 0x80 <= two <= 0x8F:
        return sim, "", mk(sim="jcc" if int3 else "", cond=two & 15, rel=imm)
    return Kind.OOL, "", base


def decode(code: bytes, addr: int, variant: str = "tf") -> Decision:
    """Classify the instruction at ``addr`` for the ``"tf"`` or ``"int3"`` step variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown x86_64 step variant {variant!r}")
    code = bytes(code)
    insn = _disasm(code, addr)
    raw = code[: insn.size]
    text = f"{insn.mnemonic} {insn.op_str}".strip()
    try:
        kind, reason, info = _classify(raw, insn, variant)
    except (IndexError, ValueError, capstone.CsError) as e:
        raise DecodeError(f"{addr:#x}: cannot decode {raw.hex()}: {e}") from None
    return Decision(kind, addr, insn.size, raw, text, reason, info)


def boundaries(code: bytes, start: int) -> list[int]:
    """Instruction start addresses of a linear sweep from ``start`` (stops at invalid bytes)."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return [i.address for i in md.disasm(bytes(code), start)]


_RELATIVE = frozenset({"jmp", "jcc", "call", "loop", "loope", "loopne", "jrcxz"})


def for_far_slot(d: Decision, code: bytes) -> Decision:
    """The decision for a slot far from the probed code (a uprobe's XOL page at the top of the
    user address space): relative branches are simulated whatever the variant, as Linux's
    uprobes emulate them (``branch_emulate_op``): stepped there, their target would be re-based
    out of reach (or out of the canonical half)."""
    if d.kind is not Kind.OOL:
        return d
    other = decode(code, d.addr, "int3")
    return other if other.kind is Kind.SIMULATE and other.info.sim in _RELATIVE else d


_SCRATCH = (6, 7, 3)  # rsi, rdi, rbx: Linux's uprobes take the first the ModRM reg does not name


def scratch_form(d: Decision) -> tuple[Decision, str] | None:
    """A RIP-relative instruction rewritten to address through a scratch register, for a slot
    too far from its target (Linux's uprobes ``riprel_analyze``): ModRM mod=00 rm=101
    (RIP+disp32) becomes mod=10 rm=scratch (scratch+disp32, REX.B cleared), same length. The
    step sets the scratch register to the original next instruction's address and puts it back
    afterwards. None for an instruction that is not RIP-relative or not legacy-encoded."""
    info = d.info
    if d.kind is not Kind.OOL or not isinstance(info, X86Insn) or info.rip_disp_offset is None:
        return None
    if not info.opcode or info.modrm is None or info.modrm & 0xC7 != 0x05:
        return None
    at = len(info.prefixes) + (1 if info.rex else 0) + len(info.opcode)
    raw = bytearray(d.raw)
    if raw[at] != info.modrm:
        return None
    reg = ((info.rex >> 2) & 1) << 3 | (info.modrm >> 3) & 7
    scratch = next(r for r in _SCRATCH if r != reg)
    modrm = 0x80 | (info.modrm & 0x38) | scratch
    raw[at] = modrm
    rex = info.rex & ~1
    if info.rex:
        raw[len(info.prefixes)] = rex
    new = replace(info, rex=rex, modrm=modrm, rip_disp_offset=None, rip_disp=0)
    return replace(d, raw=bytes(raw), info=new), GPR64[scratch]
