"""LoongArch64 on the P-code engine: registers, privileged model, overrides of SLEIGH semantics.

SLEIGH (``Loongarch:LE:64:lp64d``) decodes every instruction and gives the semantics of most.
Instructions are emitted from this module instead where SLEIGH is wrong or where the semantics
belong to the machine model: CSR access, break/syscall, ertn/idle, ll/sc and AM* (alignment,
LLbit), bound checks, rdtime, CRC, bstrins/bytepick, division, shifts, and the floating-point
conversions, rounding and min/max (:mod:`.loongarch_fp`, with QEMU's NaN rules for arithmetic
too). Memory model: ordinary loads and
stores may be misaligned (CPUCFG.UAL = 1, as on the 3A5000 and in QEMU); ll/sc and AM* raise ALE
when misaligned.

Exceptions (``Trap`` T_EXC) are reported to UC_HOOK_INTR hooks (intno = Ecode, PC at the faulting
instruction, details in ``engine.last_exception``); without such hooks they are entered
architecturally when EENTRY is set, otherwise ``emu_start`` fails with UC_ERR_EXCEPTION
(UC_ERR_INSN_INVALID for INE, after UC_HOOK_INSN_INVALID hooks declined it).

Interrupts (ESTAT.IS & ECFG.LIE with CRMD.IE) are always entered architecturally by the engine,
before the instruction at which they become pending and enabled: the constant timer counts
retired instructions of virtual time (``engine.vtime``) and expires at an exact instruction,
independent of how code is split into blocks or ``emu_start`` slices. ``idle`` jumps virtual time
to the next expiry; with nothing able to wake it, emulation stops with ``engine.halted`` set.
The host drives the other lines with ``engine.arch.set_irq(line, level)`` and may route IOCSR
accesses with ``engine.arch.iocsr_read/iocsr_write`` callbacks.

Addresses: DA mode maps VA[47:0]; PG mode maps the DMW windows (no TLB: other addresses are
unmapped); an address mapped as-is is always used as-is.
"""

from __future__ import annotations

import os
import re
from typing import Any

from unicorn import UcError
from unicorn.unicorn_const import UC_ERR_ARG, UC_ERR_EXCEPTION, UC_ERR_INSN_INVALID

from . import loongarch_const as K
from .arch import ArchModel
from .codegen import (
    T_EXC,
    T_IDLE,
    T_INVALID,
    T_UNIMPL,
    BlockEmitter,
    Insn,
    OpCode,
    POp,
    Trap,
    mask,
)
from .loongarch_fp import HELPERS as FP_HELPERS

GPR = 0x100  # register-space offset of r0
_PC, _R0, _R31 = K.LA_REG_PC, K.LA_REG_R0, K.LA_REG_R0 + 31  # register ids (host access)
_GPR_WORD = (GPR >> 3) - K.LA_REG_R0  # word of register id rid in R: _GPR_WORD + rid
LLW = 0xB00  # register-file word holding LLbit (outside SLEIGH's register space)
NWORDS = 0xB08
PAMASK = (1 << 48) - 1
M64 = (1 << 64) - 1
TIMER_MASK = (1 << 48) - 1  # TCFG: En, Periodic, InitVal[47:2]

# CSR numbers
CRMD, PRMD, EUEN, MISC, ECFG, ESTAT, ERA, BADV, BADI = 0, 1, 2, 3, 4, 5, 6, 7, 8
EENTRY, TLBIDX, ASID = 0xC, 0x10, 0x18
CPUID, PRCFG1, PRCFG2, PRCFG3 = 0x20, 0x21, 0x22, 0x23
TID, TCFG, TVAL, CNTC, TICLR, LLBCTL = 0x40, 0x41, 0x42, 0x43, 0x44, 0x60
DMW0 = 0x180

# software write masks (bits a csrwr/csrxchg may change); CSRs not listed are stored as written
WMASK = {
    CRMD: 0x3FF,
    PRMD: 0xF,
    EUEN: 0x1,
    ECFG: 0x71BFF,
    ESTAT: 0x3,
    BADI: 0,
    EENTRY: M64 & ~0xFFF,
    CPUID: 0,
    PRCFG1: 0,
    PRCFG2: 0,
    PRCFG3: 0,
    TID: 0xFFFFFFFF,
    TCFG: TIMER_MASK,
    TVAL: 0,
    ASID: 0x3FF,
    DMW0: 0xF000_0000_0000_0039,
    DMW0 + 1: 0xF000_0000_0000_0039,
    DMW0 + 2: 0xF000_0000_0000_0039,
    DMW0 + 3: 0xF000_0000_0000_0039,
}
RESET = {
    CRMD: 0x8,  # DA = 1, PLV0, interrupts off
    PRCFG1: 8 | (47 << 4) | (7 << 12),  # 8 SAVE regs, 48-bit timer, VSMAX 7
    PRCFG2: 0x3FFFF000,
    PRCFG3: 2 | (63 << 4) | (7 << 12) | (8 << 20),
    ASID: 10 << 16,
}
CPUCFG = {
    0: 0x0014C010,  # PRID
    # ARCH=LA64, PGMMU, IOCSR, PALEN=48, VALEN=48, UAL, RI, EP, RPLV, HP, CRC
    1: 0x2 | 1 << 2 | 1 << 3 | 47 << 4 | 47 << 12 | 1 << 20 | 1 << 21 | 1 << 22 | 1 << 23
    | 1 << 24 | 1 << 25,
    # FP, FP_SP, FP_DP, FP_ver 1, LLFTP, LLFTP_ver 1, LAM
    2: 0x1 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 14 | 1 << 15 | 1 << 22,
    3: 0x0000FCFF,
    4: 100_000_000,  # constant-counter frequency (virtual: one tick per instruction)
    5: 0x0001_0001,  # CC_MUL = 1, CC_DIV = 1
    6: 0,
    0x10: 0x2C3D,
    0x11: 0x06080003,
    0x12: 0x06080003,
    0x13: 0x0608000F,
    0x14: 0x060E000F,
}

EXC_INT, EXC_ADE, EXC_ALE, EXC_BCE = 0x0, 0x8, 0x9, 0xA
EXC_SYS, EXC_BRK, EXC_INE, EXC_IPE, EXC_FPD = 0xB, 0xC, 0xD, 0xE, 0xF
ADEF, ADEM = 0, 1


