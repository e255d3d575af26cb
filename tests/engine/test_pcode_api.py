"""The Unicorn-shaped API of the P-code engine (LoongArch guest): hooks, memory, run control."""

from __future__ import annotations

import time

import la_isa as A
import pytest
from unicorn import UcError
from unicorn.unicorn_const import (
    UC_ERR_ARG,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_MAP,
    UC_ERR_NOMEM,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_PROT,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_PROT,
    UC_PROT_ALL,
    UC_PROT_READ,
)

from kprobesim.engine.pcode import PcodeEngine
from kprobesim.engine.pcode import loongarch_const as K

pytestmark = pytest.mark.usefixtures("engine_tier")  # each test on both engine tiers

BASE = 0x10000


def r(n: int) -> int:
    return K.LA_REG_R0 + n


def make(words: list[int]) -> PcodeEngine:
    e = PcodeEngine("loongarch64")
    e.mem_map(0, 0x100000)
    e.mem_write(BASE, A.code(words))
    return e


def addis(n: int) -> list[int]:
    return [A.i12("addi.d", 4, 4, 1) for _ in range(n)]


class TestRunControl:
    def test_until_inside_a_block(self) -> None:
        e = make(addis(10))
        e.emu_start(BASE, BASE + 16)
        assert e.reg_read(r(4)) == 4
        assert e.reg_read(K.LA_REG_PC) == BASE + 16
        assert e.icount() == 4
        e.emu_start(BASE + 16, BASE + 40)
        assert e.reg_read(r(4)) == 10
        e.reg_write(r(4), 0)
        e.emu_start(BASE, BASE + 40)  # the block cut at the old `until` is still right
        assert e.reg_read(r(4)) == 10

    def test_count(self) -> None:
        e = make(addis(10))
        e.emu_start(BASE, BASE + 40, count=4)
        assert e.reg_read(r(4)) == 4
        assert e.reg_read(K.LA_REG_PC) == BASE + 16
        assert e.icount() == 4
        e.emu_start(BASE + 16, BASE + 40, count=100)
        assert e.icount() == 6

    def test_count_in_loop_and_icount(self) -> None:
        e = make([A.i12("addi.d", 4, 4, 1), A.br26("b", -4)])
        e.emu_start(BASE, 0, count=1001)
        assert e.icount() == 1001
        assert e.reg_read(r(4)) == 501

    def test_timeout(self) -> None:
        e = make([A.i12("addi.d", 4, 4, 1), A.br26("b", -4)])
        t = time.monotonic()
        e.emu_start(BASE, 0, timeout=100_000)
        assert time.monotonic() - t < 5
        assert e.icount() > 1000

    def test_emu_stop_outside_run_is_harmless(self) -> None:
        e = make(addis(3))
        e.emu_stop()
        e.emu_start(BASE, BASE + 12)
        assert e.reg_read(r(4)) == 3


class TestHooks:
    def test_code_hook_range(self) -> None:
        e = make(addis(10))
        seen = []
        e.hook_add(UC_HOOK_CODE, lambda uc, a, s, ud: seen.append((a, s, ud)), "ud",
                   BASE + 8, BASE + 12)
        e.emu_start(BASE, BASE + 40)
        assert seen == [(BASE + 8, 4, "ud"), (BASE + 12, 4, "ud")]
        assert e.reg_read(r(4)) == 10

    def test_code_hook_sees_registers_and_can_write_them(self) -> None:
        e = make(addis(4))

        def hook(uc: PcodeEngine, a: int, s: int, ud: object) -> None:
            assert uc.reg_read(r(4)) == 2
            assert uc.reg_read(K.LA_REG_PC) == a
            uc.reg_write(r(4), 100)

        e.hook_add(UC_HOOK_CODE, hook, None, BASE + 8, BASE + 8)
        e.emu_start(BASE, BASE + 16)
        assert e.reg_read(r(4)) == 102

    def test_stop_in_code_hook(self) -> None:
        e = make(addis(10))
        e.hook_add(UC_HOOK_CODE, lambda uc, a, s, ud: uc.emu_stop(), None, BASE + 8, BASE + 8)
        e.emu_start(BASE, BASE + 40)
        assert e.reg_read(r(4)) == 2
        assert e.reg_read(K.LA_REG_PC) == BASE + 8
        assert e.icount() == 3  # the hooked instruction counts as started (Unicorn's counter)

    def test_pc_write_in_code_hook(self) -> None:
        e = make(addis(10))
        h = e.hook_add(UC_HOOK_CODE, lambda uc, a, s, ud: uc.reg_write(K.LA_REG_PC, BASE + 32),
                       None, BASE + 8, BASE + 8)
        e.emu_start(BASE, BASE + 40)
        assert e.reg_read(r(4)) == 4
        e.hook_del(h)
        e.reg_write(r(4), 0)
        e.emu_start(BASE, BASE + 40)
        assert e.reg_read(r(4)) == 10

    def test_global_code_hook(self) -> None:
        e = make(addis(5))
        seen = []
        e.hook_add(UC_HOOK_CODE, lambda uc, a, s, ud: seen.append(a))
        e.emu_start(BASE, BASE + 20)
        assert seen == [BASE + 4 * i for i in range(5)]

    def test_block_hook_range(self) -> None:
        prog = [A.i12("addi.d", 4, 4, 1), A.br26("b", 8), A.NOP, A.i12("addi.d", 4, 4, 1),
                A.br26("b", 4), A.NOP]
        e = make(prog)
        seen = []
        e.hook_add(UC_HOOK_BLOCK, lambda uc, a, s, ud: seen.append((a, s)), None, BASE + 12,
                   BASE + 12)
        e.emu_start(BASE, BASE + 20)
        assert seen == [(BASE + 12, 8)]
        allb = []
        e.hook_add(UC_HOOK_BLOCK, lambda uc, a, s, ud: allb.append(a))
        e.emu_start(BASE, BASE + 20)
        assert allb == [BASE, BASE + 12]


