"""x86_64 instruction layer: classification, slots, TF and int3 step variants vs. native Unicorn.

Each case runs the instruction in place on one Unicorn (count=1) and through the kprobe path
on a second: the re-based slot copy at an address 1 GiB away, single-stepped with TF (or
ended by its int3), then after_step(); or simulate() for the int3 variant's simulated ops.
All general registers, rip, rflags, xmm registers, the stack and the data pages must match.
"""

from __future__ import annotations

import random

import keystone
import pytest
from arch_testlib import UcRegView
from kprobesim.arch.x86_64 import decode as dec
from kprobesim.arch.x86_64 import regs as xregs
from kprobesim.arch.x86_64 import simulate as sim
from kprobesim.arch.x86_64 import step
from unicorn import UC_ARCH_X86, UC_ERR_FETCH_UNMAPPED, UC_HOOK_INTR, UC_MODE_64, Uc, UcError
from unicorn import x86_const as X

from kprobesim.probes.insn import DecodeError, DictRegView, Kind, SlotError

CODE_BASE, CODE_SIZE = 0x40_0000, 0x10000
ORIG = 0x40_1000
DATA, DATA_SIZE = 0x60_0000, 0x10000
STACK, STACK_SIZE = 0x7F_0000, 0x10000
SP0 = STACK + 0x8000
SLOT = ORIG + 0x4000_0000  # 1 GiB away: RIP-relative data still in reach, but not unchanged
FAR_SLOT = 0x2_0000_0000  # 8 GiB away: out of reach

IF, TF = 1 << 9, 1 << 8
ARITH = 0x8D5  # CF PF AF ZF SF OF
GPRS = list(xregs.GPR_NAMES)
XMMS = [f"xmm{i}" for i in range(16)]
REG_IDS = {**xregs.REG_IDS, **{x: getattr(X, f"UC_X86_REG_{x.upper()}") for x in XMMS}}

_ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)


def asm(text: str, addr: int = ORIG) -> bytes:
    """Assemble with keystone; ``#hex`` gives raw bytes (for what keystone cannot spell)."""
    if text.startswith("#"):
        return bytes.fromhex(text[1:])
    return bytes(_ks.asm(text, addr)[0])


def riprel(text: str, target: int) -> bytes:
    """Assemble ``text`` (with ``[rip + 0x12345678]``) and point its operand at ``target``."""
    raw = bytearray(asm(text))
    d = dec.decode(bytes(raw), ORIG)
    off = d.info.rip_disp_offset
    assert off is not None, text
    raw[off : off + 4] = (target - (ORIG + len(raw))).to_bytes(4, "little", signed=True)
    return bytes(raw)


# --- classification -----------------------------------------------------------------------------

REJECTS = {
    "cc": "int3", "cd80": "int", "f1": "int1", "cf": "iret", "48cf": "iret", "cb": "lret",
    "ca0800": "lret", "0f0b": "ud2", "0fb9c0": "ud1", "0fffc0": "ud0", "8ed0": "mov ss",
    "ff15f0ffffff": "memory-indirect", "ff20": "memory-indirect", "ff6500": "memory-indirect",
    "ff1d00000000": "far", "ff2c24": "far", "0f05": "syscall", "0f07": "sysret",
    "f4": "hlt", "66e8000000": "operand-size", "66c3": "operand-size",
    "c7f800000000": "xbegin", "678b0500000000": "EIP-relative",
}  # fmt: skip


@pytest.mark.parametrize("hexcode", sorted(REJECTS))
def test_rejects(hexcode: str) -> None:
    for variant in step_variants():
        d = dec.decode(bytes.fromhex(hexcode) + b"\x90" * 8, ORIG, variant)
        assert d.kind is Kind.REJECT and REJECTS[hexcode] in d.reason, (d.text, d.reason)


def step_variants() -> tuple[str, ...]:
    return ("tf", "int3")