def _ext_userops() -> frozenset[str]:
    """User-ops of the LSX/LASX/LBT/LVZ extensions (not part of this CPU: INE)."""
    import pypcode

    d = os.path.join(os.path.dirname(pypcode.__file__), "processors", "Loongarch", "data",
                     "languages")
    names: set[str] = set()
    for f in ("lsx.sinc", "lasx.sinc", "lbt.sinc", "lvz.sinc"):
        try:
            with open(os.path.join(d, f)) as fh:
                names.update(re.findall(r"define\s+pcodeop\s+([\w.]+)\s*;", fh.read()))
        except OSError:
            pass
    return frozenset(names)


EXT_OPS = _ext_userops()
NOP_OPS = frozenset({
    "dbar", "ibar", "preld_loadl1cache", "preld_storel1cache", "preld_nop",
    "preldx_loadl1cache", "preldx_storel1cache", "preldx_nop", "cacop", "ldpte",
    "tlbclr", "tlbflush", "tlbrd", "tlbwr", "tlbfill", "invtlb",
})

_CRC_TABLES: dict[int, list[int]] = {}


def _crc_table(poly: int) -> list[int]:
    t = _CRC_TABLES.get(poly)
    if t is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (poly if c & 1 else 0)
            t.append(c)
        _CRC_TABLES[poly] = t
    return t


def crc32(crc: int, data: int, nbytes: int, poly: int) -> int:
    """LoongArch CRC.W.*.W / CRCC.W.*.W: reflected CRC-32, no pre/post inversion."""
    t = _crc_table(poly)
    crc &= 0xFFFFFFFF
    for i in range(nbytes):
        crc = (crc >> 8) ^ t[(crc ^ (data >> (8 * i))) & 0xFF]
    return crc


def _sx(v: int, bits: int) -> int:
    s = 1 << (bits - 1)
    return ((v & ((1 << bits) - 1)) ^ s) - s


# Division as QEMU does it (the architecture leaves x/0 undefined): a zero divisor acts as 1,
# so x/0 = x and x%0 = 0; INT_MIN/-1 wraps to INT_MIN (remainder 0).
def _divu(a: int, b: int, size: int) -> int:
    return a // b if b else a


def _remu(a: int, b: int, size: int) -> int:
    return a % b if b else 0


def _divs(a: int, b: int, size: int) -> int:
    if b == 0:
        return a
    bits = 8 * size
    x, y = _sx(a, bits), _sx(b, bits)
    q = abs(x) // abs(y)
    return (q if (x < 0) == (y < 0) else -q) & mask(size)


def _rems(a: int, b: int, size: int) -> int:
    if b == 0:
        return 0
    bits = 8 * size
    x, y = _sx(a, bits), _sx(b, bits)
    r = abs(x) % abs(y)
    return (r if x >= 0 else -r) & mask(size)


def _fields(w: int) -> tuple[int, int, int]:
    return w & 31, (w >> 5) & 31, (w >> 10) & 31


def _is_priv(w: int) -> bool:
    top = w >> 24
    if top == 0x04:  # csrrd/csrwr/csrxchg
        return True
    if w >> 22 == 0x18:  # cacop
        return True
    if w >> 18 in (0x190, 0x191):  # lddir, ldpte
        return True
    if 0x19200 <= w >> 10 <= 0x19207:  # iocsr*
        return True
    if w in (0x06482000, 0x06482400, 0x06482800, 0x06482C00, 0x06483000, 0x06483400,
             0x06483800):  # tlb*, ertn
        return True
    return w >> 15 in (0xC91, 0xC93)  # idle, invtlb