class TestMemory:
    def test_map_rules(self) -> None:
        e = PcodeEngine()
        e.mem_map(0x1000, 0x3000)
        with pytest.raises(UcError) as ex:
            e.mem_map(0x2000, 0x1000)
        assert ex.value.errno == UC_ERR_MAP
        with pytest.raises(UcError) as ex:
            e.mem_map(0x10001, 0x1000)
        assert ex.value.errno == UC_ERR_ARG
        e.mem_protect(0x2000, 0x1000, UC_PROT_READ)
        assert list(e.mem_regions()) == [(0x1000, 0x1FFF, UC_PROT_ALL),
                                         (0x2000, 0x2FFF, UC_PROT_READ),
                                         (0x3000, 0x3FFF, UC_PROT_ALL)]
        e.mem_write(0x1FFE, b"abcd")
        assert e.mem_read(0x1FFE, 4) == b"abcd"
        e.mem_unmap(0x2000, 0x1000)
        with pytest.raises(UcError) as ex:
            e.mem_read(0x2000, 1)
        assert ex.value.errno == UC_ERR_READ_UNMAPPED
        with pytest.raises(UcError) as ex:
            e.mem_unmap(0x2000, 0x1000)
        assert ex.value.errno == UC_ERR_NOMEM

    def test_read_unmapped_fault(self) -> None:
        e = make([A.NOP, *A.li(5, 0x200000), A.i12("ld.d", 6, 5, 8)])
        with pytest.raises(UcError) as ex:
            e.emu_start(BASE, 0)
        assert ex.value.errno == UC_ERR_READ_UNMAPPED
        assert e.reg_read(K.LA_REG_PC) == BASE + 20
        assert e.icount() == 6

    def test_unmapped_hook_maps_and_retries(self) -> None:
        prog = [*A.li(5, 0x200000), A.i12("ld.d", 6, 5, 8), A.i12("addi.d", 6, 6, 1)]
        e = make(prog)
        calls = []

        def hook(uc: PcodeEngine, access: int, addr: int, size: int, value: int,
                 ud: object) -> bool:
            calls.append((access, addr, size, uc.reg_read(K.LA_REG_PC)))
            uc.mem_map(0x200000, 0x1000)
            uc.mem_write(0x200008, (41).to_bytes(8, "little"))
            return True

        e.hook_add(UC_HOOK_MEM_READ_UNMAPPED, hook)
        e.emu_start(BASE, BASE + 24)
        assert calls == [(UC_MEM_READ_UNMAPPED, 0x200008, 8, BASE + 16)]
        assert e.reg_read(r(6)) == 42

    def test_unmapped_hook_false_is_an_error(self) -> None:
        e = make([*A.li(5, 0x200000), A.i12("st.w", 6, 5, 0)])
        e.hook_add(UC_HOOK_MEM_UNMAPPED, lambda *a: False)
        with pytest.raises(UcError) as ex:
            e.emu_start(BASE, 0)
        assert ex.value.errno == UC_ERR_WRITE_UNMAPPED

    def test_write_prot(self) -> None:
        e = make([*A.li(5, 0x80000), A.i12("st.w", 6, 5, 0)])
        e.mem_protect(0x80000, 0x1000, UC_PROT_READ)
        seen = []
        e.hook_add(UC_HOOK_MEM_WRITE_PROT,
                   lambda uc, acc, a, s, v, ud: (seen.append((acc, a, s, v)), False)[1])
        e.reg_write(r(6), 0x1234)
        with pytest.raises(UcError) as ex:
            e.emu_start(BASE, 0)
        assert ex.value.errno == UC_ERR_WRITE_PROT
        assert seen == [(UC_MEM_WRITE_PROT, 0x80000, 4, 0x1234)]

    def test_fetch_faults(self) -> None:
        e = make([*A.li(5, 0x300000), A.jirl(0, 5, 0)])
        got = []
        e.hook_add(UC_HOOK_MEM_FETCH_UNMAPPED, lambda uc, acc, a, s, v, ud: got.append(a))
        with pytest.raises(UcError) as ex:
            e.emu_start(BASE, 0)
        assert ex.value.errno == UC_ERR_FETCH_UNMAPPED
        assert e.reg_read(K.LA_REG_PC) == 0x300000
        assert got == [0x300000]
        e.mem_protect(0x80000, 0x1000, UC_PROT_READ)
        with pytest.raises(UcError) as ex:
            e.emu_start(0x80000, 0)
        assert ex.value.errno == UC_ERR_FETCH_PROT

    def test_mmio(self) -> None:
        e = make([*A.li(5, 0x1FE001E0), A.i12("ld.bu", 6, 5, 5), A.i12("st.b", 6, 5, 0),
                  A.i12("ld.w", 7, 5, 8), A.NOP])
        log = []
        e.mmio_map(0x1FE00000, 0x1000,
                   lambda uc, off, size, ud: (log.append(("r", off, size, ud)), 0x60)[1], "R",
                   lambda uc, off, size, v, ud: log.append(("w", off, size, v, ud)), "W")
        e.emu_start(BASE, BASE + 28)
        assert log == [("r", 0x1E5, 1, "R"), ("w", 0x1E0, 1, 0x60, "W"), ("r", 0x1E8, 4, "R")]
        assert e.reg_read(r(7)) == 0x60


