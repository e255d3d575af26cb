"""The LoongArch privileged model of the P-code engine: exceptions, ertn, timer, idle, CSRs."""

from __future__ import annotations

import sys

import la_isa as A
import pytest
from unicorn import UcError
from unicorn.unicorn_const import (
    UC_ERR_EXCEPTION,
    UC_ERR_INSN_INVALID,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
)

from kprobesim.engine.pcode import PcodeEngine, UnimplementedUserOp
from kprobesim.engine.pcode import loongarch_const as K

pytestmark = pytest.mark.usefixtures("engine_tier")  # each test on both engine tiers

BASE = 0x10000
VEC = 0x20000
DONE = 0x30000
CSR = K.LA_REG_CSR_BASE


def r(n: int) -> int:
    return K.LA_REG_R0 + n


def make(words: list[int], handler: list[int] | None = None) -> PcodeEngine:
    e = PcodeEngine("loongarch64")
    e.mem_map(0, 0x100000)
    e.mem_write(BASE, A.code(words))
    if handler is not None:
        e.mem_write(VEC, A.code(handler))
        e.reg_write(CSR + K.CSR_EENTRY, VEC)
    return e


def csr(e: PcodeEngine, n: int) -> int:
    return e.reg_read(CSR + n)


# handler: save ESTAT/ERA/BADV/PRMD/CRMD into r20..r24, then jump to DONE
SAVE_HANDLER = [
    A.csrrd(20, K.CSR_ESTAT), A.csrrd(21, K.CSR_ERA), A.csrrd(22, K.CSR_BADV),
    A.csrrd(23, K.CSR_PRMD), A.csrrd(24, K.CSR_CRMD),
    *A.li(25, DONE), A.jirl(0, 25, 0),
]


def run_to_done(e: PcodeEngine, start: int = BASE, **kw: int) -> None:
    e.emu_start(start, DONE, **kw)
    assert e.reg_read(K.LA_REG_PC) == DONE


def estat_fields(v: int) -> tuple[int, int]:
    return (v >> 16) & 0x3F, (v >> 22) & 0x1FF