@pytest.mark.parametrize(
    ("text", "fixup", "sim_op"),
    [
        ("call 0x401100", "call", "call"), ("call rax", "call_indirect", "call_reg"),
        ("call r12", "call_indirect", "call_reg"), ("jmp rax", "keep", "jmp_reg"),
        ("ret", "keep", "ret"), ("ret 8", "keep", "ret"), ("pushfq", "pushf", "pushf"),
        ("popfq", "add", "popf"), ("cli", "add", "cli"), ("sti", "add", "sti"),
        ("jmp 0x401100", "add", "jmp"), ("je 0x401100", "add", "jcc"),
        ("jne 0x402000", "add", "jcc"), ("loop 0x401010", "add", "loop"),
        ("jrcxz 0x401010", "add", "jrcxz"), ("mov rax, qword ptr [rip + 0x100]", "add", ""),
        ("lea rdi, [rip - 0x100]", "add", ""), ("push rax", "add", ""),
    ],
)  # fmt: skip
def test_fixup_kinds(text: str, fixup: str, sim_op: str) -> None:
    d = dec.decode(asm(text), ORIG, "tf")
    assert d.kind is Kind.OOL and d.info.fixup == fixup
    d3 = dec.decode(asm(text), ORIG, "int3")
    assert d3.kind is (Kind.SIMULATE if sim_op else Kind.OOL) and d3.info.sim == sim_op


def test_prefixes_and_lengths() -> None:
    cases = {
        "3effe0": (3, "keep"),  # notrack jmp rax
        "f2c3": (2, "keep"),  # bnd ret
        "41ffd3": (3, "call_indirect"),  # call r11
        "2e0f1f840000000000": (9, "add"),  # cs nopw
        "f0480fb10d00100000": (9, "add"),  # lock cmpxchg [rip+0x1000], rcx
        "c5f877": (3, "add"),  # vzeroupper (VEX)
    }
    for hx, (n, fix) in cases.items():
        d = dec.decode(bytes.fromhex(hx) + b"\x90" * 6, ORIG)
        assert d.length == n == dec.insn_length(bytes.fromhex(hx) + b"\x90", ORIG)
        assert d.kind is Kind.OOL and d.info.fixup == fix, d
    d = dec.decode(bytes.fromhex("f0480fb10d00100000"), ORIG)
    assert d.info.rip_disp_offset == 5 and d.info.rip_disp == 0x1000
    assert dec.decode(bytes.fromhex("488d0500000000"), ORIG).info.rip_target == 0
    assert dec.decode(bytes.fromhex("4801d8"), ORIG).info.rip_target is None


def test_slots() -> None:
    d = dec.decode(riprel("mov rax, qword ptr [rip + 0x12345678]", DATA + 8), ORIG)
    slot = step.make_slot(d, SLOT)
    assert len(slot) == d.length + 1 and slot[:3] == d.raw[:3] and slot[-1:] == b"\xcc"  # TF: backstop int3
    assert step.backstop_addr(d, SLOT) == SLOT + d.length
    new = int.from_bytes(slot[3:7], "little", signed=True)
    assert SLOT + d.length + new == DATA + 8
    d3 = dec.decode(d.raw, ORIG, "int3")
    assert step.make_slot(d3, SLOT, "int3") == step.make_slot(d3, SLOT) == slot  # same bytes, other role
    with pytest.raises(SlotError, match="out of reach"):
        step.make_slot(d, FAR_SLOT)
    plain = dec.decode(asm("add rax, rbx"), ORIG)
    assert step.make_slot(plain, FAR_SLOT) == plain.raw + b"\xcc"  # no displacement: any slot works
    assert step.probe_break(plain) == b"\xcc" and step.step_break() == b""
    assert step.step_break("int3") == b"\xcc" and step.is_step_break(b"\xcc")
    assert step.is_probe_break(b"\xcc\x90") and not step.is_probe_break(b"\x90")
    assert step.step_break_addr(dec.decode(plain.raw, ORIG, "int3"), SLOT, "int3") == SLOT + 3
    assert step.step_break_addr(plain, SLOT) is None
    with pytest.raises(SlotError):
        step.make_slot(dec.decode(asm("jmp 0x401100"), ORIG, "int3"), SLOT, "int3")
    with pytest.raises(SlotError, match="decode"):  # decided for "tf", stepped as "int3"
        step.make_slot(dec.decode(asm("jmp 0x401100"), ORIG), SLOT, "int3")
    d3 = dec.decode(asm("add rax, rbx"), ORIG, "int3")
    assert step.make_slot(d3, SLOT) == d3.raw + b"\xcc" and step.step_break_addr(d3, SLOT) == SLOT + 3
    with pytest.raises(ValueError):
        step.step_break("bogus")


