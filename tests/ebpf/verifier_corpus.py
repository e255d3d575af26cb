"""The verifier corpus: kprobe programs with Linux's verdict on each and the rule it exercises.

Each :class:`Case` is a program in the project's assembly (``lddw %rN, map_fd[i]`` names the
case's i-th map) with its maps and license. ``linux`` is Linux's verdict for a program loaded by
root as ``BPF_PROG_TYPE_KPROBE``: ``None`` for accepted, else the text of the verifier's message
(its last log line). The verdicts were obtained from Linux 6.12 (Debian trixie, riscv64) by
``tests/linux/test_verifier_oracle.py``, which loads :func:`corpus_bin` with ``bpf(2)`` in a QEMU
guest and checks every one of them again.
"""

from __future__ import annotations

import functools
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kprobesim.ebpf import isa
from kprobesim.ebpf.asm import assemble
from kprobesim.ebpf.isa import encode

# map specs: (type, key_size, value_size, max_entries, flags, map_extra, initial value of element 0)
HASH = (1, 8, 8, 16, 0, 0, b"")
ARRAY = (2, 4, 8, 4, 0, 0, b"")
ARRAY16 = (2, 4, 16, 4, 0, 0, b"")
RINGBUF = (27, 0, 0, 4096, 0, 0, b"")
PROG_ARRAY = (3, 4, 4, 2, 0, 0, b"")
QUEUE = (22, 0, 8, 4, 0, 0, b"")
RODATA = (2, 4, 16, 1, 0x80, 0, b"%d items\0\0\0\0\0\0\0\0")  # BPF_F_RDONLY_PROG, frozen after init
BSS = (2, 4, 16, 1, 0, 0, b"")
GPL = "GPL"
PROPRIETARY = "Proprietary"


@dataclass(frozen=True)
class Case:
    name: str
    rule: str  # the Linux rule exercised
    linux: str | None  # None: accepted; else the verifier's message
    asm: str
    maps: tuple[tuple, ...] = ()
    license: str = GPL
    tags: tuple[str, ...] = field(default=())
    c: bool = False  # asm holds C source, compiled by Debian's clang (clang -target bpf -O2 -g)

    @property
    def insns(self):
        return _compiled(self.asm)[0] if self.c else assemble(self.asm)

    @property
    def map_specs(self) -> tuple[tuple, ...]:
        return _compiled(self.asm)[1] if self.c else self.maps


INCLUDE = Path(__file__).resolve().parents[2] / "kprobesim" / "ebpf" / "include"


