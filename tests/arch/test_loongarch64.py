"""loongarch64 instruction layer: hand-computed results, a P-code oracle, rejects and breaks.

The oracle evaluates Ghidra's SLEIGH semantics (pypcode ``Loongarch:LE:64:lp64d``) for the
same instruction, independently of the P-code engine being built next door.
"""

from __future__ import annotations

import random
import struct

import pytest
from arch_testlib import PcodeOracle, la_1ri20, la_1ri21, la_2ri16, la_i26
from kprobesim.arch.loongarch64 import decode as dec
from kprobesim.arch.loongarch64 import regs as lregs
from kprobesim.arch.loongarch64 import simulate as sim
from kprobesim.arch.loongarch64 import step

from kprobesim.probes.insn import DecodeError, DictRegView, Kind, SlotError

PC = 0x9000_0000_0012_3450
M64 = (1 << 64) - 1
A0, A1, RA, T0 = 4, 5, 1, 12


def view(**regs: int) -> DictRegView:
    return DictRegView(regs, aliases=lregs.ALIASES, zero=lregs.ZERO_REGS)


def run(raw: bytes, pc: int = PC, **regs: int) -> DictRegView:
    d = dec.decode(raw, pc)
    assert d.kind is Kind.SIMULATE, d
    v = view(pc=pc, **regs)
    sim.simulate(d, v)
    return v


# --- hand-computed ------------------------------------------------------------------------------


def test_pc_relative() -> None:
    assert run(la_1ri20(0x0C, T0, 1))["t0"] == PC + 4  # pcaddi
    assert run(la_1ri20(0x0C, T0, -1))["t0"] == PC - 4
    assert run(la_1ri20(0x0C, T0, 0x7FFFF))["t0"] == PC + (0x7FFFF << 2)
    v = run(la_1ri20(0x0D, T0, 0x1234))  # pcalau12i: low 12 bits cleared
    assert v["t0"] == (PC + 0x1234_000) & ~0xFFF == 0x9000_0000_0135_7000
    assert v["pc"] == PC + 4
    assert run(la_1ri20(0x0D, A0, -1))["a0"] == (PC - 0x1000) & ~0xFFF
    assert run(la_1ri20(0x0E, A0, 0x80000))["a0"] == (PC - (1 << 31)) & M64  # pcaddu12i
    assert run(la_1ri20(0x0E, A0, 1))["a0"] == PC + 0x1000
    assert run(la_1ri20(0x0F, A0, 1))["a0"] == PC + (1 << 18)  # pcaddu18i
    assert run(la_1ri20(0x0F, A0, 0xFFFFF))["a0"] == PC - (1 << 18)
    assert run(la_1ri20(0x0F, A0, 0x80000))["a0"] == (PC - (1 << 37)) & M64
    v = run(la_1ri20(0x0D, 0, 5))  # rd = r0: only the pc moves
    assert v["zero"] == 0 and v["pc"] == PC + 4


def test_jumps() -> None:
    v = run(la_i26(0x14, 4))  # b +16
    assert v["pc"] == PC + 16 and v["ra"] == 0
    v = run(la_i26(0x14, -(1 << 25)))  # b -128 MiB
    assert v["pc"] == PC - (1 << 27)
    v = run(la_i26(0x15, (1 << 25) - 1))  # bl +128 MiB - 4
    assert v["pc"] == PC + (1 << 27) - 4 and v["ra"] == PC + 4
    v = run(la_2ri16(0x13, RA, A0, 2), a0=0x1000)  # jirl ra, a0, 8
    assert v["pc"] == 0x1008 and v["ra"] == PC + 4
    v = run(la_2ri16(0x13, A0, A0, -1), a0=0x2000)  # jirl a0, a0, -4: rj read first
    assert v["pc"] == 0x1FFC and v["a0"] == PC + 4
    v = run(la_2ri16(0x13, 0, RA, 0), ra=0x4321_0000)  # ret
    assert v["pc"] == 0x4321_0000 and v["zero"] == 0


