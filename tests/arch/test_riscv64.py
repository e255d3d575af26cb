"""riscv64 instruction layer: classification, breaks/slots, and differential execution on Unicorn.

Each case runs the instruction in place on one Unicorn and through the kprobe path on a second
(simulate() on a RegView, or the slot at a distant address stepped to its ebreak plus
after_step()); every register and the data memory must match.
"""

from __future__ import annotations

import random
import struct

import pytest
from arch_testlib import (
    UcRegView,
    rv_b,
    rv_cb,
    rv_cj,
    rv_cjr,
    rv_i,
    rv_jal,
    rv_jalr,
    rv_r,
    rv_s,
    rv_u,
)
from kprobesim.arch.riscv64 import decode as dec
from kprobesim.arch.riscv64 import regs as rregs
from kprobesim.arch.riscv64 import simulate as sim
from kprobesim.arch.riscv64 import step
from unicorn import (
    UC_ARCH_RISCV,
    UC_ERR_FETCH_UNMAPPED,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_MODE_RISCV64,
    Uc,
    UcError,
)
from unicorn import riscv_const as R

from kprobesim.probes.insn import DecodeError, DictRegView, Kind, SlotError

ORIG = 0x8000_1000
CODE_BASE, CODE_SIZE = 0x8000_0000, 0x10000
SLOT = 0x9000_0000  # far from the code: simulated pc-relative results would differ
DATA, DATA_SIZE = 0x8800_0000, 0x10000
MSTATUS_INIT = (3 << 13) | step.MSTATUS_MIE | step.MSTATUS_MPIE | (3 << 11)  # FS dirty, M-mode

GPRS = [f"x{i}" for i in range(1, 32)]
FPRS = [f"f{i}" for i in range(32)]
COMPARED = ["pc", *GPRS, *FPRS, "fcsr", "mstatus"]


def enc(w: int) -> bytes:
    return struct.pack("<I", w)


# --- classification -----------------------------------------------------------------------------

REJECTS = {
    "ecall": (enc(0x00000073), "SYSTEM"),
    "ebreak": (enc(0x00100073), "SYSTEM"),
    "csrrw": (enc(0x34051073), "SYSTEM"),
    "csrrs": (enc(0x300022F3), "SYSTEM"),
    "mret": (enc(0x30200073), "SYSTEM"),
    "sret": (enc(0x10200073), "SYSTEM"),
    "wfi": (enc(0x10500073), "SYSTEM"),
    "sfence.vma": (enc(0x12000073), "SYSTEM"),
    "fence": (enc(0x0FF0000F), "fence"),
    "fence.i": (enc(0x0000100F), "fence"),
    "fence.tso": (enc(0x8330000F), "fence"),
    "c.ebreak": (struct.pack("<H", 0x9002), "c.ebreak"),
}


@pytest.mark.parametrize("name", sorted(REJECTS))
def test_rejects(name: str) -> None:
    raw, why = REJECTS[name]
    d = dec.decode(raw, ORIG)
    assert d.kind is Kind.REJECT and why in d.reason and d.reason.split(":")[0]
    assert d.length == len(raw) and d.raw == raw


SIMULATES = {
    "jal": rv_jal(1, 0x800),
    "jalr": rv_jalr(1, 10, -4),
    "auipc": rv_u(0x17, 10, 0x12345),
    "beq": rv_b(0, 10, 11, 16),
    "bne": rv_b(1, 10, 11, -16),
    "blt": rv_b(4, 10, 11, 8),
    "bge": rv_b(5, 10, 11, 8),
    "bltu": rv_b(6, 10, 11, 8),
    "bgeu": rv_b(7, 10, 11, 8),
    "c.j": rv_cj(-64),
    "c.jr": rv_cjr(1, False),
    "c.jalr": rv_cjr(10, True),
    "c.beqz": rv_cb(6, 8, 32),
    "c.bnez": rv_cb(7, 15, -32),
}


