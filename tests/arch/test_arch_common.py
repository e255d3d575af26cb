"""Properties shared by the three arch layers: interface, fuzzed decoding, boundaries on real
compiled functions, pt_regs layouts."""

from __future__ import annotations

import importlib
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import capstone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kprobesim.probes.insn import Decision, DecodeError, DictRegView, Kind, SlotError, sext

ARCHES = ("riscv64", "loongarch64", "x86_64")


def mod(arch: str, name: str) -> ModuleType:
    return importlib.import_module(f"kprobesim.arch.{arch}.{name}")


@pytest.mark.parametrize("arch", ARCHES)
def test_interface(arch: str) -> None:
    need = {
        "decode": ["insn_length", "decode", "boundaries"],
        "simulate": ["simulate"],
        "step": ["PROBE_BREAK", "STEP_BREAK", "probe_break", "step_break", "make_slot",
                 "is_probe_break", "is_step_break", "after_step", "mask_interrupts",
                 "restore_interrupts", "step_break_addr", "SLOT_SIZE"],
        "regs": ["REG_IDS", "ALIASES", "PT_REGS_SIZE", "PT_REGS_FIELDS", "PT_REGS_OFFSETS",
                 "pack_pt_regs", "unpack_pt_regs", "ARG_REGS", "RETVAL_REG", "SP_REG", "PC_REG",
                 "FP_REG", "RA_REG", "STACK_ARGS_OFFSET"],
    }  # fmt: skip
    for m, names in need.items():
        module = mod(arch, m)
        for n in names:
            assert hasattr(module, n), f"{arch}.{m}.{n}"
    regs = mod(arch, "regs")
    assert len(regs.ARG_REGS) == 6
    for name in [*regs.ARG_REGS, regs.RETVAL_REG, regs.SP_REG, regs.PC_REG, regs.FP_REG]:
        assert name in regs.REG_IDS
    assert (regs.RA_REG is None) == (arch == "x86_64")
    if arch == "x86_64":
        assert hasattr(mod(arch, "step"), "arm_single_step")
        assert hasattr(mod(arch, "step"), "disarm_single_step")


# --- fuzzed decoding --------------------------------------------------------------------------


def exercise(arch: str, code: bytes, addr: int) -> None:
    """decode() and everything downstream of it may only raise the documented errors."""
    dec, step, sim = mod(arch, "decode"), mod(arch, "step"), mod(arch, "simulate")
    variants = ("tf", "int3") if arch == "x86_64" else (None,)
    for variant in variants:
        try:
            d = dec.decode(code, addr) if variant is None else dec.decode(code, addr, variant)
        except DecodeError as e:
            assert "\n" not in str(e) and str(e)
            continue
        assert isinstance(d, Decision) and 1 <= d.length <= len(code)
        assert d.raw == bytes(code[: d.length]) and d.addr == addr
        assert dec.insn_length(code, addr) == d.length
        if d.kind is Kind.REJECT:
            assert d.reason and "\n" not in d.reason
        elif d.kind is Kind.OOL:
            slot = (addr + 0x1000_0000) & ~0xF
            try:
                args = (d, slot) if variant is None else (d, slot, variant)
                assert step.make_slot(*args).startswith(d.raw[:1])
            except SlotError:
                pass
        else:
            regs = DictRegView({"rsp": 0x8000, "sp": 0x8000, "rflags": 0x246, "rcx": 3})
            sim.simulate(d, regs)
            assert ("rip" if arch == "x86_64" else "pc") in regs.regs  # the next pc is set


@pytest.mark.parametrize("arch", ARCHES)
def test_decode_random_bytes_seeded(arch: str) -> None:
    rng = random.Random(arch)
    kinds: dict[Kind, int] = {}
    for _ in range(4000):
        code = rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, 8, 16]))
        addr = rng.choice([0, rng.getrandbits(64), 0x8000_0000 + 2 * rng.getrandbits(16)])
        exercise(arch, code, addr)
        try:
            dec = mod(arch, "decode")
            d = dec.decode(code, addr, "int3") if arch == "x86_64" else dec.decode(code, addr)
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
        except DecodeError:
            pass
    assert len(kinds) == 3, kinds  # random bytes reach all three verdicts (x86: int3 variant)


@pytest.mark.parametrize("arch", ARCHES)
@settings(max_examples=300, deadline=None, database=None)
@given(code=st.binary(min_size=0, max_size=16), addr=st.integers(0, (1 << 64) - 1))
def test_decode_fuzz(arch: str, code: bytes, addr: int) -> None:
    exercise(arch, code, addr)


# --- boundaries on compiled functions ---------------------------------------------------------