@functools.cache
def _compiled(source: str) -> tuple[list, tuple[tuple, ...]]:
    """The first program of a C source and its maps, as the ELF loader links them."""
    from kprobesim.ebpf import isa as _isa
    from kprobesim.ebpf.elf import load_object

    cc = shutil.which("clang")
    assert cc, "Debian's clang is missing (apt-get install clang)"
    with tempfile.TemporaryDirectory() as d:
        src, obj = Path(d) / "p.c", Path(d) / "p.o"
        src.write_text(_C_HEAD + source)
        res = subprocess.run([cc, "-target", "bpf", "-O2", "-g", "-c", "-D__TARGET_ARCH_riscv", f"-I{INCLUDE}",
                              "-I/usr/include", "-Wall", str(src), "-o", str(obj)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        o = load_object(obj, None)
    maps = tuple((m.map_type, m.key_size, m.value_size, m.max_entries, m.flags, m.extra.get("map_extra", 0),
                  m.initial_value or b"") for m in o.maps)
    return list(_isa.decode(o.programs[0].insns)), maps


_C_HEAD = """#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
"""


_LOOKUP = """
    stdw [%r10-8], 0
    mov %r2, %r10
    add %r2, -8
    lddw %r1, map_fd[0]
    call 1
"""

CASES: list[Case] = [
    # ---- accepted ------------------------------------------------------------------------------------
    Case("ret_zero", "r0 set before exit", None, "mov %r0, 0\nexit"),
    Case("ctx_read", "aligned read inside struct pt_regs", None, "ldxdw %r0, [%r1+16]\nexit"),
    Case("stack_spill_fill", "a spilled constant is read back", None,
         "stdw [%r10-8], 7\nldxdw %r0, [%r10-8]\nexit"),
    Case("uninit_stack_read_root", "root may read uninitialised stack (allow_uninit_stack)", None,
         "ldxdw %r0, [%r10-16]\nexit"),
    Case("lookup_null_checked", "map_value_or_null becomes map_value after a null check", None,
         _LOOKUP + "jeq %r0, 0, out\nldxdw %r0, [%r0+0]\nexit\nout: mov %r0, 0\nexit", (HASH,)),
    Case("lookup_write_value", "stores into a map value inside value_size", None,
         _LOOKUP + "jeq %r0, 0, out\nstdw [%r0+0], 1\nout: mov %r0, 0\nexit", (HASH,)),
    Case("null_check_copy", "a null check on a copy resolves the original (same id)", None,
         _LOOKUP + "mov %r6, %r0\njne %r6, 0, ok\nmov %r0, 0\nexit\nok: ldxdw %r0, [%r0+0]\nexit", (HASH,)),
    Case("masked_index", "var &= const bounds a variable offset into a map value", None,
         _LOOKUP + "jeq %r0, 0, out\nmov %r6, %r0\ncall 5\nand %r0, 15\nadd %r6, %r0\nldxb %r0, [%r6+0]\nexit\n"
         "out: mov %r0, 0\nexit", (ARRAY16,)),
    Case("signed_checked_index", "signed bounds [0, 8] from two signed compares", None,
         _LOOKUP + "jeq %r0, 0, out\nmov %r6, %r0\ncall 5\njslt %r0, 0, out\njsgt %r0, 8, out\n"
         "add %r6, %r0\nldxb %r0, [%r6+7]\nexit\nout: mov %r0, 0\nexit", (ARRAY16,)),
    Case("bounded_loop", "a loop the verifier walks to its bound (i < 100)", None,
         "mov %r6, 0\nl: add %r6, 1\njlt %r6, 100, l\nmov %r0, 0\nexit"),
    Case("bounded_loop_32", "a loop counted in a 32-bit subregister", None,
         "mov32 %r6, 0\nl: add32 %r6, 1\njlt32 %r6, 50, l\nmov %r0, 0\nexit"),
    Case("probe_read_masked_size", "a size bounded by var &= const", None,
         "call 5\nmov %r2, %r0\nand %r2, 63\nmov %r1, %r10\nadd %r1, -64\nmov %r3, 0\ncall 113\n"
         "mov %r0, 0\nexit"),
    Case("probe_read_checked_size", "a size bounded by if (var < const)", None,
         "call 5\nmov %r2, %r0\njgt %r2, 32, out\nmov %r1, %r10\nadd %r1, -32\nmov %r3, 0\ncall 113\n"
         "out: mov %r0, 0\nexit"),
    Case("non_gpl_plain_helper", "non-GPL programs may call helpers that are not gpl_only", None,
         "call 5\nmov %r0, 0\nexit", license=PROPRIETARY),
    Case("ringbuf_submit", "a reserved record is released by submit", None,
         "lddw %r1, map_fd[0]\nmov %r2, 8\nmov %r3, 0\ncall 131\njeq %r0, 0, out\nstdw [%r0+0], 1\n"
         "mov %r1, %r0\nmov %r2, 0\ncall 132\nout: mov %r0, 0\nexit", (RINGBUF,)),
    Case("ringbuf_discard", "a reserved record is released by discard", None,
         "lddw %r1, map_fd[0]\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, out\n"
         "mov %r1, %r0\nmov %r2, 0\ncall 133\nout: mov %r0, 0\nexit", (RINGBUF,)),
    Case("tail_call", "bpf_tail_call(ctx, prog_array, index)", None,
         "lddw %r2, map_fd[0]\nmov %r3, 0\ncall 12\nmov %r0, 0\nexit", (PROG_ARRAY,)),
    Case("loop_callback", "bpf_loop with a callback returning 0", None,
         "mov %r1, 10\nlddw %r2, func[cb]\nmov %r3, 0\nmov %r4, 0\ncall 181\nmov %r0, 0\nexit\n"
         "cb: mov %r0, 0\nexit"),
    Case("loop_callback_ctx", "the callback reads the caller's stack through its context", None,
         "stdw [%r10-8], 0\nmov %r1, 10\nlddw %r2, func[cb]\nmov %r3, %r10\nadd %r3, -8\nmov %r4, 0\ncall 181\n"
         "mov %r0, 0\nexit\ncb: ldxdw %r0, [%r2+0]\nmov %r0, 1\nexit"),
    Case("for_each_hash", "bpf_for_each_map_elem's callback reads key and value", None,
         "lddw %r1, map_fd[0]\nlddw %r2, func[cb]\nmov %r3, 0\nmov %r4, 0\ncall 164\nmov %r0, 0\nexit\n"
         "cb: ldxdw %r0, [%r2+0]\nldxdw %r0, [%r3+0]\nmov %r0, 0\nexit", (HASH,)),
    Case("subprog_call", "a bpf-to-bpf call returns r0", None,
         "call local f\nexit\nf: mov %r0, 1\nexit"),
    Case("subprog_stack_arg", "a callee reads the caller's stack through a pointer", None,
         "stdw [%r10-8], 3\nmov %r1, %r10\nadd %r1, -8\ncall local f\nexit\nf: ldxdw %r0, [%r1+0]\nexit"),
    Case("dead_branch_skipped", "a branch the state decides is not walked", None,
         "mov %r1, 5\njgt %r1, 10, bad\nmov %r0, 0\nexit\nbad: ldxdw %r0, [%r1+0]\nexit"),
    Case("spill_map_ptr", "a map pointer spilled and filled keeps its type", None,
         "lddw %r1, map_fd[0]\nstxdw [%r10-16], %r1\nstdw [%r10-8], 0\nldxdw %r1, [%r10-16]\nmov %r2, %r10\n"
         "add %r2, -8\ncall 1\nmov %r0, 0\nexit", (HASH,)),
    Case("atomic_add_value", "atomic add into a map value", None,
         _LOOKUP + "jeq %r0, 0, out\nmov %r1, 1\nlock add [%r0+0], %r1\nout: mov %r0, 0\nexit", (HASH,)),
    Case("strncmp_rodata", "bpf_strncmp's string lives in a frozen read-only map", None,
         "stdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\nlddw %r3, map_value[0]+0\ncall 182\n"
         "mov %r0, 0\nexit", (RODATA,)),
    Case("queue_push_pop", "queue maps take push/pop", None,
         "stdw [%r10-8], 1\nlddw %r1, map_fd[0]\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 0\ncall 87\n"
         "lddw %r1, map_fd[0]\nmov %r2, %r10\nadd %r2, -8\ncall 88\nmov %r0, 0\nexit", (QUEUE,)),
    Case("global_data", "direct access to a global-data array value", None,
         "lddw %r1, map_value[0]+8\nldxdw %r0, [%r1+0]\nstdw [%r1+0], 2\nexit", (BSS,)),
    Case("get_func_ip", "helpers taking the context", None, "call 173\nexit"),
    Case("ptr_diff", "subtracting two stack pointers gives a number", None,
         "mov %r1, %r10\nmov %r2, %r10\nadd %r2, -8\nsub %r1, %r2\nmov %r0, %r1\nexit"),
    Case("narrow_spill_loop", "a u32 counter spilled at a slot start keeps its bound", None,
         "stw [%r10-8], 0\nl: ldxw %r1, [%r10-8]\nadd %r1, 1\nstxw [%r10-8], %r1\njlt %r1, 20, l\n"
         "mov %r0, 0\nexit"),

    Case("ringbuf_output", "a record copied from the stack", None,
         "stdw [%r10-8], 1\nlddw %r1, map_fd[0]\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\nmov %r4, 0\ncall 130\n"
         "mov %r0, 0\nexit", (RINGBUF,)),
    Case("get_current_comm", "a helper fills an uninitialised stack buffer", None,
         "mov %r1, %r10\nadd %r1, -16\nmov %r2, 16\ncall 16\nldxdw %r0, [%r10-16]\nexit"),
    Case("snprintf_rodata_fmt", "bpf_snprintf's format is a string in a frozen read-only map", None,
         "stdw [%r10-40], 42\nmov %r1, %r10\nadd %r1, -32\nmov %r2, 16\nlddw %r3, map_value[0]+0\n"
         "mov %r4, %r10\nadd %r4, -40\nmov %r5, 8\ncall 165\nmov %r0, 0\nexit", (RODATA,)),
    Case("trace_printk_stack_fmt", "bpf_trace_printk's format may live on the stack", None,
         "lddw %r1, 0x0a6968\nstxdw [%r10-8], %r1\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 6\n"
         "mov %r0, 0\nexit"),
    Case("alu32_masked_index", "a 32-bit and bounds the zero-extended index", None,
         _LOOKUP + "jeq %r0, 0, out\nmov %r6, %r0\ncall 5\nand32 %r0, 15\nadd %r6, %r0\nldxb %r0, [%r6+0]\nexit\n"
         "out: mov %r0, 0\nexit", (ARRAY16,)),

    # ---- refused -------------------------------------------------------------------------------------
    Case("r0_uninit", "r0 must be set before exit", "R0 !read_ok", "exit"),
    Case("r0_uninit_one_path", "every path sets r0", "R0 !read_ok",
         "ldxdw %r2, [%r1+0]\njeq %r2, 0, e\nmov %r0, 1\ne: exit"),
    Case("uninit_reg_read", "reading a register never written", "R5 !read_ok", "mov %r0, %r5\nexit"),
    Case("gpl_only_helper", "GPL-only helpers need a GPL-compatible license",
         "cannot call GPL-restricted function from non-GPL compatible program",
         "mov %r1, %r10\nadd %r1, -8\nmov %r2, 8\nmov %r3, 0\ncall 113\nmov %r0, 0\nexit", license=PROPRIETARY),
    Case("unbounded_read_size", "a helper's size must be bounded (an unknown u64 may be negative)",
         "R2 min value is negative, either use unsigned or 'var &= const'",
         "call 5\nmov %r2, %r0\nmov %r1, %r10\nadd %r1, -64\nmov %r3, 0\ncall 113\nmov %r0, 0\nexit"),
    Case("unbounded_read_size_positive", "a helper's size must be bounded above",
         "R2 unbounded memory access, use 'var &= const' or 'if (var < const)'",
         "call 5\nmov %r2, %r0\nrsh %r2, 1\nmov %r1, %r10\nadd %r1, -64\nmov %r3, 0\ncall 113\nmov %r0, 0\nexit"),
    Case("size_too_big", "a helper's size must fit the buffer", "invalid indirect access to stack R1 off=-64 size=100",
         "mov %r1, %r10\nadd %r1, -64\nmov %r2, 100\nmov %r3, 0\ncall 113\nmov %r0, 0\nexit"),
    Case("runtime_bounded_loop", "a loop bounded only at run time does not terminate provably",
         "infinite loop detected at insn 0", "l: call 7\njne %r0, 0, l\nmov %r0, 0\nexit"),
    Case("endless_loop", "ja -1: the instruction after it is unreachable", "unreachable insn 1", "l: ja l\nexit"),
    Case("endless_loop_reachable", "a jump to itself", "infinite loop detected at insn 2",
         "ldxdw %r2, [%r1+0]\njeq %r2, 0, out\nl: ja l\nout: mov %r0, 0\nexit"),
    Case("scalar_deref", "a number is not a pointer", "R1 invalid mem access 'scalar'",
         "mov %r1, 4096\nldxdw %r0, [%r1+0]\nexit"),
    Case("lookup_unchecked", "a lookup's result may be NULL", "R0 invalid mem access 'map_value_or_null'",
         _LOOKUP + "ldxdw %r0, [%r0+0]\nexit", (HASH,)),
    Case("value_oob", "accesses stay inside value_size", "R0 min value is outside of the allowed memory range",
         _LOOKUP + "jeq %r0, 0, out\nldxdw %r0, [%r0+8]\nexit\nout: mov %r0, 0\nexit", (HASH,)),
    Case("value_negative_off", "no access before a map value", "R0 min value is outside of the allowed memory range",
         _LOOKUP + "jeq %r0, 0, out\nldxdw %r0, [%r0-8]\nexit\nout: mov %r0, 0\nexit", (HASH,)),
    Case("stack_oob", "the stack is 512 bytes", "invalid write to stack R10 off=-520 size=8",
         "stdw [%r10-520], 1\nmov %r0, 0\nexit"),
    Case("stack_above_fp", "nothing above the frame pointer", "invalid write to stack R10 off=0 size=8",
         "stdw [%r10+0], 1\nmov %r0, 0\nexit"),
    Case("ctx_write", "a kprobe's context is read-only", "invalid bpf_context access off=0 size=8",
         "mov %r2, 1\nstxdw [%r1+0], %r2\nmov %r0, 0\nexit"),
    Case("ctx_oob", "reads stay inside struct pt_regs", "invalid bpf_context access off=4096 size=8",
         "ldxdw %r0, [%r1+4096]\nexit"),
    Case("ctx_misaligned", "context reads are aligned (riscv64: strict alignment)",
         "misaligned context access off 0+0+4 size 8",
         "ldxdw %r0, [%r1+4]\nexit"),
    Case("ctx_modified", "the context pointer is used unmodified",
         "dereference of modified ctx ptr R1 off=8 disallowed",
         "add %r1, 8\nldxdw %r0, [%r1+0]\nexit"),
    Case("map_ptr_arith", "no arithmetic on a map pointer", "R1 pointer arithmetic on map_ptr prohibited",
         "lddw %r1, map_fd[0]\nadd %r1, 8\nmov %r0, 0\nexit", (HASH,)),
    Case("or_null_arith", "null-check before arithmetic",
         "R0 pointer arithmetic on map_value_or_null prohibited, null-check it first",
         _LOOKUP + "add %r0, 8\nmov %r0, 0\nexit", (HASH,)),
    Case("unbounded_min_arith", "pointer math with a register of unbounded minimum",
         "math between map_value pointer and register with unbounded min value is not allowed",
         _LOOKUP + "jeq %r0, 0, out\nmov %r6, %r0\ncall 5\nadd %r6, %r0\nldxb %r0, [%r6+0]\nexit\n"
         "out: mov %r0, 0\nexit",
         (ARRAY16,)),
    Case("unbounded_index", "a variable offset must be bounded",
         "R6 unbounded memory access, make sure to bounds check any such access",
         _LOOKUP + "jeq %r0, 0, out\nmov %r6, %r0\ncall 5\nrsh %r0, 1\nadd %r6, %r0\nldxb %r0, [%r6+0]\nexit\n"
         "out: mov %r0, 0\nexit", (ARRAY16,)),
    Case("negative_index", "a variable offset must not be negative",
         "R6 min value is negative, either use unsigned index or do a if (index >=0) check.",
         _LOOKUP + "jeq %r0, 0, out\nmov %r6, %r0\ncall 5\njsgt %r0, 7, out\njslt %r0, -8, out\nadd %r6, %r0\n"
         "ldxb %r0, [%r6+0]\nexit\nout: mov %r0, 0\nexit", (ARRAY16,)),
    Case("index_past_end", "a bounded variable offset still fits the value",
         "R6 max value is outside of the allowed memory range",
         _LOOKUP + "jeq %r0, 0, out\nmov %r6, %r0\ncall 5\nand %r0, 31\nadd %r6, %r0\nldxb %r0, [%r6+0]\nexit\n"
         "out: mov %r0, 0\nexit", (ARRAY16,)),
    Case("ringbuf_leak", "a reserved record must be submitted or discarded", "Unreleased reference",
         "lddw %r1, map_fd[0]\nmov %r2, 8\nmov %r3, 0\ncall 131\nmov %r0, 0\nexit", (RINGBUF,)),
    Case("ringbuf_unchecked", "a reservation may fail", "R0 invalid mem access 'ringbuf_mem_or_null'",
         "lddw %r1, map_fd[0]\nmov %r2, 8\nmov %r3, 0\ncall 131\nstdw [%r0+0], 1\nmov %r1, %r0\nmov %r2, 0\n"
         "call 132\nmov %r0, 0\nexit", (RINGBUF,)),
    Case("callback_returns_2", "a bpf_loop callback returns 0 or 1", "At callback return the register R0 has",
         "mov %r1, 10\nlddw %r2, func[cb]\nmov %r3, 0\nmov %r4, 0\ncall 181\nmov %r0, 0\nexit\n"
         "cb: mov %r0, 2\nexit"),
    Case("unknown_helper_id", "helper ids Linux does not have", "invalid func unknown#212", "call 212\nexit"),
    Case("helper_not_for_kprobe", "helpers of other program types",
         "program of this type cannot use helper bpf_skb_store_bytes#9",
         "call 9\nmov %r0, 0\nexit"),
    Case("lookup_on_prog_array", "map types each helper takes",
         "cannot pass map_type 3 into func bpf_map_lookup_elem#1",
         "stdw [%r10-8], 0\nmov %r2, %r10\nadd %r2, -8\nlddw %r1, map_fd[0]\ncall 1\nmov %r0, 0\nexit", (PROG_ARRAY,)),
    Case("write_rodata", "a read-only map cannot be written by programs",
         "write into map forbidden, value_size=16 off=0 size=8",
         "lddw %r1, map_value[0]+0\nstdw [%r1+0], 1\nmov %r0, 0\nexit", (RODATA,)),
    Case("misaligned_stack", "stack accesses are aligned", "misaligned stack access off 0+0+-4 size 8",
         "stdw [%r10-4], 1\nmov %r0, 0\nexit"),
    Case("lookup_key_scalar", "map keys are pointers", "R2 type=scalar expected=",
         "lddw %r1, map_fd[0]\nmov %r2, 0\ncall 1\nmov %r0, 0\nexit", (HASH,)),
    Case("loop_func_scalar", "bpf_loop's callback must be a function", "R2 type=scalar expected=func",
         "mov %r1, 10\nmov %r2, 0\nmov %r3, 0\nmov %r4, 0\ncall 181\nmov %r0, 0\nexit"),
    Case("zero_size_comm", "ARG_CONST_SIZE is not zero", "R2 invalid zero-sized read",
         "mov %r1, %r10\nadd %r1, -16\nmov %r2, 0\ncall 16\nmov %r0, 0\nexit"),
    Case("ptr_32bit_arith", "no 32-bit arithmetic on pointers", "R1 32-bit pointer arithmetic prohibited",
         "mov %r1, 8\nadd32 %r1, %r10\nmov %r0, 0\nexit"),
    Case("bitwise_on_ptr", "no bitwise operations on pointers", "R1 bitwise operator &= on pointer prohibited",
         "mov %r1, %r10\nand %r1, -8\nmov %r0, 0\nexit"),
    Case("unreachable_insn", "every instruction is reachable", "unreachable insn 1",
         "ja +1\nmov %r0, 1\nmov %r0, 0\nexit"),
    Case("counter_loop_no_bound", "a counted loop that only a run-time value ends",
         "The sequence of 8193 jumps is too complex.",
         "mov %r6, 0\nl: add %r6, 1\ncall 7\njeq %r0, 0, out\nja l\nout: mov %r0, %r6\nexit"),
    Case("deep_calls", "at most 8 frames", "the call stack of 9 frames is too deep",
         "call local f1\nexit\nf1: call local f2\nexit\nf2: call local f3\nexit\nf3: call local f4\nexit\n"
         "f4: call local f5\nexit\nf5: call local f6\nexit\nf6: call local f7\nexit\nf7: call local f8\nexit\n"
         "f8: mov %r0, 0\nexit"),
]


CASES += [
    # ---- C, compiled by clang: the seeds' loops and the shapes real programs take ----------------------
    Case("seed_loop_bounded", "for (i = 0; i < 100; i++) terminates provably", None, """
u64 total;
SEC("kprobe/do_work") int p(void *ctx)
{
    for (int i = 0; i < 100; i++)
        total += bpf_get_prandom_u32() & i;
    return 0;
}""", c=True),
    Case("seed_loop_endless", "for (i = 0; 1; i++) does not (a run-time break proves nothing)",
         "infinite loop detected", """
SEC("kprobe/do_work") int p(void *ctx)
{
    for (int i = 0; 1; i++)
        if (bpf_get_prandom_u32() & 1)
            break;
    return 0;
}""", c=True),
    Case("key_counter_mid_slot", "a u32 counter mid-slot is data: its bound is lost", "infinite loop detected", """
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8); __type(key, u32); __type(value, u64);
} a SEC(".maps");
SEC("kprobe/do_work") int p(void *ctx)
{
    u64 val = 1;
    for (u32 k = 0; k < 8; k++)
        bpf_map_update_elem(&a, &k, &val, BPF_ANY);
    return 0;
}""", c=True),
]


def _u16s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<H", len(raw)) + raw


def corpus_bin(cases: list[Case] | None = None) -> bytes:
    """The corpus in the format ``tests/linux/bpfcheck.c`` reads."""
    cases = CASES if cases is None else cases
    out = bytearray(b"KPBF" + struct.pack("<I", len(cases)))
    for c in cases:
        out += _u16s(c.name) + _u16s(c.license) + struct.pack("<I", len(c.map_specs))
        for mtype, ksz, vsz, maxe, flags, extra, init in c.map_specs:
            out += struct.pack("<7I", mtype, ksz, vsz, maxe, flags, extra, len(init)) + init
        code = encode(c.insns)
        out += struct.pack("<I", len(code) // 8) + code
        entries = subprograms(c.insns)
        btf = _btf(len(entries))
        out += struct.pack("<I", len(btf)) + btf + struct.pack("<I", len(entries))
        out += b"".join(struct.pack("<II", pc, 3 + i) for i, pc in enumerate(entries))
    return bytes(out)


def subprograms(insns) -> list[int]:
    """Entry pcs of the program and of every function it calls or takes the address of."""
    entries = {0}
    for pc, insn in enumerate(insns):
        if (insn.opcode == isa.CALL_OP and insn.src == isa.CALL_LOCAL) or \
                (insn.opcode == isa.LDDW and insn.src == isa.PSEUDO_FUNC):
            entries.add(pc + 1 + insn.imm)
    return sorted(entries)


def _btf(nfuncs: int) -> bytes:
    """A BTF blob with ``int``, ``int (void)`` and static functions f0..f{n-1} of that type, for
    the func_info Linux wants of programs with subprograms and callbacks (clang -g emits it)."""
    strings = b"\0int\0" + b"".join(b"f%d\0" % i for i in range(nfuncs))
    types = struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32)  # [1] INT int, signed, 32 bits
    types += struct.pack("<III", 0, 13 << 24, 1)  # [2] FUNC_PROTO int (void)
    off = 5
    for i in range(nfuncs):  # [3+i] FUNC fi, static
        types += struct.pack("<III", off, 12 << 24, 2)
        off += len(b"f%d\0" % i)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings
