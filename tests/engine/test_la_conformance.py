"""Differential conformance of the LoongArch P-code engine against qemu-loongarch64.

``KPROBESIM_LA_SEQS`` sets the number of random sequences (default 2000) and
``KPROBESIM_LA_SEED`` the seed (default 20240601). The test fails (does not skip) when
qemu-loongarch64 is missing: CI installs Debian's qemu-user.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import la_diff as D
import la_isa as A
import pytest
from capstone import CS_ARCH_LOONGARCH, CS_MODE_LOONGARCH64, Cs

NSEQ = int(os.environ.get("KPROBESIM_LA_SEQS", "2000"))
SEED = int(os.environ.get("KPROBESIM_LA_SEED", "20240601"))
BATCH = 1000


@pytest.fixture(scope="module")
def runner(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if D.qemu_path() is None:
        pytest.fail("qemu-loongarch64 is not installed (Debian package qemu-user)")
    cache = getattr(request.config, "cache", None)
    where = Path(cache.mkdir("kprobesim_la_runner")) if cache else tmp_path_factory.mktemp("la")
    return D.build_runner(where)


def test_random_sequences_match_qemu(runner: Path) -> None:
    """Each sequence runs on two engines: the default one (blocks start in the compact tier and
    move to the fast tier when hot) and one that compiles every block in the fast tier."""
    gen = D.Gen(random.Random(SEED))
    engines = {"tiered": D.EngineRunner(), "fast tier": D.EngineRunner(hot_after=0)}
    failures = []
    done = 0
    while done < NSEQ:
        seqs = [gen.sequence() for _ in range(min(BATCH, NSEQ - done))]
        want = D.run_qemu(runner, seqs)
        for i, s in enumerate(seqs):
            for name, eng in engines.items():
                got = eng.run(s)
                if got != want[i]:
                    failures.append((done + i, name, s))
        done += len(seqs)
    if failures:
        n, name, s = failures[0]
        detail = D.reduce(runner, s, engines[name])
        pytest.fail(f"{len(failures)} of {2 * NSEQ} sequence runs differ (seed {SEED}); "
                    f"first is #{n} on the {name} engine:\n{detail}")


REQUIRED = set("""
add.w add.d sub.w sub.d addi.w addi.d addu16i.d alsl.w alsl.wu alsl.d lu12i.w lu32i.d lu52i.d
slt sltu slti sltui and or nor xor andn orn andi ori xori sll.w srl.w sra.w rotr.w sll.d srl.d
sra.d rotr.d slli.w srli.w srai.w rotri.w slli.d srli.d srai.d rotri.d bstrins.w bstrpick.w
bstrins.d bstrpick.d mul.w mulh.w mulh.wu mul.d mulh.d mulh.du mulw.d.w mulw.d.wu div.w mod.w
div.wu mod.wu div.d mod.d div.du mod.du ld.b ld.h ld.w ld.d ld.bu ld.hu ld.wu st.b st.h st.w
st.d ldx.b ldx.h ldx.w ldx.d ldx.bu ldx.hu ldx.wu stx.b stx.h stx.w stx.d ldptr.w ldptr.d
stptr.w stptr.d ldgt.b ldgt.h ldgt.w ldgt.d ldle.b ldle.h ldle.w ldle.d stgt.b stgt.h stgt.w
stgt.d stle.b stle.h stle.w stle.d ll.w ll.d sc.w sc.d amswap.w amswap.d amadd.w amadd.d
amand.w amand.d amor.w amor.d amxor.w amxor.d ammax.w ammax.d ammin.w ammin.d ammax.wu
ammax.du ammin.wu ammin.du amswap_db.w amswap_db.d amadd_db.w amadd_db.d amand_db.w amand_db.d
amor_db.w amor_db.d amxor_db.w amxor_db.d ammax_db.w ammax_db.d ammin_db.w ammin_db.d
ammax_db.wu ammax_db.du ammin_db.wu ammin_db.du beq bne blt bge bltu bgeu beqz bnez b bl jirl
pcaddi pcaddu12i pcaddu18i pcalau12i ext.w.b ext.w.h clo.w clz.w cto.w ctz.w clo.d clz.d cto.d
ctz.d revb.2h revb.4h revb.2w revb.d revh.2w revh.d bitrev.4b bitrev.8b bitrev.w bitrev.d
bytepick.w bytepick.d maskeqz masknez crc.w.b.w crc.w.h.w crc.w.w.w crc.w.d.w crcc.w.b.w
crcc.w.h.w crcc.w.w.w crcc.w.d.w
""".split())
ALIASES = {"move": "or", "nop": "andi", "ret": "jirl", "jr": "jirl", "bgt": "blt", "ble": "bge",
           "bgtu": "bltu", "bleu": "bgeu", "bltz": "blt", "bgez": "bge", "bgtz": "blt",
           "blez": "bge"}


def test_generator_covers_every_integer_class_and_the_fp_ops() -> None:
    cs = Cs(CS_ARCH_LOONGARCH, CS_MODE_LOONGARCH64)
    gen = D.Gen(random.Random(SEED))
    seen: set[str] = set()
    for _ in range(min(NSEQ, 2000)):
        s = gen.sequence()
        for w in s.words:
            for insn in cs.disasm(struct.pack("<I", w), 0):
                seen.add(ALIASES.get(insn.mnemonic, insn.mnemonic))
    assert REQUIRED - seen == set()
    fp = set(A.FP3) | set(A.FP2) | set(A.FP4) | {"fsel", "movcf2gr"}
    fp |= {f"fcmp.{c}.{t}" for c in A.FCMP_CONDS for t in "sd"}
    assert fp - seen == set()


def test_harness_detects_a_wrong_engine(runner: Path) -> None:
    gen = D.Gen(random.Random(1))
    seqs = []
    while len(seqs) < 20:
        s = gen.sequence()
        seqs.append(s)
    # a sequence that certainly runs a CRC instruction
    seqs.append(D.build([[A.r3("crc.w.w.w", 5, 6, 7)]], seqs[0].regs, seqs[0].mem, seqs[0].R))
    want = D.run_qemu(runner, seqs)
    eng = D.EngineRunner()
    eng.e._G["CRC32"] = lambda crc, data, n, poly: 0
    bad = sum(eng.run(s) != want[i] for i, s in enumerate(seqs))
    assert bad >= 1
