"""x86_64 register names, engine ids, Linux pt_regs layout and calling convention."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from unicorn import x86_const as _uc

from kprobesim.probes.insn import PtRegsField, pack_fields, unpack_fields

GPR_NAMES: tuple[str, ...] = (
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip
_OTHER = ("rip", "rflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base",
          "cr0", "cr2", "cr3", "cr4")  # fmt: skip

#: Every register name a RegView for x86_64 understands -> Unicorn register id.
REG_IDS: dict[str, int] = {n: getattr(_uc, f"UC_X86_REG_{n.upper()}") for n in GPR_NAMES + _OTHER}
#: Alternative name -> canonical name (pt_regs names, "pc", "eflags").
ALIASES: dict[str, str] = {
    "ax": "rax", "cx": "rcx", "dx": "rdx", "bx": "rbx", "sp": "rsp", "bp": "rbp",
    "si": "rsi", "di": "rdi", "ip": "rip", "pc": "rip", "flags": "rflags", "eflags": "rflags",
}  # fmt: skip
for _a, _c in ALIASES.items():
    REG_IDS[_a] = REG_IDS[_c]
del _a, _c
ZERO_REGS: frozenset[str] = frozenset()

ARG_REGS: tuple[str, ...] = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
ALL_ARG_REGS = ARG_REGS
RETVAL_REG = "rax"
SP_REG = "rsp"
PC_REG = "rip"
FP_REG = "rbp"
#: No return-address register: at function entry it is the u64 at [rsp].
RA_REG: str | None = None
#: ``$stackN`` reads the u64 at ``sp + STACK_ARGS_OFFSET + 8*N`` (Linux
#: regs_get_kernel_stack_nth: at function entry ``$stack0`` is the return address).
STACK_ARGS_OFFSET = 0
#: Where the first stack-passed argument (the 7th) lives relative to rsp at function entry.
STACK_PARAM_OFFSET = 8

#: Linux ``struct pt_regs`` (arch/x86/include/asm/ptrace.h, x86_64); 168 bytes.
PT_REGS_FIELDS: tuple[PtRegsField, ...] = tuple(
    PtRegsField(name, 8 * i, reg)
    for i, (name, reg) in enumerate([
        ("r15", "r15"), ("r14", "r14"), ("r13", "r13"), ("r12", "r12"), ("bp", "rbp"),
        ("bx", "rbx"), ("r11", "r11"), ("r10", "r10"), ("r9", "r9"), ("r8", "r8"),
        ("ax", "rax"), ("cx", "rcx"), ("dx", "rdx"), ("si", "rsi"), ("di", "rdi"),
        ("orig_ax", None), ("ip", "rip"), ("cs", "cs"), ("flags", "rflags"), ("sp", "rsp"),
        ("ss", "ss"),
    ])
)  # fmt: skip
PT_REGS_SIZE = 168
#: Byte offset of each field, also under the 64-bit register names (``rdi`` -> 112).
PT_REGS_OFFSETS: dict[str, int] = {f.name: f.offset for f in PT_REGS_FIELDS}
PT_REGS_OFFSETS.update({f.reg: f.offset for f in PT_REGS_FIELDS if f.reg})
PT_REGS_OFFSETS["pc"] = PT_REGS_OFFSETS["ip"]

_DEFAULTS: dict[str, Callable[[Callable[[str], int]], int]] = {"orig_ax": lambda get: -1}


def pack_pt_regs(get: Callable[[str], int], extra: Mapping[str, int] | None = None) -> bytes:
    """Build Linux's x86_64 pt_regs from a register getter.

    ``extra`` overrides any field by its pt_regs name; orig_ax defaults to -1 (what Linux's
    exception entry stores for int3/#DB).
    """
    return pack_fields(PT_REGS_FIELDS, PT_REGS_SIZE, get, extra, _DEFAULTS)


def unpack_pt_regs(data: bytes) -> dict[str, int]:
    """Decode pt_regs bytes into ``{field name: value}`` (r15, ..., ip, cs, flags, sp, ss)."""
    return unpack_fields(PT_REGS_FIELDS, PT_REGS_SIZE, data)