@pytest.mark.parametrize(
    ("op6", "j", "d", "taken"),
    [
        (0x16, 5, 5, True), (0x16, 5, 6, False),  # beq
        (0x17, 5, 6, True), (0x17, 7, 7, False),  # bne
        (0x18, M64, 0, True), (0x18, 0, M64, False), (0x18, 3, 3, False),  # blt (signed)
        (0x19, 0, M64, True), (0x19, 3, 3, True), (0x19, M64, 0, False),  # bge
        (0x1A, 0, M64, True), (0x1A, M64, 0, False),  # bltu
        (0x1B, M64, 0, True), (0x1B, 3, 3, True), (0x1B, 0, 1, False),  # bgeu
    ],
)  # fmt: skip
def test_compare_branches(op6: int, j: int, d: int, taken: bool) -> None:
    for offs in (3, -0x8000, 0x7FFF):
        v = run(la_2ri16(op6, A1, A0, offs), a0=j, a1=d)  # bXX a0(rj), a1(rd), offs
        assert v["pc"] == ((PC + (offs << 2)) & M64 if taken else PC + 4)
        assert v["a0"] == j and v["a1"] == d


@pytest.mark.parametrize(
    ("op6", "val", "taken"), [(0x10, 0, True), (0x10, 9, False), (0x11, 0, False), (0x11, 1 << 63, True)]
)
def test_zero_branches(op6: int, val: int, taken: bool) -> None:
    for offs in (1, -(1 << 20), (1 << 20) - 1):
        v = run(la_1ri21(op6, A0, offs), a0=val)
        assert v["pc"] == ((PC + (offs << 2)) & M64 if taken else PC + 4)


# --- P-code oracle --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle() -> PcodeOracle:
    return PcodeOracle()