class TestHostReads:
    def test_mem_read_sees_a_region_replaced_or_split_after_a_read(self) -> None:
        """mem_read keeps the RAM region it last found: every map change must make it look again."""
        e = PcodeEngine("loongarch64")
        e.mem_map(0x100000, 0x3000)
        e.mem_write(0x101000, b"old!")
        assert e.mem_read(0x101000, 4) == b"old!"
        e.mem_unmap(0x100000, 0x3000)
        with pytest.raises(UcError):
            e.mem_read(0x101000, 4)
        e.mem_map(0x100000, 0x3000)  # a new region at the same place: zeros
        assert e.mem_read(0x101000, 4) == bytes(4)
        e.mem_write(0x102ffc, b"tail")
        assert e.mem_read(0x102ffc, 4) == b"tail"
        e.mem_protect(0x101000, 0x1000, UC_PROT_READ)  # splits the region in three
        e.mem_write(0x102ffc, b"TAIL")
        assert e.mem_read(0x102ffc, 4) == b"TAIL"
        assert e.mem_read(0x100ffe, 4) == bytes(4)  # across two regions
        assert isinstance(e.mem_read(0x102ffc, 4), bytearray)  # as Unicorn's


class TestCodeInvalidation:
    def test_mem_write_replaces_code(self) -> None:
        e = make([A.i12("addi.d", 4, 4, 1), A.NOP])
        e.emu_start(BASE, BASE + 4)
        e.mem_write(BASE, A.code([A.i12("addi.d", 4, 4, 10)]))
        e.emu_start(BASE, BASE + 4)
        assert e.reg_read(r(4)) == 11

    def test_guest_store_then_ibar(self) -> None:
        new = A.i12("addi.d", 4, 4, 100)
        target = BASE + 0x40
        prog = [*A.li(5, target), *A.li(6, new), A.i12("st.w", 6, 5, 0), A.ibar(0),
                A.br26("b", target - (BASE + 4 * 10))]
        e = make(prog)
        e.mem_write(target, A.code([A.i12("addi.d", 4, 4, 1), A.NOP]))
        e.emu_start(target, target + 4)  # translate the old code first
        assert e.reg_read(r(4)) == 1
        e.emu_start(BASE, target + 4)
        assert e.reg_read(r(4)) == 101

    def test_kprobe_style_patch_back_and_forth(self) -> None:
        e = make(addis(4))
        hits = []

        def intr(uc: PcodeEngine, n: int, ud: object) -> None:
            pc = uc.reg_read(K.LA_REG_PC)
            hits.append(pc)
            uc.mem_write(pc, A.code([A.i12("addi.d", 4, 4, 1)]))  # restore, re-execute
            uc.ctl_remove_cache(pc, pc + 4)

        from unicorn.unicorn_const import UC_HOOK_INTR

        e.hook_add(UC_HOOK_INTR, intr)
        for _ in range(3):
            e.emu_start(BASE, BASE + 16)
            e.mem_write(BASE + 8, A.code([A.brk(0xA)]))
        assert hits == [BASE + 8, BASE + 8]
        assert e.reg_read(r(4)) == 12


