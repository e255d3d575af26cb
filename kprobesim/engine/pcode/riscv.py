"""RISC-V RV64GC on the P-code engine, reproducing Unicorn 2.1.4's reporting conventions.

This engine is an oracle: the same guest on Unicorn and here must be indistinguishable to the
machine. Measured Unicorn 2.1.4 behaviour it follows:

- ``ecall`` reaches UC_HOOK_INTR with intno 8 at every privilege level, the PC already past it;
  without an INTR hook ``emu_start`` fails with UC_ERR_EXCEPTION (PC past the ecall).
- ``ebreak``/``c.ebreak`` take the UC_HOOK_INSN_INVALID path with the PC at the break; unhandled:
  UC_ERR_INSN_INVALID. A hook returning True ends ``emu_start`` with UC_ERR_EXCEPTION at the PC the
  hook left (Unicorn re-executes the break when the PC is unchanged; we stop instead).
- Illegal instructions (undecodable, privilege violations, FP with mstatus.FS = 0, the ``time``
  CSR) report intno 2 with the PC advanced by 4 even for 2-byte ones; no hook: UC_ERR_EXCEPTION.
- No exception enters the trap vector (no mepc/mcause writes). ``mret``/``sret`` execute (M/S
  only), ``wfi`` ends ``emu_start`` with the PC after it (illegal in U), CSR instructions execute
  with QEMU's write masks, ``cycle``/``instret`` count virtual time, misaligned accesses are allowed.
- Interrupts that software can make pending (mip SSIP/STIP/SEIP, host-writable mask 0x666) are
  taken architecturally at block boundaries (mtvec/stvec, mcause/scause with the interrupt bit).
- Host CSR access above the current privilege reads 0 and ignores writes (Unicorn returns
  garbage); raise UC_RISCV_REG_PRIV to 3 around host CSR access, as with Unicorn.
No MMU: satp is stored but addresses are physical.
"""

from __future__ import annotations

from typing import Any

import unicorn.riscv_const as RC
from unicorn import UcError
from unicorn.unicorn_const import UC_ERR_ARG, UC_ERR_EXCEPTION, UC_ERR_INSN_INVALID

from .arch import ArchModel
from .codegen import T_ARCH, T_EXC, T_IDLE, T_INVALID, BlockEmitter, Insn, OpCode, POp, Trap, mask

M64 = (1 << 64) - 1
PC_OFF = 0x1000
X0 = 0x2000
F0 = 0x3000
MSTATUS, MISA, MEDELEG, MIDELEG, MIE, MTVEC = 0x300, 0x301, 0x302, 0x303, 0x304, 0x305
MEPC, MCAUSE, MTVAL, MIP = 0x341, 0x342, 0x343, 0x344
SSTATUS, SIE, STVEC, SEPC, SCAUSE, STVAL, SIP, SATP = 0x100, 0x104, 0x105, 0x141, 0x142, \
    0x143, 0x144, 0x180
FFLAGS, FRM, FCSR = 1, 2, 3
MSTATUS_MASK = 0x000000C0601E79AA
SSTATUS_MASK = 0x00000000000C6122  # SIE SPIE SPP FS XS SUM MXR
MIP_MASK = 0x666
MIE_MASK = 0xEEE
S_INT_MASK = 0x222  # SSIP STIP SEIP
MISA_VAL = 0x800000000014112D