class TestExceptionEntry:
    def test_break_architectural(self) -> None:
        e = make([A.NOP, A.brk(7), A.NOP], SAVE_HANDLER)
        e.reg_write(CSR + K.CSR_CRMD, 0x8 | 0x4 | 0x0)  # DA, IE=1, PLV0
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_BRK, 0)
        assert e.reg_read(r(21)) == BASE + 4  # ERA = the break
        prmd = e.reg_read(r(23))
        assert prmd & 7 == 0x4  # PPLV = 0, PIE = 1
        assert e.reg_read(r(24)) & 7 == 0  # PLV0, IE cleared
        assert csr(e, K.CSR_BADI) == A.brk(7)

    def test_syscall_from_plv3_saves_pplv(self) -> None:
        e = make([A.syscall(0)], SAVE_HANDLER)
        e.reg_write(CSR + K.CSR_CRMD, 0x8 | 0x3)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_SYS, 0)
        assert e.reg_read(r(23)) & 7 == 3
        assert e.reg_read(r(24)) & 3 == 0

    def test_ine(self) -> None:
        e = make([A.NOP, 0xFFFFFFFF], SAVE_HANDLER)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_INE, 0)
        assert e.reg_read(r(21)) == BASE + 4

    def test_ale_ll_and_am(self) -> None:
        e = make([*A.li(5, 0x5002), A.i14("ll.w", 6, 5, 0)], SAVE_HANDLER)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_ALE, 0)
        assert e.reg_read(r(22)) == 0x5002
        e = make([*A.li(5, 0x5004), A.am("amadd.d", 6, 7, 5)], SAVE_HANDLER)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_ALE, 0)
        assert e.reg_read(r(22)) == 0x5004
        assert e.reg_read(r(21)) == BASE + 16

    def test_misaligned_plain_load_is_allowed(self) -> None:
        e = make([*A.li(5, 0x5003), A.i12("ld.d", 6, 5, 0), *A.li(25, DONE), A.jirl(0, 25, 0)])
        e.mem_write(0x5003, bytes(range(1, 9)))
        run_to_done(e)
        assert e.reg_read(r(6)) == 0x0807060504030201

    def test_adef_misaligned_jump(self) -> None:
        e = make([*A.li(5, BASE + 0x102), A.jirl(0, 5, 0)], SAVE_HANDLER)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_ADE, 0)
        assert e.reg_read(r(21)) == BASE + 0x102
        assert e.reg_read(r(22)) == BASE + 0x102

    def test_ipe_in_plv3(self) -> None:
        e = make([A.csrrd(4, K.CSR_ESTAT)], SAVE_HANDLER)
        e.reg_write(CSR + K.CSR_CRMD, 0x8 | 0x3)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_IPE, 0)
        for w in (A.ERTN, A.idle(), 0x06482800):  # tlbsrch
            e = make([w], SAVE_HANDLER)
            e.reg_write(CSR + K.CSR_CRMD, 0x8 | 0x3)
            run_to_done(e)
            assert estat_fields(e.reg_read(r(20)))[0] == K.EXC_IPE

    def test_bce(self) -> None:
        e = make([*A.li(5, 0x5000), A.r3("or", 6, 0, 0), A.r3("ldle.d", 7, 5, 6)], SAVE_HANDLER)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_BCE, 0)
        assert e.reg_read(r(22)) == 0x5000

    def test_fpd_when_fp_disabled(self) -> None:
        fadd_d = 0x01010000 | (2 << 10) | (1 << 5) | 0  # fadd.d f0, f1, f2
        e = make([fadd_d], SAVE_HANDLER)
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_FPD, 0)
        e = make([fadd_d, *A.li(25, DONE), A.jirl(0, 25, 0)])
        e.reg_write(CSR + K.CSR_EUEN, 1)
        e.reg_write(K.LA_REG_F1, 0x3FF0000000000000)  # 1.0
        e.reg_write(K.LA_REG_F2, 0x4000000000000000)  # 2.0
        run_to_done(e)
        assert e.reg_read(K.LA_REG_F0) == 0x4008000000000000  # 3.0

    def test_vectored_entry(self) -> None:
        e = make([A.syscall(0)])
        e.mem_write(VEC + (K.EXC_SYS << 9), A.code([*A.li(25, DONE), A.jirl(0, 25, 0)]))
        e.reg_write(CSR + K.CSR_EENTRY, VEC)
        e.reg_write(CSR + K.CSR_ECFG, 7 << 16)  # VS = 7: 512-byte vectors
        run_to_done(e)

    def test_raise_exception_api(self) -> None:
        e = make([A.NOP])
        e.reg_write(CSR + K.CSR_EENTRY, VEC)
        e.reg_write(CSR + K.CSR_CRMD, 0x8 | 0x4 | 0x3)
        e.reg_write(K.LA_REG_PC, 0x1234)
        e.raise_exception(K.EXC_ALE, 0, 0x999)
        assert e.reg_read(K.LA_REG_PC) == VEC
        assert csr(e, K.CSR_ERA) == 0x1234
        assert csr(e, K.CSR_PRMD) & 7 == 7
        assert csr(e, K.CSR_CRMD) & 7 == 0
        assert estat_fields(csr(e, K.CSR_ESTAT)) == (K.EXC_ALE, 0)
        assert csr(e, K.CSR_BADV) == 0x999


class TestNoVector:
    def test_exception_without_vector_or_hook_is_an_error(self) -> None:
        e = make([A.NOP, A.brk(0)])
        with pytest.raises(UcError) as ex:
            e.emu_start(BASE, DONE)
        assert ex.value.errno == UC_ERR_EXCEPTION
        assert e.reg_read(K.LA_REG_PC) == BASE + 4

    def test_invalid_without_anything_is_insn_invalid(self) -> None:
        e = make([A.NOP, 0xFFFFFFFF])
        with pytest.raises(UcError) as ex:
            e.emu_start(BASE, DONE)
        assert ex.value.errno == UC_ERR_INSN_INVALID
        assert e.reg_read(K.LA_REG_PC) == BASE + 4
        assert e.icount() == 2


