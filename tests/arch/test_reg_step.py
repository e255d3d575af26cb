"""Register-only instructions computed at the hit instead of stepped (``register_step``).

riscv64 against Unicorn executing the same encoding, loongarch64 against Ghidra's SLEIGH
semantics (the P-code oracle): random encodings of every form, random register values. (Whole
runs with these probes are the transparency tests of tests/test_kprobes.py.)
"""

from __future__ import annotations

import random
import struct

import pytest
from arch_testlib import PcodeOracle
from kprobesim.arch.loongarch64 import decode as la_dec
from kprobesim.arch.loongarch64 import regs as la_regs
from kprobesim.arch.loongarch64 import step as la_step
from kprobesim.arch.riscv64 import decode as rv_dec
from kprobesim.arch.riscv64 import regs as rv_regs
from kprobesim.arch.riscv64 import step as rv_step
from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64, Uc
from unicorn import riscv_const as R

from kprobesim.probes.insn import Kind

M64 = (1 << 64) - 1
CODE = 0x10000


class DictRegs(dict):
    """A RegView over a dict of register values."""


def _rv_forms(rng: random.Random) -> bytes:
    """A random encoding of one of the riscv64 register-only forms (rd may be x0: refused)."""
    rd, rs = rng.randrange(32), rng.randrange(32)
    imm12 = rng.getrandbits(12)
    kind = rng.randrange(10)
    if kind == 0:  # addi
        return struct.pack("<I", imm12 << 20 | rs << 15 | rd << 7 | 0x13)
    if kind == 1:  # addiw
        return struct.pack("<I", imm12 << 20 | rs << 15 | rd << 7 | 0x1B)
    if kind == 2:  # lui
        return struct.pack("<I", rng.getrandbits(20) << 12 | rd << 7 | 0x37)
    h = rng.getrandbits(16)
    if kind == 3:  # c.addi4spn
        return struct.pack("<H", h & ~0xE003)
    if kind in (4, 5, 6, 7):  # c.addi, c.addiw, c.li, c.lui / c.addi16sp
        f3 = kind - 4
        return struct.pack("<H", (h & ~0xE003) | f3 << 13 | 1)
    if kind == 8:  # c.addi16sp
        return struct.pack("<H", (h & ~0xEF83) | 3 << 13 | 2 << 7 | 1)
    return struct.pack("<H", (h & ~0xE003) | 4 << 13 | 2)  # c.mv / c.add / c.jr / c.jalr ...


def _unicorn_run(uc: Uc, raw: bytes, regs: dict[str, int]) -> dict[str, int]:
    uc.mem_write(CODE, raw + b"\x13\x00\x00\x00")
    uc.ctl_remove_cache(CODE, CODE + 8)
    ids = rv_regs.REG_IDS
    for n, v in regs.items():
        uc.reg_write(ids[n], v)
    uc.emu_start(CODE, CODE + 0x100, 0, 1)
    out = {n: uc.reg_read(ids[n]) for n in regs}
    out["pc"] = uc.reg_read(R.UC_RISCV_REG_PC)
    return out


def test_riscv64_against_unicorn() -> None:
    rng = random.Random(11)
    uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
    uc.mem_map(CODE, 0x1000)
    names = list(rv_regs.GPR_NAMES[1:])
    done: set[str] = set()
    for _ in range(3000):
        raw = _rv_forms(rng)
        try:
            d = rv_dec.decode(raw, CODE)
        except Exception:
            continue
        fn = rv_step.register_step(d)
        form = rv_step.reg_form(d.raw)
        if fn is None:
            assert form is None
            continue
        assert d.kind is Kind.OOL, d
        h = int.from_bytes(d.raw[:2], "little")
        done.add((h & 0x7F,) if d.length == 4 else (h & 3, h >> 13, (h >> 7) & 31 == 2, (h >> 12) & 1))
        regs = {n: rng.choice([0, 1, M64, 1 << 63, 0x7FFF_FFFF, 0x8000_0000, rng.getrandbits(64)]) for n in names}
        want = _unicorn_run(uc, d.raw, regs)
        view = DictRegs(regs)
        view["zero"] = 0
        view["pc"] = CODE
        fn(view)
        assert {n: view[n] for n in [*names, "pc"]} == want, d.text
    quadrants = {(q, f3) for q, f3, *_ in (f for f in done if len(f) == 4)}
    assert {(0x13,), (0x1B,), (0x37,)} <= done  # addi, addiw, lui
    # c.addi4spn, c.addi, c.addiw, c.li, c.lui and c.addi16sp (rd sp), c.mv and c.add (bit 12)
    assert {(0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (2, 4)} <= quadrants
    assert any(f[:3] == (1, 3, True) for f in done if len(f) == 4)
    assert {f[3] for f in done if len(f) == 4 and f[:2] == (2, 4)} == {0, 1}


@pytest.mark.parametrize("raw", [
    struct.pack("<I", 0x00000013),  # nop (addi x0): refused, x0 stays x0
    struct.pack("<I", 0x00113423),  # sd ra, 8(sp)
    struct.pack("<I", 0x00813083),  # ld ra, 8(sp)
    struct.pack("<I", 0x02A50533),  # mul a0, a0, a0
    struct.pack("<H", 0x0001),  # c.nop
    struct.pack("<H", 0xE406),  # c.sdsp ra, 8(sp)
])  # fmt: skip
def test_riscv64_other_instructions_still_step(raw: bytes) -> None:
    d = rv_dec.decode(raw, CODE)
    assert d.kind is Kind.OOL and rv_step.register_step(d) is None, d.text


def _la_forms(rng: random.Random) -> bytes:
    rd, rj = rng.randrange(32), rng.randrange(32)
    kind = rng.randrange(6)
    if kind < 3:  # addi.w, addi.d, ori
        return struct.pack("<I", (0x00A, 0x00B, 0x00E)[kind] << 22 | rng.getrandbits(12) << 10 | rj << 5 | rd)
    if kind == 3:  # lu12i.w
        return struct.pack("<I", 0x0A << 25 | rng.getrandbits(20) << 5 | rd)
    rk = 0 if kind == 4 else rng.randrange(32)  # or rd, rj, rk (a move when rk is zero)
    return struct.pack("<I", 0x2A << 15 | rk << 10 | rj << 5 | rd)


def test_loongarch64_against_pcode() -> None:
    oracle = PcodeOracle()
    rng = random.Random(12)
    names = [n for n in la_regs.GPR_NAMES if n != "zero"]
    done: set[str] = set()
    for _ in range(1500):
        raw = _la_forms(rng)
        d = la_dec.decode(raw, CODE)
        fn = la_step.register_step(d)
        if fn is None:
            assert la_step.reg_form(d.raw) is None
            continue
        assert d.kind is Kind.OOL, d
        done.add(d.text.split()[0])
        regs = {n: rng.choice([0, 1, M64, 1 << 63, 0x7FFF_FFFF, 0x8000_0000, rng.getrandbits(64)]) for n in names}
        # the oracle names the 32-bit halves SLEIGH reads (``s1_lo``) as registers of their own
        halves = {f"{n}_lo": v & 0xFFFF_FFFF for n, v in regs.items()}
        want, want_pc = oracle.run(d.raw, CODE, {**regs, **halves})
        want = {n: want[n] for n in names}
        view = DictRegs(regs)
        view["zero"] = 0
        view["pc"] = CODE
        fn(view)
        assert ({n: view[n] for n in names}, view["pc"]) == (want, want_pc), d.text
    assert done >= {"addi.w", "addi.d", "ori", "lu12i.w", "move"}, done