_CSR_IDS = {
    "USTATUS": 0x000, "UIE": 0x004, "UTVEC": 0x005, "USCRATCH": 0x040, "UEPC": 0x041,
    "UCAUSE": 0x042, "UTVAL": 0x043, "UIP": 0x044, "FFLAGS": 1, "FRM": 2, "FCSR": 3,
    "CYCLE": 0xC00, "TIME": 0xC01, "INSTRET": 0xC02, "CYCLEH": 0xC80, "TIMEH": 0xC81,
    "INSTRETH": 0xC82, "MCYCLE": 0xB00, "MINSTRET": 0xB02, "MCYCLEH": 0xB80, "MINSTRETH": 0xB82,
    "MVENDORID": 0xF11, "MARCHID": 0xF12, "MIMPID": 0xF13, "MHARTID": 0xF14, "MSTATUS": 0x300,
    "MISA": 0x301, "MEDELEG": 0x302, "MIDELEG": 0x303, "MIE": 0x304, "MTVEC": 0x305,
    "MCOUNTEREN": 0x306, "MSTATUSH": 0x310, "MUCOUNTEREN": 0x320, "MSCOUNTEREN": 0x321,
    "MHCOUNTEREN": 0x322, "MSCRATCH": 0x340, "MEPC": 0x341, "MCAUSE": 0x342, "MTVAL": 0x343,
    "MIP": 0x344, "MBADADDR": 0x343, "SSTATUS": 0x100, "SEDELEG": 0x102, "SIDELEG": 0x103,
    "SIE": 0x104, "STVEC": 0x105, "SCOUNTEREN": 0x106, "SSCRATCH": 0x140, "SEPC": 0x141,
    "SCAUSE": 0x142, "STVAL": 0x143, "SIP": 0x144, "SBADADDR": 0x143, "SPTBR": 0x180,
    "SATP": 0x180, "HSTATUS": 0x600, "HEDELEG": 0x602, "HIDELEG": 0x603, "HIE": 0x604,
    "HCOUNTEREN": 0x606, "HTVAL": 0x643, "HIP": 0x644, "HTINST": 0x64A, "HGATP": 0x680,
    "HTIMEDELTA": 0x605, "HTIMEDELTAH": 0x615,
}
for _i in range(3, 32):
    _CSR_IDS[f"HPMCOUNTER{_i}"] = 0xC00 + _i
    _CSR_IDS[f"HPMCOUNTER{_i}H"] = 0xC80 + _i
CSR_OF_ID = {getattr(RC, f"UC_RISCV_REG_{n}"): c for n, c in _CSR_IDS.items()
             if hasattr(RC, f"UC_RISCV_REG_{n}")}
COUNTERS = {0xC00, 0xC02, 0xB00, 0xB02}


def _sx(v: int, bits: int) -> int:
    s = 1 << (bits - 1)
    return ((v & ((1 << bits) - 1)) ^ s) - s


# RISC-V division: x/0 = all ones, x%0 = x; INT_MIN/-1 = INT_MIN, INT_MIN%-1 = 0
def _divu(a: int, b: int, size: int) -> int:
    return a // b if b else mask(size)


def _remu(a: int, b: int, size: int) -> int:
    return a % b if b else a


def _divs(a: int, b: int, size: int) -> int:
    if b == 0:
        return mask(size)
    x, y = _sx(a, 8 * size), _sx(b, 8 * size)
    q = abs(x) // abs(y)
    return (q if (x < 0) == (y < 0) else -q) & mask(size)


def _rems(a: int, b: int, size: int) -> int:
    if b == 0:
        return a
    x, y = _sx(a, 8 * size), _sx(b, 8 * size)
    r = abs(x) % abs(y)
    return (r if x >= 0 else -r) & mask(size)