class TestIntrHook:
    def test_break_reported_with_pc_at_break(self) -> None:
        e = make([A.NOP, A.brk(0xA), A.i12("addi.d", 4, 4, 1), *A.li(25, DONE), A.jirl(0, 25, 0)])
        seen = []

        def hook(uc: PcodeEngine, intno: int, ud: object) -> None:
            seen.append((intno, uc.reg_read(K.LA_REG_PC), uc.last_exception))
            uc.reg_write(K.LA_REG_PC, uc.reg_read(K.LA_REG_PC) + 4)

        e.hook_add(UC_HOOK_INTR, hook)
        run_to_done(e)
        assert seen == [(K.EXC_BRK, BASE + 4, (K.EXC_BRK, 0, None))]
        assert e.reg_read(r(4)) == 1

    def test_break_and_syscall_hooks_run_outside_exception_handling(self) -> None:
        """A break or syscall leaves its block by returning the trap, not raising it (an
        exception per probe hit cost several times the rest of the engine's trap path): its
        hook runs with no exception being handled, and time counts as on the raising path."""
        e = make([A.NOP, A.brk(0xA), A.NOP, A.syscall(0), A.NOP])
        seen = []

        def hook(uc: PcodeEngine, intno: int, ud: object) -> None:
            seen.append((intno, uc.reg_read(K.LA_REG_PC), sys.exc_info()[0], uc.icount(), uc.vtime))
            uc.reg_write(K.LA_REG_PC, uc.reg_read(K.LA_REG_PC) + 4)

        e.hook_add(UC_HOOK_INTR, hook)
        e.emu_start(BASE, BASE + 20)
        assert seen == [(K.EXC_BRK, BASE + 4, None, 2, 1), (K.EXC_SYS, BASE + 12, None, 4, 2)]
        assert (e.icount(), e.vtime) == (5, 3)

    def test_hook_break_fast_stands_in_for_its_hook_while_it_is_the_only_one(self) -> None:
        """``hook_break_fast``: a break calls ``fn(pc)`` in place of the registered INTR hook
        while that hook is the only one; another hook, or another exception, goes the Unicorn
        way (every hook called)."""
        e = make([A.brk(0xA), A.syscall(0), A.brk(0xA), A.NOP])
        calls: list[tuple[str, int, int]] = []

        def step(uc: PcodeEngine) -> None:
            uc.reg_write(K.LA_REG_PC, uc.reg_read(K.LA_REG_PC) + 4)

        def hook(uc: PcodeEngine, intno: int, ud: object) -> None:
            calls.append(("hook", intno, uc.reg_read(K.LA_REG_PC)))
            step(uc)

        def fast(pc: int) -> None:
            calls.append(("fast", e.last_exception[0], pc))
            step(e)

        handle = e.hook_add(UC_HOOK_INTR, hook)
        e.hook_break_fast(K.EXC_BRK, handle, fast)
        e.emu_start(BASE, BASE + 8)
        assert calls == [("fast", K.EXC_BRK, BASE), ("hook", K.EXC_SYS, BASE + 4)]
        calls.clear()
        e.hook_add(UC_HOOK_INTR, lambda uc, n, ud: calls.append(("other", n, uc.reg_read(K.LA_REG_PC))))
        e.emu_start(BASE + 8, BASE + 16)
        assert calls == [("hook", K.EXC_BRK, BASE + 8), ("other", K.EXC_BRK, BASE + 12)]
        assert e.icount() == 2

    def test_advance_vtime_is_vtime_plus(self) -> None:
        """``advance_vtime(n)`` (a probe hit's simulated instruction) is ``vtime += n``."""
        e = make([A.NOP, A.brk(0), A.NOP, A.NOP])

        def hook(uc: PcodeEngine, intno: int, ud: object) -> None:
            uc.advance_vtime(5)
            uc.reg_write(K.LA_REG_PC, BASE + 8)

        e.hook_add(UC_HOOK_INTR, hook)
        e.emu_start(BASE, BASE + 16)
        assert (e.icount(), e.vtime) == (4, 8)
        e.advance_vtime(10)
        assert e.vtime == 18

    def test_hook_delivers_into_guest(self) -> None:
        e = make([A.syscall(3)], SAVE_HANDLER)
        e.hook_add(UC_HOOK_INTR, lambda uc, n, ud: uc.raise_exception(n))
        run_to_done(e)
        assert estat_fields(e.reg_read(r(20))) == (K.EXC_SYS, 0)
        assert e.reg_read(r(21)) == BASE

    def test_hook_stop(self) -> None:
        e = make([A.NOP, A.NOP, A.brk(0), A.NOP])
        e.hook_add(UC_HOOK_INTR, lambda uc, n, ud: uc.emu_stop())
        e.emu_start(BASE, DONE)
        assert e.reg_read(K.LA_REG_PC) == BASE + 8
        assert e.icount() == 3  # the break started

    def test_ale_details(self) -> None:
        e = make([*A.li(5, 0x5006), A.i14("sc.d", 6, 5, 0)])
        got = []
        e.hook_add(UC_HOOK_INTR, lambda uc, n, ud: (got.append((n, uc.last_exception)),
                                                    uc.emu_stop()))
        e.emu_start(BASE, DONE)
        assert got == [(K.EXC_ALE, (K.EXC_ALE, 0, 0x5006))]

    def test_invalid_hooks(self) -> None:
        e = make([0xFFFFFFFF, *A.li(25, DONE), A.jirl(0, 25, 0)])

        def inv(uc: PcodeEngine, ud: object) -> bool:
            uc.reg_write(K.LA_REG_PC, uc.reg_read(K.LA_REG_PC) + 4)
            return True

        e.hook_add(UC_HOOK_INSN_INVALID, inv)
        run_to_done(e)
        e2 = make([0xFFFFFFFF])
        e2.hook_add(UC_HOOK_INTR, lambda uc, n, ud: (uc.last_exception, uc.emu_stop()))
        e2.emu_start(BASE, DONE)
        assert e2.last_exception == (K.EXC_INE, 0, None)