@pytest.mark.parametrize("name", sorted(SIMULATES))
def test_simulated_kinds(name: str) -> None:
    d = dec.decode(SIMULATES[name] + b"\0" * 4, ORIG)
    assert d.kind is Kind.SIMULATE and d.info.op == name
    assert d.length == len(SIMULATES[name])


@pytest.mark.parametrize(
    "raw",
    [
        rv_i(0x03, 10, 3, 2, 8),  # ld
        rv_s(0x23, 3, 2, 10, 8),  # sd
        rv_r(0x2F, 10, 2, 11, 0, 0b00010 << 2),  # lr.w
        rv_r(0x2F, 10, 3, 11, 12, 0b00011 << 2),  # sc.d
        rv_r(0x2F, 10, 2, 11, 12, 0),  # amoadd.w
        rv_r(0x33, 10, 0, 11, 12, 1),  # mul
        rv_u(0x37, 10, 0x12345),  # lui
        struct.pack("<H", 0x2085),  # c.addiw ra, 1 (c.jal on RV32)
        struct.pack("<H", 0x4505),  # c.li
        struct.pack("<H", 0x6402),  # c.ldsp
        struct.pack("<H", 0x0001),  # c.nop
    ],
)
def test_out_of_line(raw: bytes) -> None:
    assert dec.decode(raw, ORIG).kind is Kind.OOL


def test_misaligned_and_bad_bytes() -> None:
    d = dec.decode(enc(0x00000013), ORIG + 1)
    assert d.kind is Kind.REJECT and d.reason.startswith("misaligned")
    with pytest.raises(DecodeError):
        dec.decode(b"\x13", ORIG)
    with pytest.raises(DecodeError):
        dec.decode(b"\x13\x00\x00", ORIG)  # truncated 4-byte instruction
    assert dec.decode(b"\x00\x00", ORIG).reason.startswith("c.unimp")  # defined illegal
    with pytest.raises(DecodeError):
        dec.decode(b"\x1f\x00\x00\x00\x00\x00", ORIG)  # 48-bit encoding
    assert dec.insn_length(b"\x13\x00", ORIG) == 4 and dec.insn_length(b"\x01\x00", ORIG) == 2


def test_c_jal_is_addiw_on_rv64() -> None:
    d = dec.decode(struct.pack("<H", 0x2505), ORIG)
    assert d.kind is Kind.OOL and d.text.startswith("addiw")


# --- breaks and slots ---------------------------------------------------------------------------


def test_breaks_and_slot() -> None:
    d4 = dec.decode(rv_i(0x13, 10, 0, 10, 1), ORIG)
    d2 = dec.decode(struct.pack("<H", 0x4505), ORIG)
    assert step.probe_break(d4) == bytes.fromhex("73001000")
    assert step.probe_break(d2) == bytes.fromhex("0290")
    assert step.step_break() == step.STEP_BREAK == bytes.fromhex("73001000")
    assert step.make_slot(d4, SLOT) == d4.raw + step.STEP_BREAK
    assert step.make_slot(d2, SLOT) == d2.raw + step.STEP_BREAK
    assert step.step_break_addr(d2, SLOT) == SLOT + 2
    assert step.is_probe_break(step.probe_break(d2)) and step.is_probe_break(step.STEP_BREAK)
    assert step.is_step_break(step.STEP_BREAK) and not step.is_step_break(b"\x02\x90\0\0")
    assert not step.is_probe_break(d4.raw)
    with pytest.raises(SlotError):
        step.make_slot(d4, SLOT + 1)
    with pytest.raises(SlotError):
        step.make_slot(dec.decode(rv_jal(0, 8), ORIG), SLOT)