class LoongArch64(ArchModel):
    """The LoongArch64 CPU model (see the module docstring)."""

    name = "loongarch64"
    lang = "Loongarch:LE:64:lp64d"
    nwords = NWORDS
    pc_word = 0
    zero_words = frozenset({GPR >> 3})
    min_insn = 4
    max_insn = 4

    def __init__(self, eng: Any) -> None:
        super().__init__(eng)
        self.C: list[int] = [0] * 0x200
        self.Cx: dict[int, int] = {}
        self.t_next: int | None = None  # virtual time of the next timer expiry
        self.t_period = 0
        self.t_frozen = 0
        self.iocsr_read: Any = None  # optional callbacks: read(addr, size) -> int
        self.iocsr_write: Any = None  # write(addr, size, value)

    def reset(self) -> None:
        self.C[:] = [0] * 0x200
        self.Cx.clear()
        for k, v in RESET.items():
            self.C[k] = v
        self.t_next = None
        self.t_period = 0
        self.eng._G["C"] = self.C

    # ------------------------------------------------------------------ helpers for codegen
    def helpers(self) -> dict[str, Any]:
        return {
            "DIVU": _divu, "REMU": _remu, "DIVS": _divs, "REMS": _rems,
            "CSRRD": self.csr_read, "CSRWR": self.csr_wr, "CSRXCHG": self.csr_xchg,
            "ERTN": self.ertn, "CPUCFG": self.cpucfg, "RDTIME": self.rdtime,
            "CRC32": crc32, "IOCSRRD": self._iocsr_rd, "IOCSRWR": self._iocsr_wr,
            "FCLASS": _fclass, "C": self.C, "LLW": LLW, **FP_HELPERS,
        }

    def now(self, vt: int) -> int:
        return vt + self.eng._toff

    # ------------------------------------------------------------------ registers
    def direct_registers(self) -> dict[int, int]:
        return {_PC: 0, **{rid: _GPR_WORD + rid for rid in range(_R0 + 1, _R31 + 1)}}

    def reg_read(self, rid: int) -> int:
        R = self.eng._R
        if rid == _PC:
            return int(R[0])
        if _R0 <= rid <= _R31:
            return int(R[_GPR_WORD + rid])
        if rid >= K.LA_REG_CSR_BASE:
            return self.csr_read(rid - K.LA_REG_CSR_BASE, self.eng._live_vt())
        if K.LA_REG_F0 <= rid <= K.LA_REG_F0 + 31:
            return int(R[0x200 + 4 * (rid - K.LA_REG_F0)])
        if K.LA_REG_FCC0 <= rid <= K.LA_REG_FCC0 + 7:
            return (R[8] >> (8 * (rid - K.LA_REG_FCC0))) & 0xFF
        if rid == K.LA_REG_FCSR0:
            return R[9] & 0xFFFFFFFF
        if rid == K.LA_REG_LLBIT:
            return int(R[LLW])
        raise UcError(UC_ERR_ARG)

    def reg_write(self, rid: int, value: int) -> None:
        R = self.eng._R
        value = int(value) & M64
        if rid == _PC:
            R[0] = value
        elif _R0 <= rid <= _R31:
            if rid != _R0:
                R[_GPR_WORD + rid] = value
        elif rid >= K.LA_REG_CSR_BASE:
            self.csr_host_write(rid - K.LA_REG_CSR_BASE, value)
        elif K.LA_REG_F0 <= rid <= K.LA_REG_F0 + 31:
            R[0x200 + 4 * (rid - K.LA_REG_F0)] = value
        elif K.LA_REG_FCC0 <= rid <= K.LA_REG_FCC0 + 7:
            sh = 8 * (rid - K.LA_REG_FCC0)
            R[8] = (R[8] & ~(0xFF << sh)) | ((value & 1) << sh)
        elif rid == K.LA_REG_FCSR0:
            R[9] = value & 0xFFFFFFFF
        elif rid == K.LA_REG_LLBIT:
            R[LLW] = value & 1
        else:
            raise UcError(UC_ERR_ARG)

    # ------------------------------------------------------------------ CSRs
    def _get(self, n: int) -> int:
        return self.C[n] if n < 0x200 else self.Cx.get(n, 0)

    def _set(self, n: int, v: int) -> None:
        if n < 0x200:
            self.C[n] = v
        else:
            self.Cx[n] = v

    def csr_read(self, n: int, vt: int) -> int:
        if n == TVAL:
            return self._tval(self.now(vt))
        if n == LLBCTL:
            return (self.C[LLBCTL] & 4) | (self.eng._R[LLW] & 1)
        if n == TICLR:
            return 0
        return self._get(n)

    def _tval(self, now: int) -> int:
        if self.t_next is None:
            return self.t_frozen
        return max(self.t_next - now, 0)

    def csr_wr(self, n: int, v: int, vt: int) -> int:
        old = self.csr_read(n, vt)
        self.csr_write(n, v, vt)
        return old

    def csr_xchg(self, n: int, v: int, m: int, vt: int) -> int:
        old = self.csr_read(n, vt)
        self.csr_write(n, (v & m) | (self._get(n) & ~m & M64), vt)
        return old

    def csr_write(self, n: int, v: int, vt: int) -> None:
        """A guest write: only the software-writable bits change; side effects apply."""
        if n == TICLR:
            if v & 1:
                self.C[ESTAT] &= ~(1 << 11)
                self.eng._resched()
            return
        if n == LLBCTL:
            if v & 2:
                self.eng._R[LLW] = 0
            self.C[LLBCTL] = v & 4
            return
        wm = WMASK.get(n)
        old = self._get(n)
        new = v & M64 if wm is None else (old & ~wm) | (v & wm)
        self._set(n, new)
        self._side_effects(n, old, new, vt)

    def csr_host_write(self, n: int, v: int) -> None:
        """A host write (reg_write, context restore): the value as given, with side effects."""
        vt = self.eng._live_vt()
        if n == TVAL:
            now = self.now(vt)
            if self.t_next is not None:
                self.t_next = now + v
            else:
                self.t_frozen = v
            self.eng._resched()
            return
        if n in (TICLR, LLBCTL):
            self.csr_write(n, v, vt)
            return
        old = self._get(n)
        self._set(n, v)
        self._side_effects(n, old, v, vt)

    def _side_effects(self, n: int, old: int, new: int, vt: int) -> None:
        if n == CRMD:
            if (old ^ new) & 0x1F8:  # DA, PG, DATF, DATM
                self.eng._flush_tlb()
            if (old ^ new) & 0x18:  # DA, PG: blocks are kept by virtual address
                self.eng._flush_blocks()
            self.eng._resched()
        elif n in (ECFG, ESTAT, PRMD):
            self.eng._resched()
        elif n == TCFG:
            now = self.now(vt)
            if new & 1:
                init = new & TIMER_MASK & ~3
                self.t_next = now + init
                self.t_period = init if new & 2 else 0
            else:
                self.t_frozen = self._tval(now)
                self.t_next = None
            self.eng._resched()
        elif DMW0 <= n <= DMW0 + 3:
            self.eng._flush_tlb()
            self.eng._flush_blocks()

    # ------------------------------------------------------------------ timer / interrupts
    def next_event(self) -> int | None:
        return self.t_next

    def tick(self, now: int) -> None:
        if self.t_next is None or now < self.t_next:
            return
        self.C[ESTAT] |= 1 << 11
        if self.t_period:
            while self.t_next <= now:
                self.t_next += self.t_period
        else:
            self.t_next = None
            self.t_frozen = 0
        self.eng._resched()

    def irq_pending(self) -> bool:
        C = self.C
        return bool(C[CRMD] & 4) and bool(C[ESTAT] & C[ECFG] & 0x1BFF)

    def take_interrupt(self) -> None:
        C = self.C
        pending = C[ESTAT] & C[ECFG] & 0x1BFF
        self.raise_exception(EXC_INT, 0, None, irq=pending.bit_length() - 1)

    def set_irq(self, line: int, level: bool = True) -> None:
        """Drive interrupt line ``line`` (ESTAT.IS bit: 2..9 HWI0-7, 11 timer, 12 IPI)."""
        if level:
            self.C[ESTAT] |= 1 << line
        else:
            self.C[ESTAT] &= ~(1 << line)
        self.eng._resched()

    def raise_exception(self, ecode: int, esubcode: int = 0, badv: int | None = None,
                        irq: int | None = None) -> None:
        """Exception entry: ERA, PRMD <- CRMD, CRMD.PLV/IE <- 0, ESTAT, BADV, PC <- entry."""
        R = self.eng._R
        C = self.C
        pc = R[0]
        crmd = C[CRMD]
        C[ERA] = pc
        C[PRMD] = (C[PRMD] & ~0xF) | (crmd & 7) | (((crmd >> 9) & 1) << 3)
        C[CRMD] = crmd & ~(7 | 1 << 9)
        C[ESTAT] = (C[ESTAT] & 0x1FFF) | ((ecode & 0x3F) << 16) | ((esubcode & 0x1FF) << 22)
        if badv is not None:
            C[BADV] = badv & M64
        if ecode != EXC_INT:
            try:
                C[BADI] = int.from_bytes(self.eng.mem_read(pc, 4), "little")
            except UcError:
                C[BADI] = 0
        vs = (C[ECFG] >> 16) & 7
        entry = C[EENTRY]
        if vs:
            vec = 64 + (irq or 0) if ecode == EXC_INT else ecode
            entry += vec << (vs + 2)
        R[0] = entry & M64
        self.eng._resched()

    def ertn(self) -> int:
        C = self.C
        prmd = C[PRMD]
        C[CRMD] = (C[CRMD] & ~(7 | 1 << 9)) | (prmd & 7) | (((prmd >> 3) & 1) << 9)
        if C[LLBCTL] & 4:
            C[LLBCTL] &= ~4
        else:
            self.eng._R[LLW] = 0
        self.eng._resched()
        return C[ERA]

    def cpucfg(self, n: int) -> int:
        return CPUCFG.get(n & 0xFFFFFFFF, 0)

    def rdtime(self, vt: int) -> int:
        return (self.now(vt) + self.C[CNTC]) & M64

    def _iocsr_rd(self, addr: int, size: int) -> int:
        if self.iocsr_read is None:
            return 0
        return int(self.iocsr_read(addr, size)) & mask(size)

    def _iocsr_wr(self, addr: int, size: int, value: int) -> None:
        if self.iocsr_write is not None:
            self.iocsr_write(addr, size, value)

    def va_to_pa(self, va: int) -> int | None:
        C = self.C
        crmd = C[CRMD]
        if crmd & 0x8:  # DA
            return va & PAMASK
        if crmd & 0x10:  # PG: only the direct-map windows are modelled (no TLB)
            plv = crmd & 3
            for i in range(4):
                d = C[DMW0 + i]
                if d & (1 << plv) and (d >> 60) == (va >> 60):
                    return va & PAMASK
        return None

    def fetch_map(self) -> tuple[int, ...]:
        """Translation mode and privilege level (CRMD) and the direct-map windows."""
        C = self.C
        return (C[CRMD] & 0x1B, C[DMW0], C[DMW0 + 1], C[DMW0 + 2], C[DMW0 + 3])

    # ------------------------------------------------------------------ traps
    def fetch_check(self, pc: int) -> Trap | None:
        if pc & 3:
            return Trap(T_EXC, -1, EXC_ADE, ADEF, pc)
        return None

    def _deliver(self, ecode: int, esub: int, badv: int | None, idx: int = -1, ipc: int = 0) -> int | None:
        """Report exception ``ecode`` to the UC_HOOK_INTR hooks, or enter it in the guest."""
        eng = self.eng
        eng.last_exception = (ecode, esub, badv)
        hooks = eng._intr_hooks
        if hooks:  # eng.call_intr_hooks, one call less on every break
            if len(hooks) == 1:  # the usual one (the machine's): no copy to iterate over
                h = hooks[0]
                h.cb(eng, ecode, h.ud)
            else:
                for h in hooks.copy():
                    h.cb(eng, ecode, h.ud)
            return eng._R[0]
        if self.C[EENTRY] == 0:
            raise UcError(UC_ERR_INSN_INVALID if ecode == EXC_INE else UC_ERR_EXCEPTION)
        self.raise_exception(ecode, esub, badv)
        return eng._R[0]

    def on_exception(self, t: Trap, ipc: int) -> int | None:
        return self._deliver(t.a, t.b, t.c)

    on_exception_args = _deliver  # a returned trap (break, syscall): straight to delivery

    def on_invalid(self, t: Trap, ipc: int) -> int | None:
        """INE: UC_HOOK_INTR hooks first, then UC_HOOK_INSN_INVALID hooks, then the guest."""
        eng = self.eng
        if not eng._intr_hooks and eng._invalid_hooks:
            eng.last_exception = (EXC_INE, 0, None)
            if eng.call_invalid_hooks():
                return eng._R[0]
        return self._deliver(EXC_INE, 0, None)

    def on_idle(self, t: Trap, ipc: int) -> int | None:
        eng = self.eng
        C = self.C
        nxt = (ipc + 4) & M64
        eng._R[0] = nxt
        if C[ESTAT] & C[ECFG] & 0x1BFF:
            return nxt
        if self.t_next is not None and C[ECFG] & (1 << 11):
            now = eng._vt + eng._toff
            if self.t_next > now:
                eng._toff += self.t_next - now
            self.tick(self.t_next)
            return nxt
        eng.halted = True
        eng.emu_stop()
        return None

    def on_arch_trap(self, t: Trap, ipc: int) -> int | None:  # pragma: no cover
        raise RuntimeError("unexpected arch trap")

    # ------------------------------------------------------------------ context
    def save(self) -> Any:
        now = self.now(self.eng._live_vt())
        left = None if self.t_next is None else self.t_next - now  # TVAL is a register
        return (list(self.C), dict(self.Cx), left, self.t_period, self.t_frozen)

    def restore(self, state: Any) -> None:
        C, Cx, left, self.t_period, self.t_frozen = state
        self.t_next = None if left is None else self.now(self.eng._live_vt()) + left
        self.C[:] = C
        self.Cx = dict(Cx)
        self.eng._flush_tlb()

    # ------------------------------------------------------------------ translation
    def classify(self, insn: Insn) -> None:
        w = int.from_bytes(insn.raw, "little")
        meta = insn.meta
        meta["w"] = w
        fp = False
        callother = OpCode.CALLOTHER
        for p in insn.ops:
            if p.opc == callother and p.name in EXT_OPS:
                insn.invalid = True
                return
            out = p.out
            for v in (*p.ins, out) if out is not None else p.ins:
                if v[0] != "register":
                    continue
                off = v[1]
                if v[2] > 8 or 0x8 <= off < 0x28:
                    insn.invalid = True  # LSX/LASX vector or LBT scratch registers
                    return
                if 0x1000 <= off < 0x2000 or 0x40 <= off < 0x50 or 0x5000 <= off < 0x5200:
                    fp = True  # FPRs, FCSRs, condition flags
        op15 = w >> 15
        if 0x70C0 <= op15 <= 0x70E3:  # AM*: rd must differ from rj and rk
            rd, rj, rk = _fields(w)
            if rd and rd in (rj, rk):
                insn.invalid = True
                return
        meta["priv"] = _is_priv(w)
        meta["fp"] = fp
        h = _dispatch(w)  # the instruction's own emitter, if SLEIGH's P-code is not used
        meta["ov"] = h.__name__ if h is not None else None  # a name: meta goes to the disk cache

    def is_terminator(self, insn: Insn) -> bool:
        w = insn.meta.get("w", 0)
        if w >> 24 == 0x04 and (w >> 5) & 31 != 0:  # csrwr / csrxchg
            return True
        op15 = w >> 15
        return op15 in (0x54, 0x56, 0x70E5, 0xC91) or w == 0x06483800

    def emit_invalid(self, em: BlockEmitter, insn: Insn) -> None:
        em.trap(T_INVALID)

    def needs_codegen(self, insn: Insn) -> bool:
        meta = insn.meta
        return bool(meta.get("priv") or meta.get("fp")) or meta.get("ov") is not None

    def tier0_op(self, insn: Insn) -> Any:
        """Tier 0's own ``fn(R, vt) -> next_pc`` for the commonest overridden instructions
        (bit-field and shift ops; same semantics as their emitters, both checked against QEMU),
        so a block holding one needs no compiled snippet; None for the rest."""
        meta = insn.meta
        if insn.invalid or meta.get("priv") or meta.get("fp"):
            return None
        w = meta["w"]
        h = meta.get("ov")
        if h == "_ov_bstr":
            f = _t0_bstr(w)
        elif h == "_ov_shift":
            f = _t0_shift(w)
        else:
            return None
        if f is None:
            return None
        rd, rj, rk = _fields(w)
        nxt = insn.addr + insn.length
        g = GPR >> 3

        def op(R: list[int], vt: int) -> int:
            v = f(R[g + rj] if rj else 0, R[g + rk] if rk else 0, R[g + rd] if rd else 0)
            if rd:
                R[g + rd] = v
            return nxt

        return op

    def emit_override(self, em: BlockEmitter, insn: Insn) -> bool:
        w = insn.meta["w"]
        idx = em.idx
        if insn.meta.get("priv"):
            em.line(f"if (C[0] & 3) == 3: raise Trap({T_EXC}, {idx}, {EXC_IPE}, 0, None)")
        if insn.meta.get("fp"):
            em.line(f"if not (C[2] & 1): raise Trap({T_EXC}, {idx}, {EXC_FPD}, 0, None)")
        h = insn.meta.get("ov")
        if h is None:
            return False
        _OVERRIDES[h](self, em, w)
        return True

    def userop(self, em: BlockEmitter, name: str, args: list[str], p: POp) -> str | None:
        idx = em.idx
        if name in NOP_OPS:
            return "0"
        if name == "tlbsrch":
            em.line("C[0x10] |= 0x80000000")
            return "0"
        if name == "lddir":
            return "0"
        if name == "cpucfg":
            return f"CPUCFG({args[0]})"
        if name in ("bound_check_exception", "addr_bound_exception"):
            em.line(f"raise Trap({T_EXC}, {idx}, {EXC_BCE}, 0, {args[0]})")
            return "0"
        if name == "f_class":  # fclass.d passes (fd, fj): the operand is the last
            return f"FCLASS({args[-1]}, {p.ins[-1][2]})"
        em.trap(T_UNIMPL, repr(name))
        return "0"

    def space_load(self, em: BlockEmitter, space: str, addr: str, size: int) -> str:
        if space == "iocsr":
            t = em.tmp()
            em.line(f"{t} = IOCSRRD({addr}, {size})")
            return t
        return super().space_load(em, space, addr, size)

    def space_store(self, em: BlockEmitter, space: str, addr: str, size: int, value: str) -> None:
        if space == "iocsr":
            em.line(f"IOCSRWR({addr}, {size}, {value})")
            return
        super().space_store(em, space, addr, size, value)


# ---------------------------------------------------------------------- instruction overrides


def _g(em: BlockEmitter, n: int) -> str:
    return em.rd_reg(GPR + 8 * n, 8)


def _s(em: BlockEmitter, n: int, expr: str) -> None:
    em.wr_reg(GPR + 8 * n, 8, expr)


def _sext(expr: str, bits: int) -> str:
    s = 1 << (bits - 1)
    return f"((({expr} ^ {s:#x}) - {s:#x}) & {M64:#x})"


def _ale(em: BlockEmitter, a: str, size: int) -> None:
    if size > 1:
        em.line(f"if {a} & {size - 1}: raise Trap({T_EXC}, {em.idx}, {EXC_ALE}, 0, {a})")


def _ov_csr(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, _ = _fields(w)
    csr = (w >> 10) & 0x3FFF
    now = f"vt + {em.idx}"
    if rj == 0:
        _s(em, rd, f"CSRRD({csr:#x}, {now})")
    elif rj == 1:
        _s(em, rd, f"CSRWR({csr:#x}, {_g(em, rd)}, {now})")
    else:
        _s(em, rd, f"CSRXCHG({csr:#x}, {_g(em, rd)}, {_g(em, rj)}, {now})")


def _ov_break(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    em.trap_return(T_EXC, EXC_BRK)  # a terminator (is_terminator): it ends its block
    em.dead = True


def _ov_syscall(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    em.trap_return(T_EXC, EXC_SYS)  # a terminator (is_terminator): it ends its block
    em.dead = True


def _ov_ertn(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    em.line(("WB",))
    em.line("return ERTN()")
    em.dead = True


def _ov_idle(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    em.trap(T_IDLE)
    em.dead = True


def _ov_ibar(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    pass  # ends the block (is_terminator); translations are invalidated on writes


def _ov_dbar(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    pass


def _si14_addr(em: BlockEmitter, w: int) -> str:
    _, rj, _ = _fields(w)
    off = _sx((w >> 10) & 0x3FFF, 14) << 2
    base = _g(em, rj)
    return em.simple(f"(({base} + {off & M64:#x}) & {M64:#x})" if off else base)


def _ov_ll(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd = w & 31
    size = 4 if (w >> 24) == 0x20 else 8
    a = _si14_addr(em, w)
    _ale(em, a, size)
    v = em.load("ram", a, size)
    em.line("R[LLW] = 1")
    _s(em, rd, _sext(v, 32) if size == 4 else v)


def _ov_sc(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd = w & 31
    size = 4 if (w >> 24) == 0x21 else 8
    a = _si14_addr(em, w)
    _ale(em, a, size)
    val = em.simple(_g(em, rd))
    ok = em.tmp()
    em.line(f"{ok} = R[LLW]")
    em.line(f"if {ok}:")
    em.ind += 1
    em.store("ram", a, size, f"({val} & {mask(size):#x})" if size == 4 else val)
    em.ind -= 1
    em.line("R[LLW] = 0")
    _s(em, rd, f"({ok} & 1)")


_AM_OPS = ["swap", "add", "and", "or", "xor", "max", "min", "maxu", "minu"]


def _ov_am(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, rk = _fields(w)
    op15 = w >> 15
    k = op15 - 0x70C0 if op15 < 0x70D2 else op15 - 0x70D2
    kind = _AM_OPS[k // 2]
    size = 8 if k & 1 else 4
    bits = 8 * size
    M = hex(mask(size))
    S = hex(1 << (bits - 1))
    a = em.simple(_g(em, rj))
    _ale(em, a, size)
    old = em.load("ram", a, size)
    src = em.simple(_g(em, rk) if size == 8 else f"({_g(em, rk)} & {M})")
    new = {
        "swap": src,
        "add": f"(({old} + {src}) & {M})",
        "and": f"({old} & {src})",
        "or": f"({old} | {src})",
        "xor": f"({old} ^ {src})",
        "max": f"({old} if ({old} ^ {S}) >= ({src} ^ {S}) else {src})",
        "min": f"({old} if ({old} ^ {S}) <= ({src} ^ {S}) else {src})",
        "maxu": f"({old} if {old} >= {src} else {src})",
        "minu": f"({old} if {old} <= {src} else {src})",
    }[kind]
    em.store("ram", a, size, new)
    _s(em, rd, _sext(old, 32) if size == 4 else old)


def _ov_bound_ldst(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, rk = _fields(w)
    k = (w >> 15) - 0x70F0  # ldgt b,h,w,d / ldle / stgt / stle
    size = 1 << (k & 3)
    gt = (k >> 2) in (0, 2)
    load = k < 8
    a = em.simple(_g(em, rj))
    b = em.simple(_g(em, rk))
    cond = f"{a} > {b}" if gt else f"{a} <= {b}"
    em.line(f"if not ({cond}): raise Trap({T_EXC}, {em.idx}, {EXC_BCE}, 0, {a})")
    if load:
        v = em.load("ram", a, size)
        _s(em, rd, _sext(v, 8 * size) if size < 8 else v)
    else:
        em.store("ram", a, size, f"({_g(em, rd)} & {mask(size):#x})" if size < 8 else _g(em, rd))


def _ov_asrt(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    _, rj, rk = _fields(w)
    a = em.simple(_g(em, rj))
    b = em.simple(_g(em, rk))
    cond = f"{a} <= {b}" if (w >> 15) == 0x2 else f"{a} > {b}"
    em.line(f"if not ({cond}): raise Trap({T_EXC}, {em.idx}, {EXC_BCE}, 0, None)")


def _ov_rdtime(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, _ = _fields(w)
    kind = (w >> 10) & 3  # 0 = rdtimel.w, 1 = rdtimeh.w, 2 = rdtime.d
    t = em.tmp()
    em.line(f"{t} = RDTIME(vt + {em.idx})")
    if kind == 0:
        v = _sext(t, 32)
    elif kind == 1:
        v = _sext(f"({t} >> 32)", 32)
    else:
        v = t
    _s(em, rd, v)
    _s(em, rj, "C[0x40]")


def _ov_crc(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, rk = _fields(w)
    k = (w >> 15) - 0x48
    nbytes = 1 << (k & 3)
    poly = 0x82F63B78 if k >= 4 else 0xEDB88320
    data = _g(em, rj)
    _s(em, rd, _sext(f"CRC32({_g(em, rk)}, {data}, {nbytes}, {poly:#x})", 32))


def _ov_bstr(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, _ = _fields(w)
    if w >> 22 in (0x2, 0x3):  # .d
        msb, lsb, bits = (w >> 16) & 63, (w >> 10) & 63, 64
        ins = (w >> 22) == 0x2
    else:
        msb, lsb, bits = (w >> 16) & 31, (w >> 10) & 31, 32
        ins = not (w >> 15) & 1
    if msb < lsb:  # undefined by the architecture; QEMU raises INE
        em.trap(T_INVALID)
        em.dead = True
        return
    width = msb - lsb + 1
    fm = (1 << width) - 1
    src = _g(em, rj)
    if ins:
        keep = mask(bits // 8) & ~(fm << lsb)
        dst = _g(em, rd)
        v = f"((({dst} & {keep:#x}) | (({src} & {fm:#x}) << {lsb})))"
    else:
        v = f"(({src} >> {lsb}) & {fm:#x})"
    _s(em, rd, _sext(v, 32) if bits == 32 else v)


def _sx32(v: int) -> int:
    return ((v ^ 0x80000000) - 0x80000000) & M64


def _t0_bstr(w: int) -> Any:
    """bstrins/bstrpick as a function of (rj, rk, rd) values (see _ov_bstr)."""
    if w >> 22 in (0x2, 0x3):
        msb, lsb, bits = (w >> 16) & 63, (w >> 10) & 63, 64
        ins = (w >> 22) == 0x2
    else:
        msb, lsb, bits = (w >> 16) & 31, (w >> 10) & 31, 32
        ins = not (w >> 15) & 1
    if msb < lsb:
        return None  # INE: the snippet raises it
    fm = (1 << (msb - lsb + 1)) - 1
    keep = mask(bits // 8) & ~(fm << lsb)
    if ins:
        if bits == 64:
            return lambda j, k, d: (d & keep) | ((j & fm) << lsb)
        return lambda j, k, d: _sx32((d & keep) | ((j & fm) << lsb))
    if bits == 64:
        return lambda j, k, d: (j >> lsb) & fm
    return lambda j, k, d: _sx32((j >> lsb) & fm)


def _t0_shift(w: int) -> Any:
    """Shifts and rotates as a function of (rj, rk, rd) values (see _ov_shift)."""
    op15, op16 = w >> 15, w >> 16
    if op16 in (0x41, 0x45, 0x49, 0x4D):
        kind, wide, imm = {0x41: "sll", 0x45: "srl", 0x49: "sra", 0x4D: "rot"}[op16], True, \
            (w >> 10) & 63
    elif op15 in (0x81, 0x89, 0x91, 0x99):
        kind, wide, imm = {0x81: "sll", 0x89: "srl", 0x91: "sra", 0x99: "rot"}[op15], False, \
            (w >> 10) & 31
    else:
        (kind, wide), imm = {0x2E: ("sll", False), 0x2F: ("srl", False), 0x30: ("sra", False),
                             0x31: ("sll", True), 0x32: ("srl", True), 0x33: ("sra", True),
                             0x36: ("rot", False), 0x37: ("rot", True)}[op15], None
    bits = 64 if wide else 32
    m = (1 << bits) - 1
    s = 1 << (bits - 1)

    def amount(k: int) -> int:
        return imm if imm is not None else k & (bits - 1)

    if kind == "sll":
        def f(x: int, n: int) -> int:
            return (x << n) & m
    elif kind == "srl":
        def f(x: int, n: int) -> int:
            return x >> n
    elif kind == "sra":
        def f(x: int, n: int) -> int:
            return (((x ^ s) - s) >> n) & m
    else:
        def f(x: int, n: int) -> int:
            return ((x >> n) | (x << (bits - n))) & m
    if wide:
        return lambda j, k, d: f(j, amount(k))
    return lambda j, k, d: _sx32(f(j & m, amount(k)))


def _ov_bytepick(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, rk = _fields(w)
    if (w >> 18) == 0x3:  # bytepick.d: rd = (rk:rj) >> (64 - 8*sa3)
        sa = (w >> 15) & 7
        if sa == 0:
            v = _g(em, rk)
        else:
            v = (f"((({_g(em, rk)} << {8 * sa}) | ({_g(em, rj)} >> {64 - 8 * sa})) "
                 f"& {M64:#x})")
        _s(em, rd, v)
    else:
        sa = (w >> 15) & 3
        rkw = f"({_g(em, rk)} & 0xffffffff)"
        rjw = f"({_g(em, rj)} & 0xffffffff)"
        v = rkw if sa == 0 else f"((({rkw} << {8 * sa}) | ({rjw} >> {32 - 8 * sa})) & 0xffffffff)"
        _s(em, rd, _sext(v, 32))


M32 = 0xFFFFFFFF


def _rot32(x: str, n: str) -> str:
    return f"((({x} >> {n}) | ({x} << (32 - {n}))) & {M32:#x})"


def _rot64(x: str, n: str) -> str:
    return f"((({x} >> {n}) | ({x} << (64 - {n}))) & {M64:#x})"


def _ov_shift(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    """Shifts and rotates (SLEIGH masks .d immediates to 5 bits and rotates arithmetically)."""
    rd, rj, rk = _fields(w)
    op15, op16 = w >> 15, w >> 16
    if op16 in (0x41, 0x45, 0x49, 0x4D):  # slli.d srli.d srai.d rotri.d
        kind, wide, n = {0x41: "sll", 0x45: "srl", 0x49: "sra", 0x4D: "rot"}[op16], True, \
            str((w >> 10) & 63)
    elif op15 in (0x81, 0x89, 0x91, 0x99):  # slli.w srli.w srai.w rotri.w
        kind, wide, n = {0x81: "sll", 0x89: "srl", 0x91: "sra", 0x99: "rot"}[op15], False, \
            str((w >> 10) & 31)
    else:  # sll.w srl.w sra.w sll.d srl.d sra.d rotr.w rotr.d (register amount)
        kind, wide = {0x2E: ("sll", False), 0x2F: ("srl", False), 0x30: ("sra", False),
                      0x31: ("sll", True), 0x32: ("srl", True), 0x33: ("sra", True),
                      0x36: ("rot", False), 0x37: ("rot", True)}[op15]
        n = em.simple(f"({_g(em, rk)} & {63 if wide else 31})")
    if wide:
        x = _g(em, rj)
        v = {"sll": f"(({x} << {n}) & {M64:#x})", "srl": f"({x} >> {n})",
             "sra": f"(((({x} ^ {1 << 63:#x}) - {1 << 63:#x}) >> {n}) & {M64:#x})",
             "rot": _rot64(em.simple(x), n)}[kind]
        _s(em, rd, v)
    else:
        x = em.simple(f"({_g(em, rj)} & {M32:#x})")
        v = {"sll": f"(({x} << {n}) & {M32:#x})", "srl": f"({x} >> {n})",
             "sra": f"(((({x} ^ 0x80000000) - 0x80000000) >> {n}) & {M32:#x})",
             "rot": _rot32(x, n)}[kind]
        _s(em, rd, _sext(v, 32))


def _ov_revh(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    rd, rj, _ = _fields(w)
    x = em.simple(_g(em, rj))
    if (w >> 10) == 0x10:  # revh.2w: swap the halfwords of each word
        v = f"((({x} & 0xffff0000ffff) << 16) | (({x} >> 16) & 0xffff0000ffff))"
    else:  # revh.d: reverse the four halfwords
        v = (f"((({x} & 0xffff) << 48) | ((({x} >> 16) & 0xffff) << 32) | "
             f"((({x} >> 32) & 0xffff) << 16) | ({x} >> 48))")
    _s(em, rd, v)


FPR = 0x1000  # register-space offset of f0 (FPRs are the low halves of 32-byte LASX registers)
FPR_STRIDE = 0x20
FCSR_RM = "(({fcsr} >> 8) & 3)"


def _fpr(em: BlockEmitter, n: int, size: int) -> str:
    return em.rd_reg(FPR + FPR_STRIDE * n, size)


def _rm(em: BlockEmitter) -> str:
    return FCSR_RM.format(fcsr=em.rd_reg(0x48, 4))


def _ov_ftint(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    """ftint{rm,rp,rz,rne,}.{w,l}.{s,d} (SLEIGH truncates or leaves round_even unimplemented)."""
    fd, fj = w & 31, (w >> 5) & 31
    op10 = w >> 10
    isize = 4 if op10 & 1 else 8
    osize = 4 if op10 & 0xF in (0x1, 0x2) else 8
    mode = {0x468: "3", 0x469: "2", 0x46A: "1", 0x46B: "0"}.get(op10 >> 4) or _rm(em)
    em.wr_reg(FPR + FPR_STRIDE * fd, osize, f"FTINT({_fpr(em, fj, isize)}, {isize}, {osize}, {mode})")


def _ov_ffint(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    """ffint.{s,d}.{w,l} (SLEIGH's ffint.s.l converts fd instead of fj)."""
    fd, fj = w & 31, (w >> 5) & 31
    op10 = w >> 10
    osize = 4 if op10 in (0x4744, 0x4746) else 8
    isize = 4 if op10 in (0x4744, 0x4748) else 8
    em.wr_reg(FPR + FPR_STRIDE * fd, osize, f"FFINT({_fpr(em, fj, isize)}, {isize}, {osize}, {_rm(em)})")


def _ov_frint(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    fd, fj = w & 31, (w >> 5) & 31
    size = 4 if (w >> 10) == 0x4791 else 8
    em.wr_reg(FPR + FPR_STRIDE * fd, size, f"FRINT({_fpr(em, fj, size)}, {size}, {_rm(em)})")


def _ov_fminmax(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    """fmax/fmin/fmaxa/fmina.{s,d}: IEEE maxNum/minNum, not the host's max/min."""
    fd, fj, fk = w & 31, (w >> 5) & 31, (w >> 10) & 31
    op15 = w >> 15
    size = 4 if op15 & 1 else 8
    kind = {0x211: "max", 0x215: "min", 0x219: "maxa", 0x21D: "mina"}[(op15 & ~3) | 1]
    em.wr_reg(FPR + FPR_STRIDE * fd, size,
              f"FMINMAX({_fpr(em, fj, size)}, {_fpr(em, fk, size)}, {size}, {kind!r})")


FCC = 0x40  # register-space offset of fcc0 (one byte each)


def _ov_fcmp(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    """fcmp.cond.{s,d} (SLEIGH gets most conditions wrong)."""
    cd, fj, fk, cond = w & 7, (w >> 5) & 31, (w >> 10) & 31, (w >> 15) & 31
    size = 4 if w >> 20 == 0x0C1 else 8
    em.wr_reg(FCC + cd, 1, f"FCMP({_fpr(em, fj, size)}, {_fpr(em, fk, size)}, {size}, {cond})")


def _ov_movcf2gr(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    """movcf2gr rd, cj: rd = fcc[cj], zero-extended (SLEIGH keeps rd's upper bits)."""
    _s(em, w & 31, f"({em.rd_reg(FCC + ((w >> 5) & 7), 1)} & 1)")


def _ov_fma(arch: LoongArch64, em: BlockEmitter, w: int) -> None:
    """f[n]madd / f[n]msub .{s,d}: fused (SLEIGH adds the register number fa, unrounded)."""
    fd, fj, fk, fa = w & 31, (w >> 5) & 31, (w >> 10) & 31, (w >> 15) & 31
    top = w >> 20
    size = 4 if top & 1 else 8
    op = (1 if top & 4 else 0) | (2 if top & 8 else 0)  # fmsub: bit 2; fnm*: bit 3
    em.wr_reg(FPR + FPR_STRIDE * fd, size,
              f"FMA({_fpr(em, fj, size)}, {_fpr(em, fk, size)}, {_fpr(em, fa, size)}, {size}, {op})")


def _dispatch(w: int) -> Any:
    if w >> 24 == 0x04:
        return _ov_csr
    op15 = w >> 15
    if op15 == 0x54:
        return _ov_break
    if op15 == 0x56:
        return _ov_syscall
    if w == 0x06483800:
        return _ov_ertn
    if op15 == 0xC91:
        return _ov_idle
    if op15 == 0x70E5:
        return _ov_ibar
    if op15 == 0x70E4:
        return _ov_dbar
    top = w >> 24
    if top in (0x20, 0x22):
        return _ov_ll
    if top in (0x21, 0x23):
        return _ov_sc
    if 0x70C0 <= op15 <= 0x70E3:
        return _ov_am
    if 0x70F0 <= op15 <= 0x70FF:
        return _ov_bound_ldst
    if op15 in (0x2, 0x3) and w & 31 == 0:
        return _ov_asrt
    if (w >> 10) in (0x18, 0x19, 0x1A):
        return _ov_rdtime
    if 0x48 <= op15 <= 0x4F:
        return _ov_crc
    if w >> 22 in (0x2, 0x3) or w >> 21 == 0x3:
        return _ov_bstr
    if w >> 18 == 0x3 or w >> 17 == 0x4:
        return _ov_bytepick
    if (w >> 16) in (0x41, 0x45, 0x49, 0x4D) or op15 in (0x81, 0x89, 0x91, 0x99) or \
            op15 in (0x2E, 0x2F, 0x30, 0x31, 0x32, 0x33, 0x36, 0x37):
        return _ov_shift
    if (w >> 10) in (0x10, 0x11):
        return _ov_revh
    op10 = w >> 10
    if 0x4681 <= op10 <= 0x46CA and op10 & 0xF in (0x1, 0x2, 0x9, 0xA):
        return _ov_ftint
    if op10 in (0x4744, 0x4746, 0x4748, 0x474A):
        return _ov_ffint
    if op10 in (0x4791, 0x4792):
        return _ov_frint
    if op15 in (0x211, 0x212, 0x215, 0x216, 0x219, 0x21A, 0x21D, 0x21E):
        return _ov_fminmax
    if w >> 20 in (0x0C1, 0x0C2) and not (w >> 3) & 3:
        return _ov_fcmp
    if op10 == 0x4537:
        return _ov_movcf2gr
    if w >> 20 in (0x081, 0x082, 0x085, 0x086, 0x089, 0x08A, 0x08D, 0x08E):
        return _ov_fma
    return None


_OVERRIDES = {name: f for name, f in globals().items() if name.startswith("_ov_")}


def _fclass(v: int, size: int) -> int:
    """FCLASS.S/D result bits: sNaN, qNaN, -inf, -normal, -subnormal, -0, +inf, +normal, ..."""
    bits = 8 * size
    ebits = 8 if size == 4 else 11
    mbits = bits - 1 - ebits
    sign = (v >> (bits - 1)) & 1
    exp = (v >> mbits) & ((1 << ebits) - 1)
    man = v & ((1 << mbits) - 1)
    if exp == (1 << ebits) - 1:
        if man:
            return 0x2 if man >> (mbits - 1) else 0x1
        return 0x40 if not sign else 0x4
    base = 6 if not sign else 2
    if exp == 0:
        return (1 << (base + 3)) if man == 0 else (1 << (base + 2))
    return 1 << (base + 1)