def test_interrupt_flag_bookkeeping() -> None:
    regs = DictRegView({"rflags": 0x202 | TF})
    saved = step.mask_interrupts(regs)
    assert regs["rflags"] & IF == 0 and saved == IF | TF
    step.restore_interrupts(regs, saved)
    assert regs["rflags"] == 0x202 | TF
    cli = dec.decode(b"\xfa", ORIG)
    regs = DictRegView({"rflags": 0x202})
    saved = step.mask_interrupts(regs, cli)
    assert saved == 0  # IF modifier: keep what the instruction did
    regs["rflags"] = 0x2
    step.restore_interrupts(regs, saved)
    assert regs["rflags"] == 0x2
    step.arm_single_step(regs)
    assert regs["rflags"] & TF
    step.disarm_single_step(regs)
    assert not regs["rflags"] & TF


def test_condition_table() -> None:
    cf, zf, sf, of, pf = 1, 1 << 6, 1 << 7, 1 << 11, 1 << 2
    assert sim.condition(0x4, zf) and not sim.condition(0x5, zf)  # e / ne
    assert sim.condition(0x2, cf) and sim.condition(0x7, 0)  # b / a
    assert sim.condition(0xC, sf) and sim.condition(0xC, of) and not sim.condition(0xC, sf | of)
    assert sim.condition(0xE, zf) and sim.condition(0xF, sf | of)  # le / g
    assert sim.condition(0xA, pf) and sim.condition(0x0, of)


# --- differential execution ---------------------------------------------------------------------

SKIP_MNEMONICS = ("rdtsc", "rdrand", "rdseed", "rdpid", "rdpmc", "xgetbv", "in", "out", "ins",
                  "outs", "mov", "pop", "lgdt", "lidt", "lldt", "ltr", "wrmsr", "rdmsr", "swapgs",
                  "wbinvd", "invd", "invlpg", "clts", "lmsw", "monitor", "mwait", "wrfsbase",
                  "wrgsbase", "xsave", "xrstor", "fxrstor", "ldmxcsr", "fldenv", "frstor",
                  "vmcall", "vmlaunch", "vmresume", "vmxoff", "sgdt", "sidt", "sldt", "str",
                  "smsw", "cpuid", "enqcmd", "clui", "stui", "uiret", "verr", "verw", "lar",
                  "lsl", "arpl", "rsm", "fxsave", "sysexit")  # fmt: skip


def skip_random(d) -> bool:
    """Instructions a random test cannot compare: nondeterministic, I/O, or machine state."""
    m = d.text.split()[0] if d.text else ""
    if m in ("mov", "pop") and any(s in d.text for s in ("cr", "dr", "s,", "fs", "gs", "ss")):
        return True  # control/debug/segment register writes
    if m in ("mov", "pop"):
        return False
    return m in SKIP_MNEMONICS or m.startswith(("xsave", "xrstor", "rep ins", "rep outs"))


class Machine:
    """One Unicorn x86_64 with code, data, stack and slot pages; a pristine context per case."""

    def __init__(self) -> None:
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        for base, size in ((CODE_BASE, CODE_SIZE), (DATA, DATA_SIZE), (STACK, STACK_SIZE),
                           (SLOT & ~0xFFF, 0x1000), (FAR_SLOT, 0x1000)):  # fmt: skip
            self.uc.mem_map(base, size)
        self.view = UcRegView(self.uc, REG_IDS)
        self.events: list[tuple[str, int]] = []
        self.uc.hook_add(UC_HOOK_INTR, self._intr)
        self.ctx = self.uc.context_save()

    def _intr(self, uc: Uc, intno: int, _ud: object) -> None:
        self.events.append(("intr", intno))
        uc.emu_stop()

    def load(self, state: dict[str, int], mem: bytes, stack: bytes, code: dict[int, bytes]):
        self.uc.context_restore(self.ctx)
        self.uc.mem_write(DATA, mem)
        self.uc.mem_write(STACK, stack)
        for addr, c in code.items():
            self.uc.mem_write(addr, c)
            self.uc.ctl_remove_cache(addr, addr + len(c))
        for k, v in state.items():
            self.view[k] = v
        self.events.clear()

    def run(self, begin: int, count: int = 0) -> None:
        try:
            self.uc.emu_start(begin, 0xFFFF_FFFF_FFFF_F000, 0, count)
        except UcError as e:
            self.events.append(("error", e.errno))

    def snapshot(self) -> tuple[dict[str, int], bytes, bytes]:
        regs = {k: self.view[k] for k in [*GPRS, "rip", "rflags", *XMMS]}
        return regs, bytes(self.uc.mem_read(DATA, DATA_SIZE)), bytes(self.uc.mem_read(STACK, STACK_SIZE))


@pytest.fixture(scope="module")
def machines() -> tuple[Machine, Machine]:
    return Machine(), Machine()


def run_kprobe_path(b: Machine, d, variant: str) -> None:
    """Execute decision ``d`` on machine ``b`` the way the registry will."""
    if d.kind is Kind.SIMULATE:
        sim.simulate(d, b.view)
        return
    b.uc.mem_write(SLOT, step.make_slot(d, SLOT, variant) + b"\xcc" * 4)
    b.uc.ctl_remove_cache(SLOT, SLOT + 32)
    saved = step.mask_interrupts(b.view, d)
    b.view["rip"] = SLOT
    if variant == "tf":
        step.arm_single_step(b.view)
        b.run(SLOT)
        while b.events == [("intr", 1)] and step.step_incomplete(d, b.view, SLOT):
            b.events.clear()
            b.run(b.view["rip"])
        assert b.events == [("intr", 1)], (d.text, b.events)
        step.disarm_single_step(b.view, d)
    else:
        b.run(SLOT)
        assert b.events == [("intr", 3)], (d.text, b.events)
        assert b.view["rip"] == step.step_break_addr(d, SLOT, variant) + 1  # after the int3
    step.after_step(d, b.view, SLOT, saved)  # the variant comes from the decision
    step.restore_interrupts(b.view, saved)


def check(machines, raw: bytes, state, mem, stack, variant: str, d=None) -> bool:
    a, b = machines
    d = d or dec.decode(raw + b"\x90" * 16, ORIG, variant)
    assert d.kind is not Kind.REJECT, (d.text, d.reason)
    state = {"rsp": SP0, **state, "rip": ORIG}
    a.load(state, mem, stack, {ORIG: d.raw + b"\x90" * 16})
    a.run(ORIG, count=1)
    while d.info.rep_string and not a.events and a.view["rip"] == ORIG:
        a.run(ORIG, count=1)  # Unicorn counts each rep iteration as one instruction
    if a.events == [("error", UC_ERR_FETCH_UNMAPPED)] and a.view["rip"] != ORIG:
        a.events.clear()  # a jump completed; only fetching its unmapped target failed
    if a.events:
        return False
    ra, ma, sa = a.snapshot()
    b.load(state, mem, stack, {ORIG: step.probe_break(d) + d.raw[1:] + b"\x90" * 16})
    run_kprobe_path(b, d, variant)
    rb, mb, sb = b.snapshot()
    diff = {k: (hex(ra[k]), hex(rb[k])) for k in ra if ra[k] != rb[k]}
    assert not diff, f"{variant}: {d.text} [{d.raw.hex()}] ({d.kind.value}): {diff}"
    assert ma == mb, f"{variant}: {d.text}: data memory differs"
    assert sa == sb, f"{variant}: {d.text}: stack differs"
    return True


def base_state(rng: random.Random, pointers: bool = True) -> dict[str, int]:
    st = {}
    for r in GPRS:
        if r == "rsp":
            continue
        if pointers and rng.random() < 0.7:
            st[r] = DATA + 0x8000 + 8 * rng.randrange(-256, 256)
        else:
            st[r] = rng.choice([0, 1, 2, (1 << 64) - 1, rng.getrandbits(64), rng.getrandbits(32)])
    st["rflags"] = 0x2 | rng.choice([IF, IF, 0]) | (rng.getrandbits(12) & ARITH)
    for x in XMMS:
        st[x] = rng.getrandbits(128)
    return st


def hand_cases() -> list[tuple[bytes, dict[str, int]]]:
    t = DATA + 0x100
    c: list[tuple[bytes, dict[str, int]]] = []
    for text in ["mov rax, qword ptr [rip + 0x12345678]", "lea rdi, [rip + 0x12345678]",
                 "mov qword ptr [rip + 0x12345678], rbx", "mov dword ptr [rip + 0x12345678], 0x11",
                 "mov word ptr [rip + 0x12345678], 0x1234", "cmp byte ptr [rip + 0x12345678], 0x7",
                 "add dword ptr [rip + 0x12345678], eax", "push qword ptr [rip + 0x12345678]",
                 "lock xadd dword ptr [rip + 0x12345678], ecx", "movsd xmm0, qword ptr [rip + 0x12345678]",
                 "vmovdqu xmm1, xmmword ptr [rip + 0x12345678]", "inc qword ptr [rip + 0x12345678]",
                 "imul eax, dword ptr [rip + 0x12345678], 0x1234567"]:  # fmt: skip
        for target in (t, t - 0x40, DATA + 0xF000):
            c.append((riprel(text, target), {}))
    for text in ["call 0x401100", "call 0x400010", "jmp 0x401100", "jmp 0x401005", "call rax",
                 "call r12", "call rsp", "jmp rax", "jmp r11", "ret", "ret 0x10",
                 "#3effe0", "#f2c3", "#f2e800010000", "#2e3e7403"]:  # fmt: skip
        c.append((asm(text), {"rax": ORIG + 0x300, "r12": 0x1234, "r11": ORIG - 8}))
    for cc in range(16):
        for flags in (0x2, 0x2 | 0x8D5, 0x2 | 1 << 6, 0x2 | 1 << 7, 0x2 | 1 << 11, 0x2 | 0x41):
            c.append((bytes([0x70 | cc, 0x10]), {"rflags": flags | IF}))
            c.append((bytes([0x0F, 0x80 | cc]) + (-0x200).to_bytes(4, "little", signed=True),
                      {"rflags": flags}))  # fmt: skip
    for op in (0xE0, 0xE1, 0xE2, 0xE3):
        for rcx in (0, 1, 2, 1 << 32):
            for zf in (0, 1 << 6):
                c.append((bytes([op, 0xF0]), {"rcx": rcx, "rflags": 0x202 | zf}))
                c.append((bytes([0x67, op, 0x20]), {"rcx": rcx, "rflags": 0x202 | zf}))
    for flags in (0x202, 0x2, 0x202 | 0x8D5, 0x2 | 0x400):
        for text in ["pushfq", "pushf", "popfq", "popf", "cli", "sti", "push rax", "pop rbx",
                     "push 0x12", "enter 0x20, 0", "leave", "lahf", "sahf"]:  # fmt: skip
            c.append((asm(text), {"rflags": flags, "rax": 0x8D5, "rbp": SP0 + 0x40}))
    for text in ["rep movsb", "rep stosq", "repne scasb", "rep movsq", "movsb", "cmpsb"]:
        for rcx in (0, 1, 5):
            c.append((asm(text), {"rcx": rcx, "rsi": DATA + 0x100, "rdi": DATA + 0x200}))
    for text in ["xchg rax, rbx", "lock cmpxchg qword ptr [rdi], rsi", "div rcx", "imul rax, rbx",
                 "nop dword ptr [rax + rax]", "bswap r9", "cmovne rax, qword ptr [rdi + 8]",
                 "setb al", "adc rax, rbx", "bt qword ptr [rdi], 3"]:  # fmt: skip
        c.append((asm(text), {"rdi": DATA + 0x40, "rcx": 7, "rdx": 3}))
    return c


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_differential_hand_cases(machines, variant: str) -> None:
    rng = random.Random(7)
    mem = rng.randbytes(DATA_SIZE)
    stack = rng.randbytes(STACK_SIZE)
    ran = 0
    cases = hand_cases()
    for raw, regs in cases:
        ran += check(machines, raw, {**base_state(rng), **regs}, mem, stack, variant)
    assert ran == len(cases)


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_popf_of_a_word_with_tf_and_if(machines, variant: str) -> None:
    rng = random.Random(3)
    mem = rng.randbytes(DATA_SIZE)
    for popped in (0x302, 0x102, 0x202, 0x2, 0x8D7 | 0x300):
        for flags in (0x202, 0x2):
            stack = bytearray(rng.randbytes(STACK_SIZE))
            stack[SP0 - STACK : SP0 - STACK + 8] = popped.to_bytes(8, "little")
            for text in ("popfq", "popf"):
                st = {**base_state(rng), "rflags": flags}
                assert check(machines, asm(text), st, mem, bytes(stack), variant)