def test_interrupt_masking_restores_only_its_bits() -> None:
    regs = DictRegView({"mstatus": MSTATUS_INIT | step.MSTATUS_SIE})
    saved = step.mask_interrupts(regs)
    assert regs["mstatus"] & step.IRQ_BITS == 0
    regs["mstatus"] = regs["mstatus"] | (1 << 18)  # something else changes meanwhile
    step.restore_interrupts(regs, saved)
    assert regs["mstatus"] == MSTATUS_INIT | step.MSTATUS_SIE | (1 << 18)
    s = DictRegView({"sstatus": step.MSTATUS_SIE})
    step.restore_interrupts(s, step.mask_interrupts(s, csr="sstatus"), csr="sstatus")
    assert s["sstatus"] == step.MSTATUS_SIE


def test_simulate_writes_nothing_to_x0_and_reads_rs1_first() -> None:
    regs = DictRegView({"a0": 0x1000}, aliases=rregs.ALIASES, zero=rregs.ZERO_REGS)
    sim.simulate(dec.decode(rv_jalr(10, 10, 8), ORIG), regs)  # jalr a0, 8(a0)
    assert regs["pc"] == 0x1008 and regs["a0"] == ORIG + 4
    sim.simulate(dec.decode(rv_jal(0, -8), ORIG), regs)
    assert regs["zero"] == 0 and regs["pc"] == ORIG - 8
    sim.simulate(dec.decode(rv_u(0x17, 0, 1), ORIG), regs)
    assert regs["x0"] == 0 and regs["pc"] == ORIG + 4
    with pytest.raises(ValueError):
        sim.simulate(dec.decode(rv_i(0x13, 10, 0, 10, 1), ORIG), regs)


# --- differential execution ---------------------------------------------------------------------