C_SOURCE = r"""
int ext(int);
struct node { struct node *next; long v; };
long sum_list(struct node *n) { long s = 0; while (n) { s += n->v; n = n->next; } return s; }
int classify(int x) {
    switch (x) { case 0: return ext(1); case 1: return 7; case 2: return ext(x * 3);
                 case 3: return -1; case 4: return x << 4; case 5: return ext(ext(x));
                 default: return x ^ 0x55; }
}
static long counter;
long bump(long by) { counter += by; return counter; }
unsigned long mix(unsigned long a, unsigned long b, unsigned long c, unsigned long d,
                  unsigned long e, unsigned long f, unsigned long g, unsigned long h) {
    unsigned long x = a * 0x9e3779b97f4a7c15ul ^ (b >> 7);
    for (int i = 0; i < (int)(c & 15); i++) x = (x << 13 | x >> 51) + d * i;
    return x / (e | 1) + f % (g | 1) - h;
}
double fp(double a, float b) { return a * b + 1.5; }
long many(long *p, int n) { long t = 0; for (int i = 0; i < n; i++) t += p[i] * (i + 1);
                            return t > 100 ? t - bump(t) : t; }
"""
TARGETS = {
    "riscv64": (["-target", "riscv64-freestanding", "-mcpu=baseline_rv64"],
                capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCV_C
                | capstone.CS_MODE_RISCV_FD | capstone.CS_MODE_RISCV_A),
    "loongarch64": (["-target", "loongarch64-freestanding", "-mcpu=generic_la64"],
                    capstone.CS_ARCH_LOONGARCH, capstone.CS_MODE_LOONGARCH64),
    "x86_64": (["-target", "x86_64-freestanding"], capstone.CS_ARCH_X86, capstone.CS_MODE_64),
}  # fmt: skip


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import lief
    import ziglang  # noqa: F401 - the toolchain is part of the test extra
    out: dict[str, Path] = {}
    d = tmp_path_factory.mktemp("cc")
    (d / "f.c").write_text(C_SOURCE)
    for arch, (flags, _, _) in TARGETS.items():
        for opt in ("-O2", "-Os"):
            obj = d / f"f-{arch}{opt}.o"
            subprocess.run(
                [sys.executable, "-m", "ziglang", "cc", *flags, opt, "-c", str(d / "f.c"), "-o", str(obj)],
                check=True,
                capture_output=True,
            )
            out[f"{arch}{opt}"] = obj
    assert lief is not None and shutil.which(sys.executable)
    return out


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("opt", ["-O2", "-Os"])
def test_boundaries_match_capstone(compiled: dict[str, Path], arch: str, opt: str) -> None:
    import lief

    binary = lief.parse(str(compiled[f"{arch}{opt}"]))
    text = bytes(binary.get_section(".text").content)
    _, cs_arch, cs_mode = TARGETS[arch]
    md = capstone.Cs(cs_arch, cs_mode)
    dec = mod(arch, "decode")
    funcs = [s for s in binary.symbols if s.type == lief.ELF.Symbol.TYPE.FUNC and s.size]
    assert len(funcs) >= 6
    base = 0xFFFF_FFFF_8000_0000 if arch == "x86_64" else 0x8020_0000
    total = 0
    for f in funcs:
        code = text[f.value : f.value + f.size]
        start = base + f.value
        want = [i.address for i in md.disasm(code, start)]
        assert sum(i.size for i in md.disasm(code, start)) == len(code), f.name
        got = dec.boundaries(code, start)
        assert got == want, f.name
        total += len(got)
        for a in got:  # every boundary decodes to a verdict of the same length
            d = dec.decode(text[a - base : a - base + 16], a)
            assert d.length == (got[got.index(a) + 1] if a != got[-1] else start + len(code)) - a
    assert total > 60


# --- pt_regs ----------------------------------------------------------------------------------

OFFSETS = {
    "riscv64": {"epc": 0, "ra": 8, "sp": 16, "s0": 64, "a0": 80, "a7": 136, "t6": 248,
                "status": 256, "badaddr": 264, "cause": 272, "orig_a0": 280, "pc": 0, "x10": 80},
    "loongarch64": {"r1": 8, "sp": 24, "a0": 32, "a7": 88, "fp": 176, "r31": 248,
                    "orig_a0": 256, "csr_era": 264, "csr_badvaddr": 272, "csr_crmd": 280,
                    "csr_prmd": 288, "csr_euen": 296, "csr_ecfg": 304, "csr_estat": 312,
                    "pc": 264},
    "x86_64": {"r15": 0, "r14": 8, "r13": 16, "r12": 24, "bp": 32, "bx": 40, "r11": 48,
               "r10": 56, "r9": 64, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104, "di": 112,
               "orig_ax": 120, "ip": 128, "cs": 136, "flags": 144, "sp": 152, "ss": 160,
               "rdi": 112, "rip": 128},
}  # fmt: skip
SIZES = {"riscv64": 288, "loongarch64": 320, "x86_64": 168}


