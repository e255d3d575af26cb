"""riscv64 register names, engine ids, Linux pt_regs layout and calling convention."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from unicorn import riscv_const as _uc

from kprobesim.probes.insn import PtRegsField, pack_fields, unpack_fields

#: ABI names of x0..x31.
GPR_NAMES: tuple[str, ...] = (
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1",
    "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
    "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
    "t3", "t4", "t5", "t6",
)  # fmt: skip
#: ABI names of f0..f31.
FPR_NAMES: tuple[str, ...] = (
    "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1",
    "fa0", "fa1", "fa2", "fa3", "fa4", "fa5", "fa6", "fa7",
    "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9", "fs10", "fs11",
    "ft8", "ft9", "ft10", "ft11",
)  # fmt: skip
CSR_NAMES: tuple[str, ...] = (
    "mstatus", "misa", "medeleg", "mideleg", "mie", "mtvec", "mscratch", "mepc", "mcause",
    "mtval", "mip", "mhartid", "sstatus", "sie", "stvec", "sscratch", "sepc", "scause",
    "stval", "sip", "satp", "fcsr", "fflags", "frm", "priv",
)  # fmt: skip

#: Every register name a RegView for riscv64 understands -> Unicorn register id.
REG_IDS: dict[str, int] = {"pc": _uc.UC_RISCV_REG_PC}
for _i, _n in enumerate(GPR_NAMES):
    REG_IDS[_n] = REG_IDS[f"x{_i}"] = _uc.UC_RISCV_REG_X0 + _i
for _i, _n in enumerate(FPR_NAMES):
    REG_IDS[_n] = REG_IDS[f"f{_i}"] = _uc.UC_RISCV_REG_F0 + _i
for _n in CSR_NAMES:
    REG_IDS[_n] = getattr(_uc, f"UC_RISCV_REG_{_n.upper()}")
REG_IDS["fp"] = REG_IDS["s0"]
del _i, _n

#: Alternative name -> canonical (ABI) name.
ALIASES: dict[str, str] = {f"x{i}": n for i, n in enumerate(GPR_NAMES)}
ALIASES.update({f"f{i}": n for i, n in enumerate(FPR_NAMES)})
ALIASES.update({"fp": "s0", "epc": "pc", "ip": "pc"})
ZERO_REGS = frozenset({"zero"})

ARG_REGS: tuple[str, ...] = ("a0", "a1", "a2", "a3", "a4", "a5")
ALL_ARG_REGS: tuple[str, ...] = (*ARG_REGS, "a6", "a7")
RETVAL_REG = "a0"
SP_REG = "sp"
PC_REG = "pc"
FP_REG = "s0"
RA_REG: str | None = "ra"
#: ``$stackN`` reads the u64 at ``sp + STACK_ARGS_OFFSET + 8*N`` (Linux
#: regs_get_kernel_stack_nth: the Nth word at the probe's sp, nothing skipped).
STACK_ARGS_OFFSET = 0
#: Where the first stack-passed argument (the 9th) lives relative to sp at function entry.
STACK_PARAM_OFFSET = 0

#: Linux ``struct pt_regs`` (arch/riscv/include/asm/ptrace.h): epc, x1..x31, status,
#: badaddr, cause, orig_a0; 288 bytes.
PT_REGS_FIELDS: tuple[PtRegsField, ...] = (
    PtRegsField("epc", 0, "pc"),
    *(PtRegsField(n, 8 * i, n) for i, n in enumerate(GPR_NAMES) if i),
    PtRegsField("status", 256, "mstatus"),
    PtRegsField("badaddr", 264, None),
    PtRegsField("cause", 272, None),
    PtRegsField("orig_a0", 280, None),
)
PT_REGS_SIZE = 288
#: Byte offset of each field, also under register aliases (``a0``/``x10`` -> 80, ``pc`` -> 0).
PT_REGS_OFFSETS: dict[str, int] = {f.name: f.offset for f in PT_REGS_FIELDS}
PT_REGS_OFFSETS.update({f"x{i}": 8 * i for i in range(1, 32)})
PT_REGS_OFFSETS.update({"pc": 0, "ip": 0, "fp": 64})

EXC_BREAKPOINT = 3
_DEFAULTS: dict[str, Callable[[Callable[[str], int]], int]] = {
    "cause": lambda get: EXC_BREAKPOINT,
    "orig_a0": lambda get: get("a0"),
}


def pack_pt_regs(get: Callable[[str], int], extra: Mapping[str, int] | None = None) -> bytes:
    """Build Linux's riscv64 pt_regs from a register getter.

    ``extra`` overrides any field by its pt_regs name. Defaults: status = mstatus (our kernels
    run in M-mode; pass ``status`` for S-mode), cause = 3 (breakpoint, as at a kprobe hit),
    badaddr = 0, orig_a0 = a0 (Linux's trap entry saves a0 there on every trap).
    """
    return pack_fields(PT_REGS_FIELDS, PT_REGS_SIZE, get, extra, _DEFAULTS)


def unpack_pt_regs(data: bytes) -> dict[str, int]:
    """Decode pt_regs bytes into ``{field name: value}`` (epc, ra, sp, ..., orig_a0)."""
    return unpack_fields(PT_REGS_FIELDS, PT_REGS_SIZE, data)