class Machine:
    """One Unicorn riscv64 with code, slot and data pages."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        self.uc.mem_map(CODE_BASE, CODE_SIZE)
        self.uc.mem_map(SLOT & ~0xFFF, 0x1000)
        self.uc.mem_map(DATA, DATA_SIZE)
        self.view = UcRegView(self.uc, rregs.REG_IDS, frozenset({"x0", "zero"}))
        self.events: list[tuple[str, int]] = []
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self._invalid)
        self.uc.hook_add(UC_HOOK_INTR, self._intr)

    def _invalid(self, uc: Uc, _ud: object) -> bool:
        self.events.append(("break", uc.reg_read(R.UC_RISCV_REG_PC)))
        uc.emu_stop()
        return True

    def _intr(self, uc: Uc, intno: int, _ud: object) -> None:
        self.events.append(("intr", intno))
        uc.emu_stop()

    def load(self, state: dict[str, int], mem: bytes, code_at: dict[int, bytes]) -> None:
        self.uc.mem_write(DATA, mem)
        for addr, code in code_at.items():
            self.uc.mem_write(addr, code)
            self.uc.ctl_remove_cache(addr, addr + len(code))
        for k, v in state.items():
            self.view[k] = v
        self.events.clear()

    def run(self, begin: int, count: int = 0) -> None:
        try:
            self.uc.emu_start(begin, 0xFFFF_FFFF_FFFF_F000, 0, count)
        except UcError as e:
            self.events.append(("error", e.errno))

    def snapshot(self) -> tuple[dict[str, int], bytes]:
        return {k: self.view[k] for k in COMPARED}, bytes(self.uc.mem_read(DATA, DATA_SIZE))


@pytest.fixture(scope="module")
def machines() -> tuple[Machine, Machine]:
    return Machine(), Machine()


def random_state(rng: random.Random, pointers: bool) -> dict[str, int]:
    state = {"mstatus": MSTATUS_INIT, "fcsr": 0}
    for r in GPRS:
        if pointers or rng.random() < 0.3:
            state[r] = DATA + 0x8000 + 8 * rng.randrange(-64, 64)
        else:
            state[r] = rng.choice([0, 1, MASK := (1 << 64) - 1, rng.getrandbits(64), MASK >> 1])
    for f in FPRS:
        state[f] = rng.getrandbits(64)
    return state


def run_both(machines: tuple[Machine, Machine], raw: bytes, state: dict[str, int], mem: bytes):
    """Run ``raw`` at ORIG natively (A) and through the kprobe path (B); None if A traps."""
    a, b = machines
    d = dec.decode(raw + b"\0\0", ORIG)
    assert d.kind is not Kind.REJECT, d
    a.load({**state, "pc": ORIG}, mem, {ORIG: raw})
    a.run(ORIG, count=1)
    if a.events == [("error", UC_ERR_FETCH_UNMAPPED)] and a.view["pc"] != ORIG:
        a.events.clear()  # the jump completed; only fetching its unmapped target failed
    if a.events:
        return None
    expected = a.snapshot()
    b.load({**state, "pc": ORIG}, mem, {ORIG: step.probe_break(d)})
    if d.kind is Kind.SIMULATE:
        sim.simulate(d, b.view)
    else:
        b.uc.mem_write(SLOT, step.make_slot(d, SLOT))
        b.uc.ctl_remove_cache(SLOT, SLOT + 16)
        saved = step.mask_interrupts(b.view, d)
        b.view["pc"] = SLOT
        b.run(SLOT)
        assert b.events == [("break", step.step_break_addr(d, SLOT)), ("error", b.events[1][1])]
        assert step.is_step_break(bytes(b.uc.mem_read(b.view["pc"], 4)))
        step.after_step(d, b.view, SLOT, saved)
        step.restore_interrupts(b.view, saved)
    got = b.snapshot()
    return d, expected, got


def check(machines, raw: bytes, state: dict[str, int], mem: bytes) -> bool:
    res = run_both(machines, raw, state, mem)
    if res is None:
        return False
    d, (ra, ma), (rb, mb) = res
    diff = {k: (hex(ra[k]), hex(rb[k])) for k in ra if ra[k] != rb[k]}
    assert not diff, f"{d.text} ({d.kind.value}): {diff}"
    assert ma == mb, f"{d.text}: memory differs"
    return True


def hand_cases() -> list[tuple[bytes, dict[str, int]]]:
    """Every simulated instruction, taken and not taken, plus out-of-line classics."""
    a0, a1 = 10, 11
    cases: list[tuple[bytes, dict[str, int]]] = []
    for raw in [rv_jal(1, 0x800), rv_jal(0, -0x1000), rv_jal(5, 0xFFFFE), rv_jal(0, 0)]:
        cases.append((raw, {}))
    for rd, rs1, imm in [(1, a0, 0), (a0, a0, 8), (0, 1, -4), (a0, a0, 0x7FF), (5, a0, -0x800)]:
        cases.append((rv_jalr(rd, rs1, imm), {"x10": ORIG + 0x31, "x1": 0x1234_5678_9ABC}))
    for imm20, rd in [(0x12345, a0), (0xFFFFF, a0), (0x80000, 5), (0, 1), (0x7FFFF, 0)]:
        cases.append((rv_u(0x17, rd, imm20), {}))
    vals = [(5, 5), (5, 6), ((1 << 64) - 1, 1), (1, (1 << 64) - 1), (1 << 63, 0), (0, 1 << 63)]
    for f3 in (0, 1, 4, 5, 6, 7):
        for x, y in vals:
            for off in (8, -0x1000, 0xFFE):
                cases.append((rv_b(f3, a0, a1, off), {"x10": x, "x11": y}))
    cases.append((rv_b(0, a0, a0, 64), {"x10": 3}))
    for off in (0, 2, -2, 0x7FE, -0x800):
        cases.append((rv_cj(off), {}))
    for rs1 in (1, a0, 31):
        for link in (False, True):
            cases.append((rv_cjr(rs1, link), {"x1": ORIG + 0x101, "x10": 0x4000, "x31": 0x8}))
    for f3 in (6, 7):
        for val in (0, 1, 1 << 63):
            for off in (0, 0xFE, -0x100, 6):
                cases.append((rv_cb(f3, 9, off), {"x9": val}))
    # out of line: loads/stores relative to registers, AMOs, lr/sc, mul, fp, compressed
    p = {"x10": DATA + 0x100, "x11": 0x1122_3344_5566_7788, "x2": DATA + 0x800}
    cases += [
        (rv_i(0x03, 12, 3, a0, 16), p),  # ld a2, 16(a0)
        (rv_i(0x03, 12, 0, a0, -1), p),  # lb
        (rv_s(0x23, 3, a0, a1, -8), p),  # sd a1, -8(a0)
        (rv_s(0x23, 2, a0, a1, 4), p),  # sw
        (rv_r(0x2F, 12, 3, a0, a1, 0), p),  # amoadd.d
        (rv_r(0x2F, 12, 2, a0, a1, 1 << 2), p),  # amoswap.w
        (rv_r(0x2F, 12, 3, a0, 0, 0b00010 << 2), p),  # lr.d
        (rv_r(0x2F, 12, 3, a0, a1, 0b00011 << 2), p),  # sc.d without reservation: fails
        (rv_r(0x33, 12, 0, a0, a1, 1), p),  # mul
        (rv_r(0x3B, 12, 4, a0, a1, 1), p),  # divw
        (rv_r(0x53, 12, 7, a0, a1, 1), p),  # fadd.d fa2, fa0, fa1 (dyn rounding)
        (rv_i(0x07, 12, 3, a0, 8), p),  # fld
        (struct.pack("<H", 0x6402), p),  # c.ldsp s0, 0(sp)
        (struct.pack("<H", 0xE02A), p),  # c.sdsp a0, 0(sp)
        (struct.pack("<H", 0x0505), p),  # c.addi a0, 1
        (struct.pack("<H", 0x852E), p),  # c.mv a0, a1
        (rv_i(0x13, 12, 0, a0, -1), p),  # addi
        (rv_u(0x37, 12, 0x80000), p),  # lui
    ]
    return cases


def test_differential_hand_cases(machines) -> None:
    rng = random.Random(1)
    mem = bytes(rng.getrandbits(8) for _ in range(DATA_SIZE))
    base = random_state(rng, False)
    ran = 0
    for raw, regs in hand_cases():
        ran += check(machines, raw, {**base, **regs}, mem)
    assert ran == len(hand_cases())


MAJOR = [0x03, 0x07, 0x13, 0x1B, 0x23, 0x27, 0x2F, 0x33, 0x37, 0x3B, 0x43, 0x53, 0x63, 0x67, 0x6F,
         0x17]  # fmt: skip


def random_insn(rng: random.Random) -> bytes:
    if rng.random() < 0.35:
        while True:
            h = rng.getrandbits(16)
            if h & 3 != 3:
                return struct.pack("<H", h)
    w = rng.getrandbits(32) & ~0x7F | rng.choice(MAJOR)
    if w & 0x7F in (0x33, 0x3B):
        w = w & 0x01FFFFFF | rng.choice([0, 0x20, 1]) << 25
    return enc(w)


def test_differential_random(machines) -> None:
    rng = random.Random(20240611)
    mem = bytes(rng.getrandbits(8) for _ in range(DATA_SIZE))
    ran = {Kind.OOL: 0, Kind.SIMULATE: 0}
    tries = 0
    while sum(ran.values()) < 400 and tries < 20000:
        tries += 1
        raw = random_insn(rng)
        try:
            d = dec.decode(raw + b"\0\0", ORIG)
        except DecodeError:
            continue
        if d.kind is Kind.REJECT:
            continue
        if check(machines, raw, random_state(rng, rng.random() < 0.6), mem):
            ran[d.kind] += 1
    assert ran[Kind.OOL] >= 250 and ran[Kind.SIMULATE] >= 40, ran
