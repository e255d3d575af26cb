"""loongarch64 register names, engine ids, Linux pt_regs layout and calling convention."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kprobesim.engine.pcode import loongarch_const as _la
from kprobesim.probes.insn import PtRegsField, pack_fields, unpack_fields

#: ABI names of r0..r31 (r21 is reserved: "r21"/"u0").
GPR_NAMES: tuple[str, ...] = (
    "zero", "ra", "tp", "sp", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
    "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "r21", "fp",
    "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8",
)  # fmt: skip
#: CSR names (lower case, as in loongarch_const's CSR_* numbers).
CSR_NUMBERS: dict[str, int] = {
    n[4:].lower(): v for n, v in vars(_la).items() if n.startswith("CSR_") and isinstance(v, int)
}

#: Every register name a RegView for loongarch64 understands -> engine register id.
REG_IDS: dict[str, int] = {"pc": _la.LA_REG_PC}
for _i, _n in enumerate(GPR_NAMES):
    REG_IDS[_n] = REG_IDS[f"r{_i}"] = _la.LA_REG_R0 + _i
for _n, _v in CSR_NUMBERS.items():
    REG_IDS[_n] = _la.LA_REG_CSR_BASE + _v
REG_IDS.update({"u0": REG_IDS["r21"], "s9": REG_IDS["fp"]})
del _i, _n, _v

#: Alternative name -> canonical (ABI) name.
ALIASES: dict[str, str] = {f"r{i}": n for i, n in enumerate(GPR_NAMES) if f"r{i}" != n}
ALIASES.update({"u0": "r21", "s9": "fp", "v0": "a0", "v1": "a1"})
ZERO_REGS = frozenset({"zero"})

ARG_REGS: tuple[str, ...] = ("a0", "a1", "a2", "a3", "a4", "a5")
ALL_ARG_REGS: tuple[str, ...] = (*ARG_REGS, "a6", "a7")
RETVAL_REG = "a0"
SP_REG = "sp"
PC_REG = "pc"
FP_REG = "fp"
RA_REG: str | None = "ra"
#: ``$stackN`` reads the u64 at ``sp + STACK_ARGS_OFFSET + 8*N`` (Linux
#: regs_get_kernel_stack_nth: the Nth word at the probe's sp, nothing skipped).
STACK_ARGS_OFFSET = 0
#: Where the first stack-passed argument (the 9th) lives relative to sp at function entry.
STACK_PARAM_OFFSET = 0

#: Linux ``struct pt_regs`` (arch/loongarch/include/asm/ptrace.h); 320 bytes.
PT_REGS_FIELDS: tuple[PtRegsField, ...] = (
    *(PtRegsField(f"r{i}", 8 * i, n) for i, n in enumerate(GPR_NAMES)),
    PtRegsField("orig_a0", 256, None),
    PtRegsField("csr_era", 264, "pc"),
    PtRegsField("csr_badvaddr", 272, "badv"),
    PtRegsField("csr_crmd", 280, "crmd"),
    PtRegsField("csr_prmd", 288, "prmd"),
    PtRegsField("csr_euen", 296, "euen"),
    PtRegsField("csr_ecfg", 304, "ecfg"),
    PtRegsField("csr_estat", 312, None),
)
PT_REGS_SIZE = 320
#: Byte offset of each field, also under ABI names (``a0`` -> 32, ``sp`` -> 24, ``pc`` -> 264).
PT_REGS_OFFSETS: dict[str, int] = {f.name: f.offset for f in PT_REGS_FIELDS}
PT_REGS_OFFSETS.update({n: 8 * i for i, n in enumerate(GPR_NAMES)})
PT_REGS_OFFSETS.update({"pc": 264, "era": 264, "s9": 176, "u0": 168})

ESTAT_ECODE_SHIFT = 16
ESTAT_ECODE_MASK = 0x3F << ESTAT_ECODE_SHIFT
ESTAT_ESUBCODE_MASK = 0x1FF << 22
_DEFAULTS: dict[str, Callable[[Callable[[str], int]], int]] = {
    "orig_a0": lambda get: get("a0"),
    "csr_estat": lambda get: (
        (get("estat") & ~(ESTAT_ECODE_MASK | ESTAT_ESUBCODE_MASK)) | (_la.EXC_BRK << ESTAT_ECODE_SHIFT)
    ),
}


def pack_pt_regs(get: Callable[[str], int], extra: Mapping[str, int] | None = None) -> bytes:
    """Build Linux's loongarch64 pt_regs from a register getter.

    ``extra`` overrides any field by its pt_regs name. Defaults: csr_era = pc, orig_a0 = a0,
    csr_estat = ESTAT with Ecode = BRK (as at a kprobe break), other CSRs read live.
    """
    return pack_fields(PT_REGS_FIELDS, PT_REGS_SIZE, get, extra, _DEFAULTS)


def unpack_pt_regs(data: bytes) -> dict[str, int]:
    """Decode pt_regs bytes into ``{field name: value}`` (r0..r31, orig_a0, csr_*)."""
    return unpack_fields(PT_REGS_FIELDS, PT_REGS_SIZE, data)