class TestContext:
    def test_save_restore(self) -> None:
        e = make(addis(4))
        e.reg_write(r(4), 5)
        e.reg_write(K.LA_REG_CSR_BASE + K.CSR_SAVE2, 77)
        ctx = e.context_save()
        e.emu_start(BASE, BASE + 16)
        e.reg_write(K.LA_REG_CSR_BASE + K.CSR_SAVE2, 1)
        assert e.reg_read(r(4)) == 9
        e.context_restore(ctx)
        assert e.reg_read(r(4)) == 5
        assert e.reg_read(K.LA_REG_CSR_BASE + K.CSR_SAVE2) == 77

    def test_registers(self) -> None:
        e = PcodeEngine()
        e.reg_write(r(0), 5)
        assert e.reg_read(r(0)) == 0
        e.reg_write(r(31), -1)
        assert e.reg_read(r(31)) == (1 << 64) - 1
        with pytest.raises(UcError):
            e.reg_read(500)
        assert e.reg_read(K.LA_REG_CSR_BASE + K.CSR_CRMD) == 0x8


class TestAccessHooks:
    def test_ranged_write_hook_sees_pc_and_registers(self) -> None:
        prog = [*A.li(5, 0x80000), A.i12("addi.d", 6, 0, 7), A.i12("st.d", 6, 5, 8),
                A.i12("st.d", 6, 5, 0x100), A.i12("st.w", 6, 5, 16), A.NOP]
        e = make(prog)
        seen = []
        from unicorn.unicorn_const import UC_HOOK_MEM_WRITE, UC_MEM_WRITE

        def hook(uc: PcodeEngine, acc: int, a: int, size: int, v: int, ud: object) -> None:
            seen.append((acc, a, size, v, uc.reg_read(K.LA_REG_PC), uc.reg_read(r(6))))

        e.hook_add(UC_HOOK_MEM_WRITE, hook, None, 0x80008, 0x80017)
        e.emu_start(BASE, BASE + 36)
        assert seen == [(UC_MEM_WRITE, 0x80008, 8, 7, BASE + 20, 7),
                        (UC_MEM_WRITE, 0x80010, 4, 7, BASE + 28, 7)]
        assert e.mem_read(0x80100, 1) == b"\x07"

    def test_read_hook_and_stop(self) -> None:
        prog = [*A.li(5, 0x80000), A.i12("ld.d", 6, 5, 0), A.i12("addi.d", 7, 7, 1), A.NOP]
        e = make(prog)
        from unicorn.unicorn_const import UC_HOOK_MEM_READ, UC_MEM_READ

        seen = []
        e.hook_add(UC_HOOK_MEM_READ, lambda uc, acc, a, s, v, ud: seen.append((acc, a, s)))
        e.emu_start(BASE, BASE + 24)
        assert seen == [(UC_MEM_READ, 0x80000, 8)]