@pytest.mark.parametrize("arch", ARCHES)
def test_pt_regs_layout_and_round_trip(arch: str) -> None:
    regs = mod(arch, "regs")
    assert regs.PT_REGS_SIZE == SIZES[arch]
    for name, off in OFFSETS[arch].items():
        assert regs.PT_REGS_OFFSETS[name] == off, name
    offs = sorted(f.offset for f in regs.PT_REGS_FIELDS)
    assert offs == list(range(0, SIZES[arch], 8))
    rng = random.Random(arch)
    values = {n: rng.getrandbits(64) for n in regs.REG_IDS}
    for zero in getattr(regs, "ZERO_REGS", ()):
        values[zero] = 0
    seen: list[str] = []

    def get(name: str) -> int:
        seen.append(name)
        return values[name]

    data = regs.pack_pt_regs(get)
    assert len(data) == SIZES[arch]
    out = regs.unpack_pt_regs(data)
    for f in regs.PT_REGS_FIELDS:
        if f.reg is not None and f.name not in ("csr_estat",):
            assert out[f.name] == values[f.reg], f.name
    assert all(n in regs.REG_IDS for n in seen)
    extra = {f.name: rng.getrandbits(64) for f in regs.PT_REGS_FIELDS}
    assert regs.unpack_pt_regs(regs.pack_pt_regs(get, extra)) == extra
    assert regs.pack_pt_regs(get, regs.unpack_pt_regs(data)) == data
    with pytest.raises(ValueError):
        regs.unpack_pt_regs(data[:-1])
    # the argument registers land where libbpf's PT_REGS_PARMn read them
    parm = {"riscv64": [80, 88, 96, 104, 112], "loongarch64": [32, 40, 48, 56, 64],
            "x86_64": [112, 104, 96, 88, 72]}[arch]  # fmt: skip
    for name, off in zip(regs.ARG_REGS, parm, strict=False):
        assert int.from_bytes(data[off : off + 8], "little") == values[name]
    rc = regs.PT_REGS_OFFSETS[regs.RETVAL_REG]
    assert int.from_bytes(data[rc : rc + 8], "little") == values[regs.RETVAL_REG]


def test_pt_regs_defaults() -> None:
    zero = lambda name: 0x1234 if name == "a0" else 0  # noqa: E731
    rv = mod("riscv64", "regs").unpack_pt_regs(mod("riscv64", "regs").pack_pt_regs(zero))
    assert rv["cause"] == 3 and rv["orig_a0"] == 0x1234 and rv["badaddr"] == 0
    la = mod("loongarch64", "regs").unpack_pt_regs(mod("loongarch64", "regs").pack_pt_regs(zero))
    assert (la["csr_estat"] >> 16) & 0x3F == 0xC and la["orig_a0"] == 0x1234
    x = mod("x86_64", "regs").unpack_pt_regs(mod("x86_64", "regs").pack_pt_regs(zero))
    assert x["orig_ax"] == (1 << 64) - 1


def test_engine_ids() -> None:
    from unicorn import riscv_const as R
    from unicorn import x86_const as X

    from kprobesim.engine.pcode import loongarch_const as L

    rv = mod("riscv64", "regs").REG_IDS
    assert rv["a0"] == rv["x10"] == R.UC_RISCV_REG_A0 and rv["t6"] == R.UC_RISCV_REG_T6
    assert rv["fs11"] == R.UC_RISCV_REG_FS11 and rv["fa0"] == R.UC_RISCV_REG_FA0
    assert rv["mstatus"] == R.UC_RISCV_REG_MSTATUS and rv["pc"] == R.UC_RISCV_REG_PC
    la = mod("loongarch64", "regs").REG_IDS
    assert la["a0"] == la["r4"] == L.LA_REG_A0 and la["fp"] == L.LA_REG_FP
    assert la["era"] == L.LA_REG_CSR_ERA and la["crmd"] == L.LA_REG_CSR_CRMD
    xr = mod("x86_64", "regs").REG_IDS
    assert xr["rdi"] == xr["di"] == X.UC_X86_REG_RDI and xr["rflags"] == X.UC_X86_REG_RFLAGS


def test_insn_helpers() -> None:
    assert sext(0xFFF, 12) == -1 and sext(0x7FF, 12) == 0x7FF
    r = DictRegView({"x10": 5}, aliases={"x10": "a0"}, zero=frozenset({"zero"}))
    assert r["a0"] == 5
    r["zero"] = 7
    assert r["zero"] == 0
    r.write_mem(0xFFFF_FFFF_FFFF_FFFF, b"\x01\x02")
    assert r.read_mem(0xFFFF_FFFF_FFFF_FFFF, 2) == b"\x01\x02" and r.read_mem(0, 1) == b"\x02"
    d = Decision(Kind.OOL, 0x10, 4, b"\0" * 4, "nop")
    assert d.end == 0x14