class RiscV64(ArchModel):
    """RV64GC with Unicorn 2.1.4's conventions (see the module docstring)."""

    name = "riscv64"
    lang = "RISCV:LE:64:RV64GC"
    nwords = 0x620  # pc, reservation, x0..x31, f0..f31 (+ the privilege word)
    pc_word = PC_OFF >> 3
    zero_words = frozenset({X0 >> 3})
    min_insn = 2
    max_insn = 4

    def __init__(self, eng: Any) -> None:
        super().__init__(eng)
        self.priv = 3
        self.csr: dict[int, int] = {}

    def reset(self) -> None:
        self.priv = 3
        self.csr = {MISA: MISA_VAL}

    def helpers(self) -> dict[str, Any]:
        return {"DIVU": _divu, "REMU": _remu, "DIVS": _divs, "REMS": _rems,
                "RVCSR": self.csr_op, "MRET": self.mret, "SRET": self.sret,
                "RVPRIV": self.priv_check, "RVFP": self.fp_check}

    # ------------------------------------------------------------------ registers
    def reg_read(self, rid: int) -> int:
        R = self.eng._R
        if RC.UC_RISCV_REG_X0 <= rid <= RC.UC_RISCV_REG_X31:
            return int(R[(X0 >> 3) + rid - RC.UC_RISCV_REG_X0])
        if rid == RC.UC_RISCV_REG_PC:
            return int(R[self.pc_word])
        if RC.UC_RISCV_REG_F0 <= rid <= RC.UC_RISCV_REG_F31:
            return int(R[(F0 >> 3) + rid - RC.UC_RISCV_REG_F0])
        if rid == RC.UC_RISCV_REG_PRIV:
            return self.priv
        c = CSR_OF_ID.get(rid)
        if c is None:
            raise UcError(UC_ERR_ARG)
        if (c >> 8) & 3 > self.priv:
            return 0
        return self.csr_get(c, self.eng._live_vt())

    def reg_write(self, rid: int, value: int) -> None:
        R = self.eng._R
        value = int(value) & M64
        if RC.UC_RISCV_REG_X0 <= rid <= RC.UC_RISCV_REG_X31:
            if rid != RC.UC_RISCV_REG_X0:
                R[(X0 >> 3) + rid - RC.UC_RISCV_REG_X0] = value
        elif rid == RC.UC_RISCV_REG_PC:
            R[self.pc_word] = value
        elif RC.UC_RISCV_REG_F0 <= rid <= RC.UC_RISCV_REG_F31:
            R[(F0 >> 3) + rid - RC.UC_RISCV_REG_F0] = value
        elif rid == RC.UC_RISCV_REG_PRIV:
            if value in (0, 1, 3):
                self.priv = value
                self.eng._resched()
        else:
            c = CSR_OF_ID.get(rid)
            if c is None:
                raise UcError(UC_ERR_ARG)
            if (c >> 8) & 3 <= self.priv and c not in (MISA,) and (c >> 10) != 3:
                self.csr_set(c, value)
                self.eng._resched()

    # ------------------------------------------------------------------ CSRs
    def csr_get(self, c: int, vt: int) -> int:
        cs = self.csr
        if c in COUNTERS:
            return (vt + self.eng._toff) & M64
        if c == MSTATUS:
            v = cs.get(MSTATUS, 0)
            return v | (1 << 63) if (v >> 13) & 3 == 3 or (v >> 15) & 3 == 3 else v
        if c == SSTATUS:
            return self.csr_get(MSTATUS, vt) & (SSTATUS_MASK | 1 << 63)
        if c == SIE:
            return cs.get(MIE, 0) & cs.get(MIDELEG, 0)
        if c == SIP:
            return cs.get(MIP, 0) & cs.get(MIDELEG, 0)
        if c == FFLAGS:
            return cs.get(FCSR, 0) & 0x1F
        if c == FRM:
            return (cs.get(FCSR, 0) >> 5) & 7
        return cs.get(c, 0)

    def csr_set(self, c: int, v: int) -> None:
        cs = self.csr
        if c == MSTATUS:
            cs[MSTATUS] = v & MSTATUS_MASK
        elif c == SSTATUS:
            cs[MSTATUS] = (cs.get(MSTATUS, 0) & ~SSTATUS_MASK) | (v & SSTATUS_MASK)
        elif c == MIP:
            cs[MIP] = (cs.get(MIP, 0) & ~MIP_MASK) | (v & MIP_MASK)
        elif c == MIE:
            cs[MIE] = v & MIE_MASK
        elif c == SIE:
            m = cs.get(MIDELEG, 0)
            cs[MIE] = (cs.get(MIE, 0) & ~m) | (v & m)
        elif c == SIP:
            m = cs.get(MIDELEG, 0) & S_INT_MASK & ~0x200
            cs[MIP] = (cs.get(MIP, 0) & ~m) | (v & m)
        elif c in (MTVEC, STVEC):
            if (v & 3) < 2:
                cs[c] = v
        elif c == SATP:
            if (v >> 60) in (0, 8):
                cs[c] = v
        elif c == MIDELEG:
            cs[c] = v & S_INT_MASK
        elif c == FFLAGS:
            cs[FCSR] = (cs.get(FCSR, 0) & ~0x1F) | (v & 0x1F)
        elif c == FRM:
            cs[FCSR] = (cs.get(FCSR, 0) & ~0xE0) | ((v & 7) << 5)
        elif c == FCSR:
            cs[FCSR] = v & 0xFF
        elif c in (0xF11, 0xF12, 0xF13, 0xF14, MISA) or c in COUNTERS:
            pass
        else:
            cs[c] = v

    def csr_op(self, op: int, c: int, val: int, write: bool, vt: int, idx: int) -> int:
        """csrrw(1)/csrrs(2)/csrrc(3); raises the illegal-instruction trap on violations."""
        if (c >> 8) & 3 > self.priv or (write and (c >> 10) == 3) or c in (0xC01, 0xC81):
            raise Trap(T_INVALID, idx)
        if c in (FFLAGS, FRM, FCSR) and (self.csr.get(MSTATUS, 0) >> 13) & 3 == 0:
            raise Trap(T_INVALID, idx)
        old = self.csr_get(c, vt)
        if write:
            new = val if op == 1 else (old | val) if op == 2 else (old & ~val)
            self.csr_set(c, new & M64)
            self.eng._resched()
        return old

    def priv_check(self, minimum: int, idx: int) -> None:
        if self.priv < minimum:
            raise Trap(T_INVALID, idx)

    def fp_check(self, idx: int) -> None:
        if (self.csr.get(MSTATUS, 0) >> 13) & 3 == 0:
            raise Trap(T_INVALID, idx)

    def mret(self, idx: int) -> int:
        if self.priv < 3:
            raise Trap(T_INVALID, idx)
        s = self.csr.get(MSTATUS, 0)
        mpp = (s >> 11) & 3
        s = (s & ~(1 << 3)) | (((s >> 7) & 1) << 3)  # MIE <- MPIE
        s |= 1 << 7  # MPIE <- 1
        s &= ~(3 << 11)  # MPP <- U
        if mpp != 3:
            s &= ~(1 << 17)  # MPRV
        self.csr[MSTATUS] = s
        self.priv = mpp if mpp != 2 else 0
        self.eng._resched()
        return self.csr.get(MEPC, 0)

    def sret(self, idx: int) -> int:
        if self.priv < 1:
            raise Trap(T_INVALID, idx)
        s = self.csr.get(MSTATUS, 0)
        spp = (s >> 8) & 1
        s = (s & ~(1 << 1)) | (((s >> 5) & 1) << 1)  # SIE <- SPIE
        s |= 1 << 5
        s &= ~(1 << 8)
        self.csr[MSTATUS] = s
        self.priv = spp
        self.eng._resched()
        return self.csr.get(SEPC, 0)

    # ------------------------------------------------------------------ interrupts
    def _irqs(self) -> int:
        cs = self.csr
        pending = cs.get(MIP, 0) & cs.get(MIE, 0)
        if not pending:
            return 0
        s = cs.get(MSTATUS, 0)
        deleg = cs.get(MIDELEG, 0)
        m_en = self.priv < 3 or bool(s & (1 << 3))
        s_en = self.priv < 1 or (self.priv == 1 and bool(s & (1 << 1)))
        return (pending & ~deleg & (M64 if m_en else 0)) | (pending & deleg & (M64 if s_en else 0))

    def irq_pending(self) -> bool:
        return self._irqs() != 0

    def take_interrupt(self) -> None:
        irqs = self._irqs()
        cause = (irqs & -irqs).bit_length() - 1
        cs = self.csr
        R = self.eng._R
        pc = R[self.pc_word]
        s = cs.get(MSTATUS, 0)
        if self.priv <= 1 and (cs.get(MIDELEG, 0) >> cause) & 1:
            s = (s & ~(1 << 5)) | (((s >> 1) & 1) << 5)
            s = (s & ~(1 << 8)) | (self.priv << 8)
            s &= ~(1 << 1)
            cs[MSTATUS] = s
            cs[SCAUSE] = (1 << 63) | cause
            cs[SEPC] = pc
            cs[STVAL] = 0
            vec = cs.get(STVEC, 0)
            self.priv = 1
        else:
            s = (s & ~(1 << 7)) | (((s >> 3) & 1) << 7)
            s = (s & ~(3 << 11)) | (self.priv << 11)
            s &= ~(1 << 3)
            cs[MSTATUS] = s
            cs[MCAUSE] = (1 << 63) | cause
            cs[MEPC] = pc
            cs[MTVAL] = 0
            vec = cs.get(MTVEC, 0)
            self.priv = 3
        R[self.pc_word] = ((vec & ~3) + (4 * cause if vec & 3 == 1 else 0)) & M64
        self.eng._resched()

    # ------------------------------------------------------------------ traps
    def trap_retires(self, kind: int) -> bool:
        """Unicorn reports ecall and illegal instructions with the PC past them: they retire."""
        return kind in (T_EXC, T_INVALID, T_IDLE)

    def on_exception(self, t: Trap, ipc: int) -> int | None:  # ecall
        eng = self.eng
        eng._R[self.pc_word] = (ipc + 4) & M64
        eng.last_exception = (t.a, 0, None)
        if eng.call_intr_hooks(t.a):
            return eng._R[self.pc_word]
        raise UcError(UC_ERR_EXCEPTION)

    def on_invalid(self, t: Trap, ipc: int) -> int | None:
        eng = self.eng
        eng._R[self.pc_word] = (ipc + 4) & M64
        eng.last_exception = (2, 0, None)
        if eng.call_intr_hooks(2):
            return eng._R[self.pc_word]
        raise UcError(UC_ERR_EXCEPTION)

    def on_arch_trap(self, t: Trap, ipc: int) -> int | None:  # ebreak / c.ebreak
        eng = self.eng
        eng.last_exception = (3, 0, None)
        if eng.call_invalid_hooks():
            raise UcError(UC_ERR_EXCEPTION)
        raise UcError(UC_ERR_INSN_INVALID)

    def on_idle(self, t: Trap, ipc: int) -> int | None:  # wfi: Unicorn returns
        self.eng._R[self.pc_word] = (ipc + 4) & M64
        self.eng.emu_stop()
        return None

    # ------------------------------------------------------------------ context
    def save(self) -> Any:
        return (self.priv, dict(self.csr))

    def restore(self, state: Any) -> None:
        self.priv, csr = state
        self.csr = dict(csr)

    # ------------------------------------------------------------------ translation
    def classify(self, insn: Insn) -> None:
        raw = insn.raw
        w = int.from_bytes(raw[:4] if insn.length == 4 else raw[:2], "little")
        insn.meta["w"] = w
        fp = False
        for p in insn.ops:
            if p.opc == OpCode.CALLOTHER and p.name in ("unimp", "trap") or \
                    p.name and p.name.startswith("custom"):
                insn.invalid = True
                return
            for v in ([p.out] if p.out else []) + p.ins:
                if v[0] != "register":
                    continue
                if 0x4000 <= v[1] < 0x90000000:  # vector registers: not in RV64GC
                    insn.invalid = True
                    return
                if F0 <= v[1] < F0 + 0x100:
                    fp = True
            if p.opc.name.startswith("FLOAT_"):
                fp = True
        insn.meta["fp"] = fp

    def is_terminator(self, insn: Insn) -> bool:
        w = insn.meta.get("w", 0)
        if insn.length == 2:
            return w == 0x9002
        op = w & 0x7F
        if op == 0x73:
            f3 = (w >> 12) & 7
            if f3 == 0:
                return True  # ecall ebreak mret sret wfi sfence
            return f3 in (1, 5) or (w >> 15) & 31 != 0  # CSR writes
        return w == 0x0000100F  # fence.i

    def needs_codegen(self, insn: Insn) -> bool:
        w = insn.meta["w"]
        if insn.meta.get("fp"):
            return True
        if insn.length == 2:
            return w == 0x9002
        return w & 0x7F == 0x73 and (w >> 12) & 7 != 4

    def emit_override(self, em: BlockEmitter, insn: Insn) -> bool:
        w = insn.meta["w"]
        idx = em.idx
        if insn.meta.get("fp"):
            em.line(f"RVFP({idx})")
        if insn.length == 2:
            if w == 0x9002:  # c.ebreak
                em.trap(T_ARCH, "'ebreak'")
                em.dead = True
                return True
            return False
        if w & 0x7F != 0x73:
            return False
        f3 = (w >> 12) & 7
        rd, rs1 = (w >> 7) & 31, (w >> 15) & 31
        if f3 == 0:
            if w == 0x00000073:
                em.trap(T_EXC, "8")
            elif w == 0x00100073:
                em.trap(T_ARCH, "'ebreak'")
            elif w == 0x30200073:
                em.line(("WB",))
                em.line(f"return MRET({idx})")
            elif w == 0x10200073:
                em.line(("WB",))
                em.line(f"return SRET({idx})")
            elif w == 0x10500073:
                em.line(f"RVPRIV(1, {idx})")
                em.trap(T_IDLE)
            elif (w >> 25) == 0x9:  # sfence.vma
                em.line(f"RVPRIV(1, {idx})")
                return True
            else:
                em.trap(T_INVALID)
            em.dead = True
            return True
        if f3 == 4:
            return False
        c = w >> 20
        op = f3 & 3
        if f3 >= 5:
            val = str(rs1)
        else:
            val = em.rd_reg(X0 + 8 * rs1, 8)
        write = op == 1 or rs1 != 0
        em.wr_reg(X0 + 8 * rd, 8, f"RVCSR({op}, {c:#x}, {val}, {write}, vt + {idx}, {idx})")
        return True

    def userop(self, em: BlockEmitter, name: str, args: list[str], p: POp) -> str | None:
        if name in ("fence", "fence.i", "sfence.vm", "sfence.vma"):
            return "0"
        return super().userop(em, name, args, p)

