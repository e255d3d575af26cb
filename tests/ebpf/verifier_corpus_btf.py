"""The verifier corpus's second part: programs whose verdict depends on the kernel's BTF —
fentry/fexit contexts laid out from a function's prototype, fields read through BTF-typed
pointers — and loops found since the first part was written, each with Linux 6.12's verdict.

The targets are functions and structs of Debian trixie's Linux 6.12 (riscv64), the kernel
``tests/linux/test_verifier_oracle.py`` boots: Linux loads each program as
``BPF_PROG_TYPE_TRACING`` with ``attach_btf_id`` = the function's id in its vmlinux BTF
(loading does not attach, so nothing runs); kprobesim verifies the same instructions against
the same BTF (``tests/linux/test_verifier_btf_corpus.py``). Struct offsets in the assembly are
``{struct.field}`` placeholders filled from that BTF, so the programs stay right if the layout
moves.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import verifier_corpus as base

from kprobesim.ebpf.btf import BTF_KIND_FUNC, BTF_KIND_STRUCT, Btf
from kprobesim.ebpf.isa import encode

# Linux's enum bpf_prog_type / bpf_attach_type values the oracle needs
PROG_TYPE = {"kprobe": 2, "fentry": 26, "fexit": 26}
ATTACH_TYPE = {"kprobe": 0, "fentry": 24, "fexit": 25}


@dataclass(frozen=True)
class Case:
    name: str
    rule: str
    linux: str | None  # None: accepted; else (a part of) the verifier's last log line
    asm: str
    kind: str = "fentry"  # kprobe / fentry / fexit
    func: str = ""  # the fentry/fexit target
    license: str = base.GPL
    c: bool = False  # asm holds C (a kprobe program), compiled as in the first part

    def source(self, btf: Btf) -> str:
        """The assembly with its ``{struct.field}`` offsets filled from ``btf``."""
        return re.sub(r"\{(\w+)\.(\w+)\}", lambda m: str(field_offset(btf, m[1], m[2])), self.asm)

    def insns(self, btf: Btf):
        return base._compiled(self.asm)[0] if self.c else base.assemble(self.source(btf))

    def map_specs(self) -> tuple[tuple, ...]:
        return base._compiled(self.asm)[1] if self.c else ()


def field_offset(btf: Btf, struct_name: str, field: str) -> int:
    tid = btf.find(struct_name, BTF_KIND_STRUCT)
    assert tid is not None, f"struct {struct_name} is not in the kernel's BTF"
    return btf.member(tid, field).bit_offset // 8


def struct_size(btf: Btf, struct_name: str) -> int:
    tid = btf.find(struct_name, BTF_KIND_STRUCT)
    assert tid is not None
    return btf.size_of(tid)


_ARG0 = "ldxdw %r2, [%r1+0]\n"  # vfs_read(struct file *file, char *buf, size_t count, loff_t *pos)

CASES: list[Case] = [
    # ---- accepted ------------------------------------------------------------------------------------
    Case("fentry_args", "ctx[i] is the i-th argument as a u64 (BPF_PROG)", None,
         "ldxdw %r2, [%r1+0]\nldxdw %r3, [%r1+8]\nldxdw %r4, [%r1+16]\nldxdw %r5, [%r1+24]\nmov %r0, 0\nexit",
         func="vfs_read"),
    Case("fexit_retval", "fexit's ctx[nargs] is the return value", None,
         "ldxdw %r2, [%r1+32]\nmov %r0, 0\nexit", kind="fexit", func="vfs_read"),
    Case("fentry_narrow_int", "an integer argument may be read narrower", None,
         "ldxw %r2, [%r1+16]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("fentry_char_ptr_is_number", "a pointer to char is a number, not a BTF pointer", None,
         "ldxdw %r2, [%r1+8]\nand %r2, 1\nmov %r0, 0\nexit", func="vfs_read"),
    Case("btf_field_read", "a struct pointer argument's field read directly", None,
         _ARG0 + "ldxw %r3, [%r2+{file.f_mode}]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("btf_nested_struct_field", "a field inside an embedded struct (atomic_long_t f_count)", None,
         _ARG0 + "ldxdw %r3, [%r2+{file.f_count}]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("btf_pointer_walk", "a struct pointer member gives another BTF pointer", None,
         _ARG0 + "ldxdw %r3, [%r2+{file.f_op}]\nldxdw %r4, [%r3+{file_operations.owner}]\nmov %r0, 0\nexit",
         func="vfs_read"),
    Case("btf_const_arith", "constant arithmetic on a BTF pointer, then a read", None,
         _ARG0 + "add %r2, {file.f_mode}\nldxw %r3, [%r2+0]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("fexit_open_how", "fexit sees the arguments and a long return value", None,
         "ldxdw %r2, [%r1+16]\nldxdw %r3, [%r2+{open_how.flags}]\nldxdw %r4, [%r1+24]\nmov %r0, 0\nexit",
         kind="fexit", func="do_sys_openat2"),
    Case("func_arg_helpers", "bpf_get_func_arg_cnt and bpf_get_func_arg read a trampoline context", None,
         "mov %r6, %r1\ncall 185\nmov %r1, %r6\nmov %r2, 0\nmov %r3, %r10\nadd %r3, -8\ncall 183\n"
         "ldxdw %r0, [%r10-8]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("func_ret_helper", "bpf_get_func_ret writes a u64 on the stack", None,
         "mov %r2, %r10\nadd %r2, -8\ncall 184\nmov %r0, 0\nexit", kind="fexit", func="vfs_read"),
    Case("task_btf_kprobe", "bpf_get_current_task_btf() fields read directly in a kprobe program", None,
         "call 158\nldxw %r0, [%r0+{task_struct.pid}]\nexit", kind="kprobe"),

    # ---- refused -------------------------------------------------------------------------------------
    Case("fentry_beyond_args", "no ctx slot past the arguments", "invalid bpf_context access off=32 size=8",
         "ldxdw %r2, [%r1+32]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("fexit_beyond_retval", "no ctx slot past the return value", "invalid bpf_context access off=40 size=8",
         "ldxdw %r2, [%r1+40]\nmov %r0, 0\nexit", kind="fexit", func="vfs_read"),
    Case("fentry_mid_slot", "ctx reads start at a slot", "invalid bpf_context access off=4 size=4",
         "ldxw %r2, [%r1+4]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("fentry_narrow_pointer", "pointer arguments are read whole", "invalid bpf_context access off=0 size=4",
         "ldxw %r2, [%r1+0]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("fentry_ctx_write", "the context is read-only", "invalid bpf_context access off=0 size=8",
         "mov %r2, 0\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit", func="vfs_read"),
    Case("fexit_returns_1", "fentry/fexit programs return 0",
         "At program exit the register R0 has smin=1 smax=1 should have been in [0, 0]",
         "mov %r0, 1\nexit", kind="fexit", func="vfs_read"),
    Case("btf_field_write", "BTF pointers are read-only in tracing programs", "only read is supported",
         _ARG0 + "mov %r3, 0\nstxw [%r2+{file.f_mode}], %r3\nmov %r0, 0\nexit", func="vfs_read"),
    Case("btf_beyond_struct", "reads stay inside the struct", "access beyond struct file at off",
         _ARG0 + "ldxdw %r3, [%r2+{size.file}]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("btf_negative_offset", "no read before the struct", "R2 is ptr_file invalid negative access: off=-8",
         _ARG0 + "add %r2, -8\nldxdw %r3, [%r2+0]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("btf_variable_offset", "reads at a constant offset only", "R2 is ptr_file invalid variable offset: off=0",
         "ldxdw %r6, [%r1+0]\ncall 7\nand %r0, 7\nmov %r2, %r6\nadd %r2, %r0\nldxb %r3, [%r2+0]\nmov %r0, 0\nexit",
         func="vfs_read"),
    Case("btf_narrow_ptr_member", "pointer members are read whole",
         "cannot access ptr member f_op with moff",
         _ARG0 + "ldxw %r3, [%r2+{file.f_op}]\nmov %r0, 0\nexit", func="vfs_read"),
    Case("func_arg_cnt_in_kprobe", "the func-arg helpers are for trampoline programs only",
         "program of this type cannot use helper bpf_get_func_arg_cnt#185", "call 185\nexit", kind="kprobe"),
    Case("func_arg_misaligned", "the helper's u64 is aligned", "misaligned stack access off 0+-12+0 size 8",
         "mov %r2, 0\nmov %r3, %r10\nadd %r3, -12\ncall 183\nmov %r0, 0\nexit", func="vfs_read"),
    Case("key_counter_at_slot_start",
         "Linux 6.12 counts every helper access to the stack as a possible write (ACCESS_HELPER): the map "
         "key's spilled counter becomes data and the loop repeats a state exactly",
         "infinite loop detected at insn 4", """
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8); __type(key, u32); __type(value, u64);
} a SEC(".maps");
SEC("kprobe/do_work") int p(void *ctx)
{
    for (u64 k = 0; k < 8; k++) {
        u64 *v = bpf_map_lookup_elem(&a, &k);
        if (v)
            *v += 1;
    }
    return 0;
}""", kind="kprobe", c=True),
]


def _sizes(case: Case, btf: Btf) -> Case:
    """``{size.S}`` placeholders: sizeof(struct S)."""
    text = re.sub(r"\{size\.(\w+)\}", lambda m: str(struct_size(btf, m[1])), case.asm)
    return Case(case.name, case.rule, case.linux, text, case.kind, case.func, case.license, case.c)


def resolved(btf: Btf) -> list[Case]:
    """The cases with their sizes filled from ``btf``."""
    return [_sizes(c, btf) if not c.c else c for c in CASES]


def corpus_bin(btf: Btf) -> bytes:
    """This part in ``tests/linux/bpfcheck.c``'s second format (``KPB2``): the first part's
    records, each followed by u32 prog_type, expected_attach_type and attach_btf_id."""
    cases = resolved(btf)
    out = bytearray(b"KPB2" + struct.pack("<I", len(cases)))
    for c in cases:
        out += base._u16s(c.name) + base._u16s(c.license)
        fid = btf.find(c.func, BTF_KIND_FUNC) if c.kind != "kprobe" else 0
        assert fid is not None, f"{c.func} is not a FUNC in the kernel's BTF"
        out += struct.pack("<3I", PROG_TYPE[c.kind], ATTACH_TYPE[c.kind], fid)
        maps = c.map_specs()
        out += struct.pack("<I", len(maps))
        for mtype, ksz, vsz, maxe, flags, extra, init in maps:
            out += struct.pack("<7I", mtype, ksz, vsz, maxe, flags, extra, len(init)) + init
        insns = c.insns(btf)
        code = encode(insns)
        out += struct.pack("<I", len(code) // 8) + code
        entries = base.subprograms(insns)
        blob = base._btf(len(entries))
        out += struct.pack("<I", len(blob)) + blob + struct.pack("<I", len(entries))
        out += b"".join(struct.pack("<II", pc, 3 + i) for i, pc in enumerate(entries))
    return bytes(out)