class TestSnapshots:
    def test_memory_snapshot_restore(self) -> None:
        import ctypes

        from unicorn.unicorn_const import (
            UC_CTL_CONTEXT_CPU,
            UC_CTL_CONTEXT_MEMORY,
            UC_CTL_CONTEXT_MODE,
            UC_CTL_IO_WRITE,
        )

        prog = [*A.li(5, 0x80000), A.i12("ld.d", 6, 5, 0), A.i12("addi.d", 6, 6, 1),
                A.i12("st.d", 6, 5, 0), A.i12("st.d", 6, 5, 0x7F8), A.NOP]
        e = make(prog)
        e.ctl(UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE,
              ctypes.c_int(UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY))
        e.mem_write(0x80000, (10).to_bytes(8, "little"))
        snap = e.context_save()
        for _ in range(3):
            e.emu_start(BASE, BASE + 32)
        assert int.from_bytes(e.mem_read(0x80000, 8), "little") == 13
        e.mem_write(0x90000, b"host")
        e.context_restore(snap)
        assert int.from_bytes(e.mem_read(0x80000, 8), "little") == 10
        assert int.from_bytes(e.mem_read(0x807F8, 8), "little") == 0
        assert e.mem_read(0x90000, 4) == bytes(4)
        e.emu_start(BASE, BASE + 32)
        assert int.from_bytes(e.mem_read(0x80000, 8), "little") == 11
        e.context_restore(snap)  # a snapshot restores any number of times
        assert int.from_bytes(e.mem_read(0x80000, 8), "little") == 10

    def test_restore_drops_exactly_the_translations_it_invalidates(self) -> None:
        """Code changed after the snapshot and run runs as it was once restored; a page that
        is back to its snapshot's bytes keeps its translations (Machine.restore flushes
        nothing more for this engine)."""
        import ctypes

        from unicorn.unicorn_const import (
            UC_CTL_CONTEXT_CPU,
            UC_CTL_CONTEXT_MEMORY,
            UC_CTL_CONTEXT_MODE,
            UC_CTL_IO_WRITE,
        )

        prog = [*A.li(5, 0x80000), A.i12("addi.d", 6, 0, 1), A.i12("st.d", 6, 5, 0), A.NOP]
        end = BASE + 4 * len(prog)
        e = make(prog)
        e.ctl(UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE, ctypes.c_int(UC_CTL_CONTEXT_CPU | UC_CTL_CONTEXT_MEMORY))
        snap = e.context_save()
        e.mem_write(BASE + 16, A.code([A.i12("addi.d", 6, 0, 2)]))
        e.emu_start(BASE, end)
        assert e.mem_read(0x80000, 1) == b"\x02"
        e.context_restore(snap)
        e.emu_start(BASE, end)
        assert e.mem_read(0x80000, 1) == b"\x01"  # the snapshot's code, not the changed block
        e.mem_write(0x80000, b"\x07")  # a data page changes; the code page stays as it was
        e.context_restore(snap)
        assert BASE in e._blocks
        e.emu_start(BASE, end)
        assert e.mem_read(0x80000, 1) == b"\x01"

    def test_restore_to_another_fetch_mapping_drops_translations(self) -> None:
        """A block run through a direct-mapped address (DA mode) must not run after a restore
        to a mode where that address is not mapped (PG, no window): the fetch faults."""
        import ctypes

        from unicorn.unicorn_const import UC_CTL_CONTEXT_CPU, UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE

        high = 0x9000_0000_0000_0000
        prog = [*A.li(5, 0x80000), A.i12("addi.d", 6, 0, 1), A.i12("st.d", 6, 5, 0), A.NOP]
        e = make(prog)
        e.ctl(UC_CTL_CONTEXT_MODE, UC_CTL_IO_WRITE, ctypes.c_int(UC_CTL_CONTEXT_CPU))
        crmd = K.LA_REG_CSR_BASE + K.CSR_CRMD
        e.reg_write(crmd, 0x10)  # PG with no direct-map window
        paged = e.context_save()
        e.reg_write(crmd, 0x8)  # DA: every address maps
        e.emu_start(high + BASE, high + BASE + 4 * len(prog))
        assert e.mem_read(0x80000, 1) == b"\x01"
        e.context_restore(paged)
        with pytest.raises(UcError) as err:
            e.emu_start(high + BASE, high + BASE + 4 * len(prog))
        assert err.value.errno == UC_ERR_FETCH_UNMAPPED

    def test_guest_mode_change_drops_translations(self) -> None:
        """The guest leaving DA mode (csrwr CRMD) drops blocks translated by virtual address:
        a jump to a direct-mapped address it ran before now faults."""
        high = 0x9000_0000_0000_0000
        body = 0x20000
        e = make([A.i12("addi.d", 6, 0, 0x10), A.csrwr(6, K.CSR_CRMD), *A.li(7, high + body), A.jirl(0, 7, 0)])
        e.mem_write(body, A.code([A.i12("addi.d", 4, 4, 1), A.NOP]))
        e.emu_start(high + body, high + body + 8)  # translated in DA mode
        assert e.reg_read(r(4)) == 1
        with pytest.raises(UcError) as err:
            e.emu_start(BASE, high + body + 8)
        assert err.value.errno == UC_ERR_FETCH_UNMAPPED
        assert e.reg_read(r(4)) == 1

    def test_cpu_only_context_leaves_memory(self) -> None:
        e = make([A.NOP])
        ctx = e.context_save()
        e.mem_write(0x80000, b"x")
        e.context_restore(ctx)
        assert e.mem_read(0x80000, 1) == b"x"
        e.ctl_flush_tb()
