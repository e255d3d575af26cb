"""The P-code engine's tiers agree: tier 0 (interpreted P-code, see engine/pcode/interp.py) and
compiled blocks give the same machine state, the same instruction counts inside callbacks,
and the same kernel runs."""

from __future__ import annotations

import dataclasses
import random
import struct

import pytest
from fwpaths import firmware
from unicorn.unicorn_const import UC_HOOK_MEM_READ

from kprobesim.arch import get_arch
from kprobesim.engine.pcode import PcodeEngine
from kprobesim.engine.pcode import loongarch as L
from kprobesim.engine.pcode import loongarch_const as K
from kprobesim.engine.pcode.codegen import BlockEmitter, CompileCfg, Insn, lift
from kprobesim.engine.pcode.engine import _context
from kprobesim.image import Image
from kprobesim.machine import Machine

NEVER = 10**9  # hot_after: never compile (tier 0 throughout)
BASE = 0x10000


def forget_translations() -> None:
    """Drop the process-wide translation caches, so the next engine starts cold (compiled code
    from an earlier engine would otherwise run at once, whatever its tiering)."""
    from kprobesim.engine.pcode import engine as E

    for cache in (E._CODE_CACHE, E._LIFT_CACHE, E._TIER0_RUNS):
        cache.clear()


def run_kernel(arch_name: str, hot_after: int, probed: bool = False) -> tuple[int, str, int, list[int]]:
    """Run the bundled kernel; ``probed``: with a kprobe and a kretprobe on do_work (traps in
    the middle of compiled blocks, 557 times each)."""
    forget_translations()
    arch = dataclasses.replace(get_arch(arch_name),
                               new_engine=lambda: PcodeEngine(arch_name, hot_after=hot_after))
    m = Machine(arch, Image.load(firmware(arch_name)))
    if probed:
        m.kprobe("do_work")
        m.kretprobe("do_work")
    status = m.run()
    regs = [m.engine._R[i] for i in range(len(m.engine._R))]
    return status, m.console, m.instructions, regs


@pytest.mark.parametrize("arch_name", ["loongarch64", "riscv64"])
def test_kernel_identical_on_every_tiering(arch_name: str) -> None:
    runs = {h: run_kernel(arch_name, h) for h in (0, 1, 4, NEVER)}
    assert runs[0][0] == 0, runs[0][1]
    for h, r in runs.items():
        assert r == runs[0], f"hot_after={h} differs from compiling every block at once"