class TestErtn:
    def test_ertn_restores_plv_ie_and_pc(self) -> None:
        e = make([A.csrwr(5, K.CSR_PRMD), A.csrwr(6, K.CSR_ERA), A.ERTN])
        e.mem_write(0x4000, A.code([A.NOP, A.NOP]))
        e.reg_write(r(5), 0x7)  # PPLV=3, PIE=1
        e.reg_write(r(6), 0x4000)
        e.reg_write(K.LA_REG_LLBIT, 1)
        e.emu_start(BASE, 0x4004)
        assert csr(e, K.CSR_CRMD) & 7 == 7
        assert e.reg_read(K.LA_REG_LLBIT) == 0

    def test_exception_then_ertn_round_trip(self) -> None:
        handler = [A.csrrd(20, K.CSR_ERA), A.i12("addi.d", 20, 20, 4),
                   A.csrwr(20, K.CSR_ERA), A.ERTN]
        e = make([A.syscall(0), A.i12("addi.d", 4, 0, 42), *A.li(25, DONE), A.jirl(0, 25, 0)],
                 handler)
        e.reg_write(CSR + K.CSR_CRMD, 0x8 | 0x4 | 0x3)
        run_to_done(e)
        assert e.reg_read(r(4)) == 42
        assert csr(e, K.CSR_CRMD) & 7 == 7


def timer_program(n: int, periodic: bool = True) -> list[int]:
    """Enable the timer (InitVal n) and TI in ECFG, IE=1, then spin incrementing r4."""
    tcfg = n | 1 | (2 if periodic else 0)
    return [
        *A.li(5, tcfg), A.csrwr(5, K.CSR_TCFG),
        *A.li(6, 1 << 11), A.csrwr(6, K.CSR_ECFG),
        *A.li(7, 0x4), A.csrxchg(7, 7, K.CSR_CRMD),
        A.i12("addi.d", 4, 4, 1),
        A.br26("b", -4),
    ]


TIMER_HANDLER = [
    A.csrrd(20, K.CSR_ESTAT), A.i12("addi.d", 21, 21, 1),
    *A.li(22, 1), A.csrwr(22, K.CSR_TICLR), A.ERTN,
]