def random_simulated(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    r = lambda: rng.choice([0, 1, 3, 4, 5, 12, 21, 22, 31])  # noqa: E731
    if kind == 0:
        return la_1ri20(rng.choice([0x0C, 0x0D, 0x0E, 0x0F]), r(), rng.getrandbits(20))
    if kind == 1:
        return la_i26(rng.choice([0x14, 0x15]), rng.getrandbits(26))
    if kind == 2:
        return la_1ri21(rng.choice([0x10, 0x11]), r(), rng.getrandbits(21))
    return la_2ri16(rng.choice([0x13, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B]), r(), r(),
                    rng.getrandbits(16))  # fmt: skip


def test_against_pcode(oracle: PcodeOracle) -> None:
    rng = random.Random(5)
    names = [n for n in lregs.GPR_NAMES if n != "zero"]
    for _ in range(600):
        raw = random_simulated(rng)
        pc = rng.choice([PC, 0x1000, 0x9000_0000_0000_0000, rng.getrandbits(62) << 2])
        regs = {n: rng.choice([0, 1, M64, 1 << 63, rng.getrandbits(64), pc]) for n in names}
        if rng.random() < 0.3:
            regs["a1"] = regs["a0"]
        d = dec.decode(raw, pc)
        assert d.kind is Kind.SIMULATE, d
        v = view(pc=pc, **regs)
        sim.simulate(d, v)
        want, want_pc = oracle.run(raw, pc, regs)
        got = {n: v[n] for n in names}
        assert (got, v["pc"]) == (want, want_pc), d.text


# --- rejects, out-of-line, breaks -----------------------------------------------------------------


def enc(w: int) -> bytes:
    return struct.pack("<I", w)


REJECTS = {
    "ll.w": (0x20000485, "ll/sc"), "sc.w": (0x21000485, "ll/sc"), "ll.d": (0x22000485, "ll/sc"),
    "sc.d": (0x23000485, "ll/sc"), "sc.q": (0x38570000 | 5 | 4 << 5 | 6 << 10, "sc.q"),
    "amswap.w": (0x38601885, "am*"), "amadd_db.d": (0x386A1885, "am*"),
    "ammin_db.du": (0x3871_9885, "am*"), "amcas.w": (0x38591885, "am*"),
    "llacq.w": (0x38578085, "llacq"), "screl.d": (0x38578C85, "llacq"),
    "bceqz": (0x48000000, "bceqz"), "bcnez": (0x48000100, "bceqz"),
    "break": (0x002A0005, "trapping"), "syscall": (0x002B0000, "trapping"),
    "ertn": (0x06483800, "ERA"), "idle": (0x06488000, "wait"),
    "csrwr crmd": (0x04000024, "CRMD/PRMD"), "csrxchg prmd": (0x04000484, "CRMD/PRMD"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REJECTS))
def test_rejects(name: str) -> None:
    w, why = REJECTS[name]
    d = dec.decode(enc(w), PC)
    assert d.kind is Kind.REJECT and why in d.reason, (d.text, d.reason)
    assert d.reason.split(":")[0] == d.text.split()[0]


@pytest.mark.parametrize(
    "w",
    [
        0x02C00484,
        0x28C00064,
        0x29C00061,
        0x00150085,
        0x04000004,
        0x04000C24,
        0x38720000,
        0x38728000,
        0x06482000,
        0x001C1484,
    ],  # addi.d ld.d st.d or csrrd csrwr(MISC) dbar ibar
)  # fmt: skip  (tlbclr mul.w)
def test_out_of_line(w: int) -> None:
    d = dec.decode(enc(w), PC)
    assert d.kind is Kind.OOL, d


def test_misaligned_and_bad_bytes() -> None:
    assert dec.decode(enc(0x02C00484), PC + 2).reason.startswith("misaligned")
    with pytest.raises(DecodeError):
        dec.decode(b"\0\0\0", PC)
    with pytest.raises(DecodeError):
        dec.decode(enc(0), PC)
    with pytest.raises(DecodeError):
        dec.decode(enc(0xFFFFFFFF), PC)
    assert dec.boundaries(bytes(10), 0x100) == [0x100, 0x104]


def test_breaks_slot_and_resume() -> None:
    d = dec.decode(enc(0x02C00484), PC)
    assert step.probe_break(d) == enc(0x002A000A) == step.PROBE_BREAK
    assert step.step_break() == enc(0x002A000B) == step.STEP_BREAK
    assert dec.decode(step.PROBE_BREAK, PC).text == "break 0xa"
    assert dec.decode(step.STEP_BREAK, PC).text == "break 0xb"
    assert step.make_slot(d, 0x1000) == d.raw + step.STEP_BREAK
    assert step.step_break_addr(d, 0x1000) == 0x1004
    assert step.is_probe_break(step.PROBE_BREAK) and not step.is_probe_break(step.STEP_BREAK)
    assert step.is_step_break(step.STEP_BREAK) and not step.is_step_break(d.raw)
    with pytest.raises(SlotError):
        step.make_slot(d, 0x1002)
    with pytest.raises(SlotError):
        step.make_slot(dec.decode(la_i26(0x14, 4), PC), 0x1000)
    v = view(pc=0x1004)
    step.after_step(d, v, 0x1000)
    assert v["pc"] == PC + 4


def test_interrupt_masking() -> None:
    v = view(crmd=0b1_1100 | step.CRMD_IE, prmd=0b011 | step.PRMD_PIE)
    saved = step.mask_interrupts(v)
    assert v["crmd"] == 0b1_1000 and v["prmd"] == 0b011
    v["crmd"] = v["crmd"] | 0x100  # unrelated change survives the restore
    step.restore_interrupts(v, saved)
    assert v["crmd"] == 0b1_1100 | 0x100 and v["prmd"] == 0b111
    v = view(crmd=0, prmd=0)
    step.restore_interrupts(v, step.mask_interrupts(v))
    assert v["crmd"] == 0 and v["prmd"] == 0