def test_trap_after_many_compilations_keeps_the_block_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled block holds the registers it writes in locals and a trap writes them back,
    found through its code object's entry. A long-lived process (a pytest worker) compiles more
    blocks than the caches keep: their eviction must not drop the entry of a block still in
    use (it did, and traps after ~10000 compilations corrupted registers), nor, once the
    compiled code is evicted and compiled again, the entry of the new, equal code object."""
    from unicorn import UcError

    from kprobesim.engine.pcode import engine as E

    monkeypatch.setattr(E, "_CODE_CACHE_MAX", 8)
    forget_translations()
    e = PcodeEngine("loongarch64", hot_after=0)
    e.mem_map(0, 0x100000)
    # addi.d a0 twice, then ld.d $a2, $a1, 0 from unmapped memory
    e.mem_write(BASE, struct.pack("<3I", 0x02C00484, 0x02C00484, 0x28C000A6))
    e.reg_write(K.LA_REG_R0 + 5, 0x900000)

    def faulting_run() -> tuple[int, int]:
        e.reg_write(K.LA_REG_R0 + 4, 0)
        with pytest.raises(UcError):
            e.emu_start(BASE, BASE + 12)
        return e.reg_read(K.LA_REG_R0 + 4), e.reg_read(K.LA_REG_PC)

    assert faulting_run() == (2, BASE + 8)
    for round_ in range(2):
        for i in range(40):  # other blocks: addi.d $a0, $a0, i; jirl $zero, $ra, 0
            at = 0x40000 + 0x100 * i
            e.mem_write(at, struct.pack("<2I", 0x02C00084 | ((i + round_) << 10), 0x4C000020))
            e.reg_write(K.LA_REG_RA, 0x80000)
            e.emu_start(at, 0x80000)
        assert faulting_run() == (2, BASE + 8), f"round {round_}"
        e.ctl_flush_tb()  # the next round compiles the faulting block again


def _mmio_program() -> list[int]:
    """addi.d a0 twice, ld.d from the device, addi.d, ld.d from RAM, then a return (jirl)."""
    return [
        0x02C00484,  # addi.d $a0, $a0, 1
        0x02C00484,  # addi.d $a0, $a0, 1
        0x28C000A6,  # ld.d $a2, $a1, 0      (device)
        0x02C00484,  # addi.d $a0, $a0, 1
        0x28C000E8,  # ld.d $a4, $a3, 0      (RAM, read hook)
        0x4C000020,  # jirl $zero, $ra, 0
    ]


def _callback_view(hot_after: int) -> list[tuple[str, int, int]]:
    forget_translations()
    e = PcodeEngine("loongarch64", hot_after=hot_after)
    e.mem_map(0, 0x100000)
    e.mem_write(BASE, b"".join(struct.pack("<I", w) for w in _mmio_program()))
    seen: list[tuple[str, int, int]] = []

    def dev_read(uc: PcodeEngine, off: int, size: int, ud: object) -> int:
        seen.append(("device", uc.icount(), uc.reg_read(K.LA_REG_R0 + 4)))
        return 0x1234

    def hook(uc: PcodeEngine, access: int, addr: int, size: int, value: int, ud: object) -> None:
        seen.append(("hook", uc.icount(), uc.reg_read(K.LA_REG_PC)))

    e.mmio_map(0x200000, 0x1000, dev_read, None, None, None)
    e.hook_add(UC_HOOK_MEM_READ, hook, begin=0x8000, end=0x8007)
    e.reg_write(K.LA_REG_R0 + 5, 0x200000)
    e.reg_write(K.LA_REG_R0 + 7, 0x8000)
    e.reg_write(K.LA_REG_RA, 0x20000)
    for _ in range(3):  # enough runs to cross hot_after=1
        e.reg_write(K.LA_REG_R0 + 4, 0)
        e.emu_start(BASE, 0x20000)
    seen.append(("end", e.icount(), e.reg_read(K.LA_REG_R0 + 6)))
    return seen


def test_callbacks_see_the_same_position_on_every_tier() -> None:
    """icount() and registers inside a device read and a memory hook, interpreted or compiled."""
    want = _callback_view(0)
    assert want[0] == ("device", 3, 2) and want[1] == ("hook", 5, BASE + 16)
    for h in (1, NEVER):
        assert _callback_view(h) == want, f"hot_after={h}"


def _kernel_insns(arch_name: str) -> list[tuple[PcodeEngine, Insn]]:
    """Every instruction of a bundled kernel's functions, decoded and classified."""
    img = Image.load(firmware(arch_name))
    eng = PcodeEngine(arch_name)
    ctx = _context(eng.arch.lang)
    out = []
    for sym in img.symbols:
        if not sym.is_func or sym.size <= 0:
            continue
        data = img.read(sym.addr, sym.size)
        off = 0
        while off < len(data):
            try:
                tx = ctx.translate(data[off:], sym.addr + off, 0, len(data) - off, 1)
                addr, length, ops = lift(tx.ops)[0]
            except Exception:  # noqa: BLE001 - padding or data: step over it
                off += eng.arch.min_insn
                continue
            insn = Insn(addr, length, data[off:off + length], ops)
            eng.arch.classify(insn)
            out.append((eng, insn))
            off += length
    return out


@pytest.mark.parametrize("arch_name", ["loongarch64", "riscv64"])
def test_needs_codegen_covers_every_override(arch_name: str) -> None:
    """Tier 0 interprets an instruction's P-code only when the arch emits nothing of its own."""
    insns = _kernel_insns(arch_name)
    assert len(insns) > 500
    plain = 0
    for eng, insn in insns:
        if insn.invalid or eng.arch.needs_codegen(insn):
            continue
        plain += 1
        em = BlockEmitter(eng.arch, CompileCfg(pc_word=eng.arch.pc_word))
        em.begin_insn(insn, 0)
        assert eng.arch.emit_override(em, insn) is False, f"{insn.addr:#x} {insn.raw.hex()}"
        assert em.lines == [], f"{insn.addr:#x} {insn.raw.hex()}: {em.lines}"
    assert plain > len(insns) // 2


def _random_field_ops(rng: random.Random, n: int) -> list[int]:
    words = []
    while len(words) < n:
        w = rng.getrandbits(32)
        if L._dispatch(w) in (L._ov_bstr, L._ov_shift):
            words.append(w)
    return words


def test_tier0_bitfield_and_shift_ops_match_compiled() -> None:
    """The arch's tier-0 versions of bstr*/shift/rotate agree with their compiled emitters."""
    rng = random.Random(7)
    forget_translations()
    # tier 0 first: it never fills the code cache, which the compiling engine would leave
    engines = [PcodeEngine("loongarch64", hot_after=h) for h in (NEVER, 0)]
    for e in engines:
        e.mem_map(0, 0x100000)
    for w in _random_field_ops(rng, 3000):
        regs = [rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 2**63, 2**64 - 1, rng.getrandbits(64)])
                for _ in range(32)]
        results = []
        for e in engines:
            e.mem_write(BASE, struct.pack("<I", w))
            for i in range(1, 32):
                e.reg_write(K.LA_REG_R0 + i, regs[i])
            try:
                e.emu_start(BASE, BASE + 4)
                results.append([e.reg_read(K.LA_REG_R0 + i) for i in range(32)])
            except Exception as exc:  # noqa: BLE001 - INE for msb < lsb: must match too
                results.append(type(exc).__name__)
        assert results[0] == results[1], f"{w:08x}"