class TestTimer:
    def test_timer_interrupt_deterministic(self) -> None:
        runs = []
        for _ in range(2):
            e = make(timer_program(1000), TIMER_HANDLER)
            e.emu_start(BASE, DONE, count=5000)
            runs.append((e.reg_read(r(4)), e.reg_read(r(21)), e.icount()))
            assert estat_fields(e.reg_read(r(20)))[0] == K.EXC_INT
            assert e.reg_read(r(20)) & (1 << 11)
            assert csr(e, K.CSR_ESTAT) & (1 << 11) == 0  # cleared by TICLR
        assert runs[0] == runs[1]
        assert runs[0][2] == 5000
        assert 4 <= runs[0][1] <= 5

    def test_tval_counts_down_per_instruction(self) -> None:
        e = make([*A.li(5, 1000 | 1), A.csrwr(5, K.CSR_TCFG), A.NOP, A.NOP,
                  A.csrrd(6, K.CSR_TVAL)])
        e.emu_start(BASE, BASE + 4 * 8)
        # TCFG written by the 5th instruction; TVAL read by the 8th: 3 instructions later
        assert e.reg_read(r(6)) == 1000 - 3

    def test_oneshot_and_masked(self) -> None:
        e = make(timer_program(100, periodic=False), TIMER_HANDLER)
        e.emu_start(BASE, DONE, count=3000)
        assert e.reg_read(r(21)) == 1
        # with IE=0 the interrupt stays pending in ESTAT.IS
        prog = [*A.li(5, 50 | 1), A.csrwr(5, K.CSR_TCFG), *A.li(6, 1 << 11),
                A.csrwr(6, K.CSR_ECFG), A.i12("addi.d", 4, 4, 1), A.br26("b", -4)]
        e = make(prog, TIMER_HANDLER)
        e.emu_start(BASE, DONE, count=500)
        assert csr(e, K.CSR_ESTAT) & (1 << 11)
        assert e.reg_read(r(21)) == 0

    def test_rdtime_is_virtual(self) -> None:
        e = make([A.NOP, A.NOP, A.r2("rdtime.d", 4, 5), A.NOP, A.r2("rdtime.d", 6, 7)])
        e.reg_write(CSR + K.CSR_TID, 0x77)
        e.emu_start(BASE, BASE + 20)
        assert e.reg_read(r(6)) - e.reg_read(r(4)) == 2
        assert e.reg_read(r(4)) == 2
        assert e.reg_read(r(5)) == 0x77


class TestIdle:
    def test_idle_advances_to_timer(self) -> None:
        prog = [*A.li(5, 100000 | 1), A.csrwr(5, K.CSR_TCFG), *A.li(6, 1 << 11),
                A.csrwr(6, K.CSR_ECFG), *A.li(7, 4), A.csrxchg(7, 7, K.CSR_CRMD),
                A.idle(0), *A.li(25, DONE), A.jirl(0, 25, 0)]
        e = make(prog, TIMER_HANDLER)
        run_to_done(e)
        assert e.reg_read(r(21)) == 1
        assert e.vtime >= 100000
        assert e.icount() < 100

    def test_idle_forever_halts(self) -> None:
        e = make([A.NOP, A.idle(0), A.NOP])
        e.emu_start(BASE, DONE)
        assert e.halted
        assert e.reg_read(K.LA_REG_PC) == BASE + 8