def random_code(rng: random.Random) -> bytes:
    out = bytearray()
    if rng.random() < 0.2:
        out.append(rng.choice([0x66, 0xF2, 0xF3, 0xF0, 0x2E, 0x3E, 0x64, 0x67]))
    if rng.random() < 0.5:
        out.append(0x40 | rng.getrandbits(4))
    if rng.random() < 0.25:
        out.append(0x0F)
    out.append(rng.getrandbits(8))
    modrm = rng.getrandbits(8)
    if rng.random() < 0.3:
        modrm = modrm & 0x38 | 0x05  # RIP-relative
    elif rng.random() < 0.7:
        modrm &= 0x7F  # mostly no disp32 (reachable memory)
    out.append(modrm)
    out += rng.randbytes(8)
    return bytes(out)


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_differential_random(machines, variant: str) -> None:
    rng = random.Random(99 if variant == "tf" else 100)
    mem = rng.randbytes(DATA_SIZE)
    stack = rng.randbytes(STACK_SIZE)
    ran = riprel_ran = tries = 0
    while ran < 300 and tries < 30000:
        tries += 1
        code = random_code(rng)
        try:
            d = dec.decode(code, ORIG, variant)
        except DecodeError:
            continue
        if d.kind is Kind.REJECT or skip_random(d):
            continue
        if d.info.sim == "ret" and d.info.imm >= 0x8000:
            continue  # QEMU/Unicorn sign-extend ret's imm16 (hardware: unsigned); simulate is right
        if d.info.rip_disp_offset is not None:
            raw = bytearray(d.raw)
            off = d.info.rip_disp_offset
            target = DATA + 0x100 + rng.randrange(0, 0x1000)
            raw[off : off + 4] = (target - (ORIG + len(raw))).to_bytes(4, "little", signed=True)
            d = dec.decode(bytes(raw), ORIG, variant)
        if check(machines, d.raw, base_state(rng, rng.random() < 0.8), mem, stack, variant, d):
            ran += 1
            riprel_ran += d.info.rip_disp_offset is not None
    assert ran >= 300 and riprel_ran >= 40, (ran, riprel_ran, tries)