class TestCsr:
    def test_write_masks(self) -> None:
        e = make([A.csrwr(4, K.CSR_ESTAT), A.csrwr(5, K.CSR_ECFG), A.csrwr(6, K.CSR_CPUID),
                  A.csrwr(7, K.CSR_EENTRY), A.csrwr(8, K.CSR_PRMD), A.NOP])
        for i in range(4, 9):
            e.reg_write(r(i), (1 << 64) - 1)
        e.emu_start(BASE, BASE + 20)
        assert csr(e, K.CSR_ESTAT) == 0x3
        assert csr(e, K.CSR_ECFG) == 0x71BFF
        assert csr(e, K.CSR_CPUID) == 0
        assert csr(e, K.CSR_EENTRY) == ((1 << 64) - 1) & ~0xFFF
        assert csr(e, K.CSR_PRMD) == 0xF

    def test_csrxchg_and_save_regs(self) -> None:
        e = make([A.csrwr(4, K.CSR_SAVE3), A.csrxchg(5, 6, K.CSR_SAVE3),
                  A.csrrd(7, K.CSR_SAVE3), A.NOP])
        e.reg_write(r(4), 0xF0F0)
        e.reg_write(r(5), 0x0FFF)
        e.reg_write(r(6), 0x00FF)
        e.emu_start(BASE, BASE + 12)
        assert e.reg_read(r(5)) == 0xF0F0
        assert e.reg_read(r(7)) == 0xF0FF

    def test_cpucfg(self) -> None:
        e = make([A.r2("cpucfg", 4, 5), A.r2("cpucfg", 6, 7), A.NOP])
        e.reg_write(r(5), 1)
        e.reg_write(r(7), 4)
        e.emu_start(BASE, BASE + 8)
        assert e.reg_read(r(4)) & 3 == 2  # LA64
        assert e.reg_read(r(4)) & (1 << 20)  # UAL
        assert e.reg_read(r(6)) > 0

    def test_iocsr(self) -> None:
        e = make([0x06480800 | (5 << 5) | 4, 0x06481800 | (5 << 5) | 6, A.NOP])  # rd.w, wr.w
        e.reg_write(r(5), 0x20)
        e.reg_write(r(6), 0xAB)
        e.emu_start(BASE, BASE + 8)
        assert e.reg_read(r(4)) == 0
        writes = []
        e.arch.iocsr_read = lambda a, s: 0x1234
        e.arch.iocsr_write = lambda a, s, v: writes.append((a, s, v))
        e.emu_start(BASE, BASE + 8)
        assert e.reg_read(r(4)) == 0x1234
        assert writes == [(0x20, 4, 0xAB)]

    def test_set_irq_hwi(self) -> None:
        e = make([A.i12("addi.d", 4, 4, 1), A.br26("b", -4)], TIMER_HANDLER)
        e.reg_write(CSR + K.CSR_ECFG, 1 << 2)
        e.reg_write(CSR + K.CSR_CRMD, 0x8 | 0x4)
        e.emu_start(BASE, DONE, count=100)
        assert e.reg_read(r(21)) == 0
        e.arch.set_irq(K.INT_HWI0)
        e.emu_start(e.reg_read(K.LA_REG_PC), DONE, count=3)
        assert e.reg_read(r(20)) & (1 << 2)

    def test_unimplemented_userop_is_loud(self) -> None:
        e = make([0x002A8000])  # dbcl 0
        with pytest.raises(UnimplementedUserOp, match="dbcl"):
            e.emu_start(BASE, DONE)


class TestDirectMapWindows:
    def test_pg_mode_through_dmw(self) -> None:
        """Code and data reached through a DMW window (VSEG 9), as a Linux-style kernel runs."""
        win = 0x9000_0000_0000_0000
        prog = [*A.li(5, win + 0x5000), A.i12("ld.d", 6, 5, 0), A.i12("addi.d", 6, 6, 1),
                A.i12("st.d", 6, 5, 8), *A.li(25, win + DONE), A.jirl(0, 25, 0)]
        e = make(prog)
        e.mem_write(0x5000, (41).to_bytes(8, "little"))
        e.reg_write(CSR + K.CSR_DMW0, win | 0x11)  # PLV0, MAT=1
        e.reg_write(CSR + K.CSR_CRMD, 0x10)  # PG=1, DA=0
        e.emu_start(win + BASE, win + DONE)
        assert e.reg_read(r(6)) == 42
        assert int.from_bytes(e.mem_read(0x5008, 8), "little") == 42
        assert int.from_bytes(e.mem_read(win + 0x5008, 8), "little") == 42
        # a write through the physical alias invalidates the window's translation
        e.mem_write(BASE + 20, A.code([A.i12("addi.d", 6, 6, 100)]))
        e.emu_start(win + BASE, win + DONE)
        assert e.reg_read(r(6)) == 141

    def test_pg_mode_without_window_is_unmapped(self) -> None:
        e = make([A.NOP])
        e.reg_write(CSR + K.CSR_CRMD, 0x10)
        from unicorn.unicorn_const import UC_ERR_FETCH_UNMAPPED

        with pytest.raises(UcError) as ex:
            e.emu_start(0x9000_0000_0000_0000 + BASE, 0)
        assert ex.value.errno == UC_ERR_FETCH_UNMAPPED


class TestMisc:
    def test_context_restores_timer(self) -> None:
        e = make([*A.li(5, 1000 | 1), A.csrwr(5, K.CSR_TCFG), A.NOP, A.NOP, A.NOP])
        e.emu_start(BASE, BASE + 24)
        tval = csr(e, K.CSR_TVAL)
        ctx = e.context_save()
        e.emu_start(BASE + 24, BASE + 32)
        assert csr(e, K.CSR_TVAL) == tval - 2
        e.context_restore(ctx)
        assert csr(e, K.CSR_TVAL) == tval

    def test_llbctl_and_sc(self) -> None:
        e = make([*A.li(5, 0x5000), A.i14("ll.d", 6, 5, 0), A.csrrd(7, K.CSR_LLBCTL),
                  *A.li(8, 2), A.csrwr(8, K.CSR_LLBCTL), A.i14("sc.d", 9, 5, 0),
                  A.i14("ll.d", 6, 5, 0), A.i14("sc.d", 10, 5, 0), A.NOP])
        e.emu_start(BASE, BASE + 4 * 15)
        assert e.reg_read(r(7)) & 1 == 1
        assert e.reg_read(r(9)) == 0  # LLbit cleared through LLBCTL.WCLLB
        assert e.reg_read(r(10)) == 1

    def test_trapping_instruction_counts(self) -> None:
        e = make([A.NOP, A.NOP, *A.li(5, 0x5001), A.i14("ll.w", 6, 5, 0)])
        e.hook_add(UC_HOOK_INTR, lambda uc, n, ud: uc.emu_stop())
        e.emu_start(BASE, 0)
        assert e.icount() == 7
        assert e.reg_read(K.LA_REG_PC) == BASE + 24

    def test_csr_write_with_zero_destination(self) -> None:
        """csrwr/csrxchg with rd = $zero still write the CSR (regression)."""
        e = make([A.csrwr(5, K.CSR_SAVE0), A.csrwr(0, K.CSR_SAVE0), A.csrrd(6, K.CSR_SAVE0),
                  A.csrwr(7, K.CSR_SAVE1), A.csrxchg(0, 8, K.CSR_SAVE1), A.csrrd(9, K.CSR_SAVE1),
                  A.NOP])
        e.reg_write(r(5), 0x1234)
        e.reg_write(r(7), 0xFF)
        e.reg_write(r(8), 0x0F)
        e.emu_start(BASE, BASE + 24)
        assert e.reg_read(r(5)) == 0
        assert e.reg_read(r(6)) == 0
        assert e.reg_read(r(9)) == 0xF0


ERA_LOG = 0x6000
# handler: append ERA to a log (r26 = write pointer), clear TI, return
LOG_HANDLER = [
    A.csrrd(20, K.CSR_ERA), A.i12("st.d", 20, 26, 0), A.i12("addi.d", 26, 26, 8),
    *A.li(22, 1), A.csrwr(22, K.CSR_TICLR), A.ERTN,
]
LOOP = [A.i12("addi.d", 4, 4, 1), A.r3("xor", 5, 5, 4), A.i12("addi.d", 6, 6, 3),
        A.r3("add.d", 7, 7, 5), A.br26("b", -16)]


class TestExactTimer:
    def _run(self, how: str) -> list[int]:
        e = make(timer_program(97)[:-2] + LOOP, LOG_HANDLER)
        e.reg_write(r(26), ERA_LOG)
        total = 3000
        if how == "one":
            e.emu_start(BASE, DONE, count=total)
        elif how == "chunks":
            pc, left = BASE, total
            while left:
                n = min(7, left)
                e.emu_start(pc, DONE, count=n)
                left -= n
                pc = e.reg_read(K.LA_REG_PC)
        elif how == "random-chunks":
            import random

            rng = random.Random(5)
            pc, left = BASE, total
            while left:
                n = min(rng.randrange(1, 40), left)
                e.emu_start(pc, DONE, count=n)
                left -= n
                pc = e.reg_read(K.LA_REG_PC)
        n = (e.reg_read(r(26)) - ERA_LOG) // 8
        return [int.from_bytes(e.mem_read(ERA_LOG + 8 * i, 8), "little") for i in range(n)]

    def test_interrupt_positions_do_not_depend_on_slicing(self) -> None:
        one = self._run("one")
        assert len(one) > 10
        assert len(set(one)) > 1  # interrupts land on different loop instructions
        assert self._run("chunks") == one
        assert self._run("random-chunks") == one

    def test_breaks_do_not_advance_virtual_time_and_vtime_is_settable(self) -> None:
        e = make([A.NOP, A.brk(0), A.NOP, A.NOP])
        e.hook_add(UC_HOOK_INTR, lambda uc, n, ud: uc.reg_write(K.LA_REG_PC, BASE + 8))
        e.emu_start(BASE, BASE + 16)
        assert e.icount() == 4
        assert e.vtime == 3
        e.vtime = 1000
        e.emu_start(BASE + 8, BASE + 16)
        assert e.vtime == 1002
