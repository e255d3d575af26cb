"""Translator: compile a verified program once into Python source, one function per subprogram.

Registers become local variables.  Inside a subprogram, control flow is a ``while True`` loop
around a binary decision tree over the *dispatch entries* (the subprogram entry and every jump
target); the code between two entries is straight-line Python, so falling through costs nothing
and a taken jump costs one ``log2(entries)`` walk (a run that jumps back to its own start, the
usual loop, becomes an inner ``while`` instead).  Loads and stores inline the memory fast path
(one dict lookup on ``addr >> 32`` plus a bounds check); accesses through r10 with a constant
offset inside the frame go straight to the frame's bytearray.  A register used as the base of
several accesses in a straight-line run keeps its region's buffer and bounds in locals (until
it is written or a call may remap memory), so each further access is one bounds check; an
access outside those bounds takes the generic path (which finds another region or faults
exactly as the interpreter does).  The budget is charged per basic block, like the
interpreter does, so both engines stop at the same pc.

64-bit results are reduced lazily: add, sub, mul, lsh, and, or, xor, neg and mov leave a Python
integer that is only *congruent* to the register modulo 2**64 (these operations commute with
the reduction), and ``& 0xffffffffffffffff`` is applied once, before anything else reads the
register (a compare, a shift right, a division, an address, a store, a helper's argument) and
before control leaves the straight-line run. A bound on each such value's bits forces the
reduction early, so a chain of multiplications never builds a huge integer.

Helpers are called directly (``r0 = H<id>(VM, r1, ..., r5)``); a call whose r1 is a constant
of the same straight-line run (an ``lddw`` of a map's address) calls ``S<pc>`` instead, which
the VM's ``binders`` may specialise for that r1 (a lookup bound to its map; by default
``S<pc>`` is the helper itself). What ``VM.call_helper`` checks on
every call (the pc of a helper's error, a non-integer result) is worked out from the traceback
only when an exception comes out of the program, from a table of the source lines that call
helpers.

Generated code objects are cached by program content: loading the same program again (another
VM, another memory) only re-executes the ``def`` statements against the new runtime bindings.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import TYPE_CHECKING

from . import alu, isa
from .errors import BudgetExhausted, EbpfError, HelperError, MemoryFault, StopProgram, TailCall
from .helper_ids import TAKES_CALLBACK
from .isa import Insn
from .memory import PACK, UNPACK
from .verifier import Program

if TYPE_CHECKING:
    from .vm import VM

M = "0xffffffffffffffff"
M32 = "0xffffffff"
S64 = 0x8000000000000000
S32 = 0x80000000
SS = isa.STACK_SIZE
#: A jump to a run of at most INLINE_RUN instructions emits the run in place (at most
#: INLINE_BUDGET instructions so per function, and nested at most INLINE_DEPTH blocks deep)
INLINE_RUN, INLINE_BUDGET, INLINE_DEPTH = 48, 512, 24
#: How far from r10 a register the translator tracks as r10 plus a constant may point
FP_REACH = 1 << 31
#: 64-bit operations whose result may stay unreduced (mov: a copy of a register)
_LAZY_OPS = frozenset((isa.ADD, isa.SUB, isa.MUL, isa.LSH, isa.OR, isa.AND, isa.XOR, isa.NEG, isa.MOV))
#: Bits an unreduced 64-bit result may reach before it is reduced anyway (see the module docstring)
LAZY_BITS = 160
#: Namespace names a function takes as defaults when its body uses them.
_LOCAL_NAMES = ("RG", "WG", "U2", "U4", "U8", "P2", "P4", "P8", "STK", "Z", "FLT", "BX", "CB", "RUN",
                "VM", "LD", "ST")


# Signed division helpers, written independently of alu.py so the engines cross-check each other.
def _trunc_div(a: int, b: int) -> int:
    q = a // b  # floor division; C truncates toward zero
    if q < 0 and q * b != a:
        q += 1
    return q


def _sdiv64(a: int, b: int) -> int:
    a = (a ^ S64) - S64
    b = (b ^ S64) - S64
    return _trunc_div(a, b) & isa.MASK64 if b else 0


def _sdiv32(a: int, b: int) -> int:
    a = ((a & 0xFFFFFFFF) ^ S32) - S32
    b = ((b & 0xFFFFFFFF) ^ S32) - S32
    return _trunc_div(a, b) & 0xFFFFFFFF if b else 0


def _smod64(a: int, b: int) -> int:
    sa = (a ^ S64) - S64
    sb = (b ^ S64) - S64
    return (sa - sb * _trunc_div(sa, sb)) & isa.MASK64 if sb else a


def _smod32(a: int, b: int) -> int:
    sa = ((a & 0xFFFFFFFF) ^ S32) - S32
    sb = ((b & 0xFFFFFFFF) ^ S32) - S32
    return (sa - sb * _trunc_div(sa, sb)) & 0xFFFFFFFF if sb else a & 0xFFFFFFFF


def _bs16(v: int) -> int:
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


def _bs32(v: int) -> int:
    return ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | ((v >> 24) & 0xFF)


def _bs64(v: int) -> int:
    return (_bs32(v) << 32) | _bs32(v >> 32)


class _Gen:
    """Source generator for one program."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.insns = prog.insns
        self.lines: list[str] = []
        self.inner: int | None = None  # entry pc of the inner loop being emitted
        #: source line (1-based) -> (pc, helper id, what): "call" lines call a helper, "mask"
        #: lines reduce its result to 64 bits (a TypeError there: the result was no integer)
        self.helper_lines: dict[int, tuple[int, int, str]] = {}
        self.cached: set[int] = set()  # base registers whose region is held in locals
        self.known: dict[int, int] = {}  # registers holding a constant in this straight-line run
        self.chain: list[int] = []  # entries of the runs being emitted, the inlined ones last
        self.fp: dict[int, int] = {}  # registers holding r10 plus a constant (exact) -> the constant
        self.inlined = 0
        #: registers holding a value only congruent modulo 2**64 (not yet reduced) -> a bound
        #: on its bits
        self.dirty: dict[int, int] = {}
        #: (number of lines after it, register, depth, value) of the last lazily reduced line
        self.last_lazy: tuple[int, int, int, str] = (-1, -1, 0, "")
        #: pc -> (helper imm, r1): helper calls whose r1 is a known constant (called as S<pc>)
        self.bound: dict[int, tuple[int, int]] = {}

    def out(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    # --- top level -------------------------------------------------------------------------------
    def program(self) -> str:
        prog = self.prog
        self.dispatch: set[int] = set()
        self.end = len(prog.insns)
        for i, entry in enumerate(prog.subprogs):
            end = prog.subprogs[i + 1] if i + 1 < len(prog.subprogs) else len(prog.insns)
            self.function(entry, end)
        return "\n".join(self.lines) + "\n"

    def _starts(self, entry: int, end: int) -> list[int]:
        starts, pc = [], entry
        while pc < end:
            starts.append(pc)
            pc += 2 if self.insns[pc].opcode == isa.LDDW else 1
        return starts

    def function(self, entry: int, end: int) -> None:
        self.end = end
        self.inlined = 0  # instructions of runs inlined in this function (see _leave)
        starts = self._starts(entry, end)
        targets = {entry}
        jumps = False
        for pc in starts:
            t = _jump_target(self.insns[pc], pc)
            if t is not None:
                targets.add(t)
                jumps = True
        entries = sorted(targets)
        head = len(self.lines)
        self.out(0, "")  # the def line, once the body says which names it uses
        self.out(1, "stk, r10 = STK[d]")
        self.out(1, "stk[:] = Z")
        self.out(1, "r0 = r6 = r7 = r8 = r9 = 0")
        if not jumps:
            self.block(entry, set(), 1)
        else:
            self.out(1, f"b = {entry}")
            self.out(1, "while True:")
            self.tree(entries, 0, len(entries), 2, set(entries))
        # The namespace's names the body uses become defaults (locals, the fastest to load);
        # only those, as a call copies every default into its frame.
        body = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(self.lines[head + 1:])))
        local = "".join(f", {name}={name}" for name in _LOCAL_NAMES if name in body)
        self.lines[head] = f"def f{entry}(r1, r2, r3, r4, r5, d, n{local}):"
        self.out(0, "")

    def tree(self, entries: list[int], lo: int, hi: int, depth: int, dispatch: set[int]) -> None:
        if hi - lo == 1:
            self.block(entries[lo], dispatch, depth)
            return
        mid = (lo + hi) // 2
        self.out(depth, f"if b < {entries[mid]}:")
        self.tree(entries, lo, mid, depth + 1, dispatch)
        self.out(depth, "else:")
        self.tree(entries, mid, hi, depth + 1, dispatch)

    def goto(self, depth: int, target: int) -> None:
        if target == self.inner:  # jump back to the head of the enclosing inner loop
            self.out(depth, "continue")
            return
        self.out(depth, f"b = {target}")
        self.out(depth, "break" if self.inner is not None else "continue")

    def _self_loop(self, entry: int, dispatch: set[int]) -> bool:
        """Does the straight-line run starting at ``entry`` jump back to ``entry``?"""
        pc = entry
        while pc < len(self.insns):
            if pc != entry and pc in dispatch:
                return False
            insn = self.insns[pc]
            if _jump_target(insn, pc) == entry:
                return True
            if insn.opcode in (isa.EXIT_OP, isa.JA_OP, isa.JA32_OP):
                return False
            pc += 2 if insn.opcode == isa.LDDW else 1
        return False

    def block(self, pc: int, dispatch: set[int], depth: int) -> None:
        """Straight-line code from ``pc`` up to a transfer or the next dispatch entry.

        A run that jumps back to its own start becomes an inner ``while`` loop, so the hot
        back edge of a simple loop skips the dispatch tree.
        """
        self.inner = None
        if dispatch and self._self_loop(pc, dispatch):
            self.inner = pc
            self.out(depth, "while True:")
            self._straight(pc, dispatch, depth + 1)
            self.out(depth, "continue")
            self.inner = None
        else:
            self._straight(pc, dispatch, depth)

    def _straight(self, pc: int, dispatch: set[int], depth: int) -> None:
        self.dispatch = dispatch
        self.cached = set()  # a run is entered from elsewhere: nothing is known
        self.known = {}
        self.dirty = {}
        self.fp = {}
        self.chain = [pc]
        self._run(pc, depth)

    def _run_length(self, pc: int) -> int:
        """Instructions of the straight-line run starting at dispatch entry ``pc``."""
        count = 0
        while pc < self.end:
            if count and pc in self.dispatch:
                break
            count += 1
            op = self.insns[pc].opcode
            if op in (isa.EXIT_OP, isa.JA_OP, isa.JA32_OP):
                break
            pc += 2 if op == isa.LDDW else 1
        return count

    def _leave(self, depth: int, target: int) -> None:
        """Go on at ``target``: its run inlined here when it is short (what is known of the
        registers and held regions then carries over, and the dispatch is skipped), else
        through the dispatch loop."""
        size = self._run_length(target) if self.inner is None and target not in self.chain else 0
        if 0 < size <= INLINE_RUN and self.inlined + size <= INLINE_BUDGET and depth <= INLINE_DEPTH:
            self.inlined += size
            saved = set(self.cached), dict(self.known), dict(self.dirty), dict(self.fp)
            self.chain.append(target)
            self._run(target, depth)
            self.chain.pop()
            self.cached, self.known, self.dirty, self.fp = saved
            return
        self.goto(depth, target)

    def _run(self, pc: int, depth: int) -> None:
        """Emit the straight-line run from ``pc`` with the current knowledge of the registers."""
        dispatch = self.dispatch
        first = True
        while True:
            if not first and pc in dispatch:
                self._reduce(depth)
                self._leave(depth, pc)
                return
            first = False
            cost = self.prog.block_cost.get(pc)
            if cost:
                self.out(depth, f"n -= {cost}")
                self.out(depth, f"if n < 0: BX({pc})")
            insn = self.insns[pc]
            op, cls, code = insn.opcode, insn.opcode & 7, insn.opcode & 0xF0
            if cls in (isa.JMP, isa.JMP32):  # leaves the run, or calls: every register exact
                self._reduce(depth)
            if op == isa.EXIT_OP:
                self.out(depth, "return r0, n")
                return
            if op == isa.JA_OP or op == isa.JA32_OP:
                self._leave(depth, _jump_target(insn, pc))
                return
            if cls in (isa.JMP, isa.JMP32) and code in isa.JMP_NAMES:
                self.out(depth, f"if {self.cond(insn)}:")
                self._leave(depth + 1, pc + 1 + insn.off)
            elif cls == isa.ALU64 and code in _LAZY_OPS and not (code == isa.MOV and (insn.off or not op & isa.X)):
                lazy = self._lazy(insn)
                if lazy is None:  # the result could grow too large: reduce the operands first
                    self._reduce(depth, _reads(insn))
                    lazy = self._lazy(insn)
                    assert lazy is not None
                self.out(depth, f"r{insn.dst} = {lazy}")
                self.last_lazy = (len(self.lines), insn.dst, depth, lazy)
                self.cached -= _written(insn)
                self._track_constants(pc, insn)
            else:
                self._reduce(depth, _reads(insn))
                for reg in _written(insn):  # (a call's conservative set: all were reduced above)
                    self.dirty.pop(reg, None)
                for line in self.insn(pc, insn):
                    if isinstance(line, tuple):  # (source, helper id, what): a helper call line
                        line, hid, what = line
                        self.helper_lines[len(self.lines) + 1] = (pc, hid, what)
                    self.out(depth, line)
                self.cached -= _written(insn)
                self._track_constants(pc, insn)
            pc += 2 if op == isa.LDDW else 1

    def _reduce(self, depth: int, regs: frozenset[int] | set[int] | None = None) -> None:
        """Reduce the unreduced registers among ``regs`` (all if None) modulo 2**64."""
        for reg in sorted(self.dirty if regs is None else set(self.dirty) & set(regs)):
            at, last, was, rhs = self.last_lazy
            if at == len(self.lines) and last == reg:  # the line just emitted made it: reduce there
                self.lines[-1] = "    " * was + f"r{reg} = ({rhs}) & {M}"
            else:
                self.out(depth, f"r{reg} &= {M}")
            del self.dirty[reg]

    def _lazy(self, insn: Insn) -> str | None:
        """The value of a 64-bit ALU instruction's result, left unreduced (None: the
        instruction needs exact operands, or its result would grow past :data:`LAZY_BITS`)."""
        op, dst, src, off, imm = insn
        if op & 7 != isa.ALU64:
            return None
        code, x = op & 0xF0, bool(op & isa.X)
        dirty = self.dirty
        d = f"r{dst}"
        a = dirty.get(dst, 64)
        if code == isa.MOV and not off:
            if not x:
                return None  # a constant: exact already (the usual line)
            if src in dirty:
                dirty[dst] = dirty[src]
            else:
                dirty.pop(dst, None)
            return f"r{src}"
        v = imm & isa.MASK64
        b, s = (dirty.get(src, 64), f"r{src}") if x else (max(v.bit_length(), 1), str(v))
        if code in (isa.ADD, isa.SUB) and not x and dst in self.fp and dst not in dirty:
            moved = _fp_moved(self.fp[dst], code, imm)
            if moved is not None:  # a frame pointer plus a small offset: exact, nothing to reduce
                delta = moved - self.fp[dst]
                return f"{d} + {delta}" if delta >= 0 else f"{d} - {-delta}"
        if code == isa.NEG:
            bits, line = a + 1, f"-{d}"
        elif code in (isa.ADD, isa.SUB):
            bits, line = max(a, b) + 1, f"{d} {'+' if code == isa.ADD else '-'} {s}"
        elif code == isa.MUL:
            bits, line = a + b, f"{d} * {s}"
        elif code == isa.LSH:
            bits, line = (a + 63, f"{d} << ({s} & 63)") if x else (a + (v & 63), f"{d} << {v & 63}")
        elif code in (isa.OR, isa.XOR, isa.AND):
            sym = {isa.OR: "|", isa.XOR: "^", isa.AND: "&"}[code]
            line = f"{d} {sym} {s}"
            # & with an exact operand (0 <= it < 2**64) gives an exact result
            bits = 64 if code == isa.AND and (dst not in dirty or not x or src not in dirty) else max(a, b) + 1
        else:
            return None
        if bits > LAZY_BITS:
            return None
        if bits <= 64 and code == isa.AND:
            dirty.pop(dst, None)
        else:
            dirty[dst] = bits
        return line

    def _track_constants(self, pc: int, insn: Insn) -> None:
        """Note which registers hold a constant after ``insn`` (lddw, mov of an immediate, copies)."""
        op, dst, src, off, imm = insn
        known = self.known
        if op == isa.LDDW:
            known[dst] = self.prog.imm64[pc]
        elif op == isa.ALU64 | isa.MOV and not off:  # mov64 dst, imm
            known[dst] = imm & isa.MASK64
        elif op == isa.ALU64 | isa.MOV | isa.X and not off:  # mov64 dst, src
            if src in known:
                known[dst] = known[src]
            else:
                known.pop(dst, None)
        else:
            for reg in _written(insn):
                known.pop(reg, None)
        fp = self.fp
        if op == isa.ALU64 | isa.MOV | isa.X and not off:
            if src == isa.FP or src in fp:
                fp[dst] = fp.get(src, 0)
            else:
                fp.pop(dst, None)
        elif op in (isa.ALU64 | isa.ADD, isa.ALU64 | isa.SUB) and dst in fp:
            moved = _fp_moved(fp[dst], op & 0xF0, imm)
            if moved is None:
                del fp[dst]
            else:
                fp[dst] = moved
        else:
            for reg in _written(insn):
                fp.pop(reg, None)

    # --- instructions ----------------------------------------------------------------------------
    def insn(self, pc: int, insn: Insn) -> list[str]:
        op, dst, src, off, imm = insn
        cls = op & 7
        if op == isa.LDDW:
            return [f"r{dst} = {self.prog.imm64[pc]:#x}"]
        if cls == isa.ALU64:
            return [self.alu64(insn)]
        if cls == isa.ALU:
            return [self.alu32(insn)]
        if op == isa.CALL_OP:
            if src == isa.CALL_LOCAL:
                return [f"r0, n = f{pc + 1 + imm}(r1, r2, r3, r4, r5, d + 1, n)"]
            if imm in TAKES_CALLBACK:
                return [f"r0, n = CB(RUN, {pc}, H{imm & isa.MASK32}, {imm}, r1, r2, r3, r4, r5, d, n)"]
            hid = imm & isa.MASK32
            fn = f"H{hid}"
            if 1 in self.known:
                self.bound[pc] = (imm, self.known[1])
                fn = f"S{pc}"
            return [(f"r0 = {fn}(VM, r1, r2, r3, r4, r5)", imm, "call"), (f"r0 &= {M}", imm, "mask")]
        if op == isa.CALLX_OP:
            return [f"r0 = CX({pc}, r{dst}, r1, r2, r3, r4, r5)"]
        size = isa.SIZE_BYTES[op & 0x18]
        mode = op & 0xE0
        if cls == isa.LDX:
            return self.load(pc, dst, src, off, size, mode == isa.MEMSX)
        if cls == isa.ST:
            return self.store(pc, dst, off, size, str(imm & ((1 << (8 * size)) - 1)))
        if mode == isa.ATOMIC:
            return self.atomic(pc, insn, size)
        val = f"r{src}" if size == 8 else f"r{src} & {(1 << (8 * size)) - 1:#x}"
        return self.store(pc, dst, off, size, val)

    def alu64(self, insn: Insn) -> str:
        op, dst, src, off, imm = insn
        code = op & 0xF0
        d = f"r{dst}"
        if code == isa.END:
            return f"{d} = BS{imm}({d})"
        if code == isa.NEG:
            return f"{d} = -{d} & {M}"
        x = bool(op & isa.X)
        v = imm & isa.MASK64
        s = f"r{src}" if x else str(v)
        if code == isa.ADD:
            return f"{d} = ({d} + {s}) & {M}"
        if code == isa.SUB:
            return f"{d} = ({d} - {s}) & {M}"
        if code == isa.MUL:
            return f"{d} = ({d} * {s}) & {M}"
        if code == isa.DIV:
            if off == 1:
                return f"{d} = SDIV64({d}, {s})" if x or v else f"{d} = 0"
            if x:
                return f"{d} = {d} // {s} if {s} else 0"
            return f"{d} //= {v}" if v else f"{d} = 0"
        if code == isa.MOD:
            if off == 1:
                return f"{d} = SMOD64({d}, {s})" if x or v else "pass"
            if x:
                return f"if {s}: {d} %= {s}"
            return f"{d} %= {v}" if v else "pass"
        if code == isa.OR:
            return f"{d} |= {s}"
        if code == isa.AND:
            return f"{d} &= {s}"
        if code == isa.XOR:
            return f"{d} ^= {s}"
        if code == isa.LSH:
            return f"{d} = ({d} << ({s} & 63)) & {M}" if x else f"{d} = ({d} << {v & 63}) & {M}"
        if code == isa.RSH:
            return f"{d} >>= {s} & 63" if x else f"{d} >>= {v & 63}"
        if code == isa.ARSH:
            sh = f"({s} & 63)" if x else str(v & 63)
            return f"{d} = ((({d} ^ {S64:#x}) - {S64:#x}) >> {sh}) & {M}"
        if code == isa.MOV:
            if not x:
                return f"{d} = {v}"
            if off:
                sb = 1 << (off - 1)
                return f"{d} = ((({s} & {(1 << off) - 1:#x}) ^ {sb:#x}) - {sb:#x}) & {M}"
            return f"{d} = {s}"
        raise AssertionError(f"bad alu64 {op:#x}")

    def alu32(self, insn: Insn) -> str:
        op, dst, src, off, imm = insn
        code = op & 0xF0
        d = f"r{dst}"
        if code == isa.END:
            if op & isa.X:  # be
                return f"{d} = BS{imm}({d})"
            return {16: f"{d} &= 0xffff", 32: f"{d} &= {M32}", 64: "pass"}[imm]
        if code == isa.NEG:
            return f"{d} = -{d} & {M32}"
        x = bool(op & isa.X)
        v = imm & isa.MASK32
        s = f"r{src}" if x else str(v)
        s32 = f"(r{src} & {M32})" if x else str(v)
        if code == isa.ADD:
            return f"{d} = ({d} + {s}) & {M32}"
        if code == isa.SUB:
            return f"{d} = ({d} - {s}) & {M32}"
        if code == isa.MUL:
            return f"{d} = ({d} * {s}) & {M32}"
        if code == isa.DIV:
            if off == 1:
                return f"{d} = SDIV32({d}, {s})" if x or v else f"{d} = 0"
            if x:
                return f"{d} = ({d} & {M32}) // {s32} if {s32} else 0"
            return f"{d} = ({d} & {M32}) // {v}" if v else f"{d} = 0"
        if code == isa.MOD:
            if off == 1:
                return f"{d} = SMOD32({d}, {s})" if x or v else f"{d} &= {M32}"
            if x:
                return f"{d} = ({d} & {M32}) % {s32} if {s32} else {d} & {M32}"
            return f"{d} = ({d} & {M32}) % {v}" if v else f"{d} &= {M32}"
        if code == isa.OR:
            return f"{d} = ({d} | {s}) & {M32}"
        if code == isa.AND:
            return f"{d} = {d} & {s} & {M32}" if x else f"{d} &= {v}"
        if code == isa.XOR:
            return f"{d} = ({d} ^ {s}) & {M32}"
        if code == isa.LSH:
            return f"{d} = ({d} << ({s} & 31)) & {M32}" if x else f"{d} = ({d} << {v & 31}) & {M32}"
        if code == isa.RSH:
            sh = f"({s} & 31)" if x else str(v & 31)
            return f"{d} = ({d} & {M32}) >> {sh}"
        if code == isa.ARSH:
            sh = f"({s} & 31)" if x else str(v & 31)
            return f"{d} = (((({d} & {M32}) ^ {S32:#x}) - {S32:#x}) >> {sh}) & {M32}"
        if code == isa.MOV:
            if not x:
                return f"{d} = {v}"
            if off:
                sb = 1 << (off - 1)
                return f"{d} = ((({s} & {(1 << off) - 1:#x}) ^ {sb:#x}) - {sb:#x}) & {M32}"
            return f"{d} = {s} & {M32}"
        raise AssertionError(f"bad alu32 {op:#x}")

    def cond(self, insn: Insn) -> str:
        op, dst, src, _off, imm = insn
        code, x = op & 0xF0, bool(op & isa.X)
        if op & 7 == isa.JMP:
            a, b, sign = f"r{dst}", (f"r{src}" if x else str(imm & isa.MASK64)), S64
            bk = imm & isa.MASK64
        else:
            a = f"(r{dst} & {M32})"
            b = f"(r{src} & {M32})" if x else str(imm & isa.MASK32)
            sign, bk = S32, imm & isa.MASK32
        simple = {isa.JEQ: "==", isa.JNE: "!=", isa.JGT: ">", isa.JGE: ">=", isa.JLT: "<",
                  isa.JLE: "<="}
        if code in simple:
            return f"{a} {simple[code]} {b}"
        if code == isa.JSET:
            return f"{a} & {b}"
        rel = {isa.JSGT: ">", isa.JSGE: ">=", isa.JSLT: "<", isa.JSLE: "<="}[code]
        sb = f"({b} ^ {sign:#x})" if x else str(bk ^ sign)
        return f"({a} ^ {sign:#x}) {rel} {sb}"

    # --- memory ----------------------------------------------------------------------------------
    @staticmethod
    def _on_stack(base: int, off: int, size: int) -> bool:
        return base == isa.FP and -SS <= off and off + size <= 0

    @staticmethod
    def _addr(base: int, off: int) -> str:
        return f"a = r{base}" if off == 0 else f"a = (r{base} + {off}) & {M}"

    def _check(self, pc: int, base: int, off: int, size: int, table: str, kind: str) -> list[str]:
        return [self._addr(base, off), f"g = {table}(a >> 32)",
                f"if g is None or (o := a & 0xffffffff) + {size} > g.size: "
                f"FLT({pc}, {size}, a, '{kind}')"]

    def _reused(self, pc: int, base: int) -> bool:
        """Is ``base`` the base of another access later in this straight-line run, before it
        is written or a call may remap memory? (Then its region is worth keeping in locals.)"""
        nxt = pc + 1
        while nxt < self.end:
            if nxt in self.dispatch:
                return False
            insn = self.insns[nxt]
            op, cls = insn.opcode, insn.opcode & 7
            if cls in (isa.LDX, isa.ST, isa.STX) and not (op & 0xE0 == isa.ATOMIC and cls == isa.STX):
                through = insn.src if cls == isa.LDX else insn.dst
                if through == base and not self._on_stack(base, insn.off, isa.SIZE_BYTES[op & 0x18]):
                    return True
            if cls in (isa.JMP, isa.JMP32) and (op & 0xF0) in (isa.CALL, isa.EXIT, isa.JA):
                return False
            if base in _written(insn):
                return False
            nxt += 2 if op == isa.LDDW else 1
        return False

    def _region(self, pc: int, base: int, off: int, size: int, kind: str) -> list[str]:
        """Hold the region of ``base + off`` in locals: its buffer ``bN``, readable size ``zN``,
        writable size ``wN`` (-1 if read-only) and ``dN`` = the base's offset in it."""
        self.cached.add(base)
        b = base
        return [self._addr(base, off), "g = RG(a >> 32)", f"if g is None: FLT({pc}, {size}, a, '{kind}')",
                f"b{b} = g.buf; z{b} = g.size; w{b} = z{b} if g.writable else -1; d{b} = r{b} - g.base"]

    def _held(self, pc: int, base: int) -> bool:
        return base in self.cached or self._reused(pc, base)

    def _in_bounds(self, base: int, off: int, size: int, limit: str) -> str:
        o = f"d{base} + {off}" if off else f"d{base}"
        return f"0 <= (o := {o}) and o + {size} <= {limit}{base}"

    def load(self, pc: int, dst: int, base: int, off: int, size: int, sx: bool) -> list[str]:
        if pc in self.prog.probe_mem:  # through a BTF-typed kernel pointer: 0 on a fault
            val = f"PM({pc}, {self._addr(base, off)[4:]}, {size})"
            if sx:
                sb = 1 << (8 * size - 1)
                val = f"(({val} ^ {sb:#x}) - {sb:#x}) & {M}"
            return [f"r{dst} = {val}"]
        lines, buf, o, fast = self._access(pc, base, off, size, "read")
        val = f"{buf}[{o}]" if size == 1 else f"U{size}({buf}, {o})[0]"
        if fast is not None:
            val = f"({val} if {fast} else LD({pc}, (r{base} + {off}) & {M}, {size}))"
        if sx:
            sb = 1 << (8 * size - 1)
            val = f"(({val} ^ {sb:#x}) - {sb:#x}) & {M}"
        lines.append(f"r{dst} = {val}")
        return lines

    def _access(self, pc: int, base: int, off: int, size: int, kind: str) -> tuple[list[str], str, str, str | None]:
        """Where a ``kind`` ("read" or "write") access of a load or store goes: the lines that
        find it, its buffer and offset expressions, and the condition under which a held
        region's fast path applies (None: no fallback needed). An access the verifier proved
        inside a map value (programs may write only those it allows) needs no bounds check."""
        proven = pc in self.prog.in_bounds
        table, limit = ("RG", "z") if kind == "read" else ("WG", "w")
        if self._on_stack(base, off, size):
            return [], "stk", str(SS + off), None
        if self._held(pc, base):
            lines = [] if base in self.cached else self._region(pc, base, off, size, kind)
            if proven:
                return lines, f"b{base}", f"d{base} + {off}" if off else f"d{base}", None
            return lines, f"b{base}", "o", self._in_bounds(base, off, size, limit)
        if proven:
            return [self._addr(base, off), f"g = {table}(a >> 32)"], "g.buf", "a & 0xffffffff", None
        return self._check(pc, base, off, size, table, kind), "g.buf", "o", None

    def store(self, pc: int, base: int, off: int, size: int, val: str) -> list[str]:
        lines, buf, o, fast = self._access(pc, base, off, size, "write")
        put = f"{buf}[{o}] = {val}" if size == 1 else f"P{size}({buf}, {o}, {val})"
        if fast is not None:
            lines.append(f"if {fast}: {put}")
            lines.append(f"else: ST({pc}, (r{base} + {off}) & {M}, {size}, {val})")
        else:
            lines.append(put)
        return lines

    def atomic(self, pc: int, insn: Insn, size: int) -> list[str]:
        _op, base, src, off, imm = insn
        if self._on_stack(base, off, size):
            lines, buf, o = [], "stk", str(SS + off)
        else:
            lines, buf, o = self._check(pc, base, off, size, "WG", "atomic"), "g.buf", "o"
        mask = M if size == 8 else M32
        s = f"r{src}" if size == 8 else f"(r{src} & {M32})"
        lines.append(f"v = U{size}({buf}, {o})[0]")
        if imm == isa.CMPXCHG:
            r0 = "r0" if size == 8 else f"(r0 & {M32})"
            lines.append(f"if v == {r0}: P{size}({buf}, {o}, {s})")
            lines.append("r0 = v")
            return lines
        if imm == isa.XCHG:
            lines.append(f"P{size}({buf}, {o}, {s})")
            lines.append(f"r{src} = v")
            return lines
        base_op = imm & ~isa.FETCH
        new = {isa.ADD: f"(v + {s}) & {mask}", isa.OR: f"v | {s}", isa.AND: f"v & {s}",
               isa.XOR: f"v ^ {s}"}[base_op]
        lines.append(f"P{size}({buf}, {o}, {new})")
        if imm & isa.FETCH:
            lines.append(f"r{src} = v")
        return lines


def _fp_moved(off: int, code: int, imm: int) -> int | None:
    """A frame pointer's offset after adding (or subtracting) ``imm``, or None when it would
    leave +-2**31: r10 is a frame's end, a slot's base (at least ``KEY_BASE << 32``, at most
    ``2**64 - 2**32``) plus 512, so r10 plus such an offset needs no reduction modulo 2**64."""
    delta = alu.signed(imm & isa.MASK32, 32)
    moved = off + delta if code == isa.ADD else off - delta
    return moved if -FP_REACH <= moved <= FP_REACH else None


def _reads(insn: Insn) -> set[int] | frozenset[int]:
    """Registers ``insn`` (not a jump) reads."""
    op, dst, src, _off, imm = insn
    cls, code = op & 7, op & 0xF0
    if cls in (isa.ALU, isa.ALU64):
        if code == isa.MOV:
            return {src} if op & isa.X else set()
        if code in (isa.NEG, isa.END):
            return {dst}
        return {dst, src} if op & isa.X else {dst}
    if cls == isa.LDX:
        return {src}
    if cls == isa.ST:
        return {dst}
    if cls == isa.STX:
        return {dst, src, 0} if op & 0xE0 == isa.ATOMIC and imm == isa.CMPXCHG else {dst, src}
    return set() if op == isa.LDDW else _ALL_REGS


def _written(insn: Insn) -> frozenset[int] | set[int]:
    """Registers ``insn`` may write (a call: r0-r5, and every held region is dropped too,
    since a helper or subprogram may remap memory)."""
    op, dst, src, _off, imm = insn
    cls = op & 7
    if cls in (isa.ALU, isa.ALU64, isa.LDX) or op == isa.LDDW:
        return {dst}
    if cls == isa.STX and op & 0xE0 == isa.ATOMIC:
        if imm == isa.CMPXCHG:
            return {0}
        return {src} if imm & isa.FETCH or imm == isa.XCHG else set()
    if cls in (isa.JMP, isa.JMP32) and op & 0xF0 == isa.CALL:
        return _ALL_REGS
    return set()


_ALL_REGS = frozenset(range(isa.NREGS))


def _jump_target(insn: Insn, pc: int) -> int | None:
    op, cls, code = insn.opcode, insn.opcode & 7, insn.opcode & 0xF0
    if op == isa.JA32_OP:
        return pc + 1 + insn.imm
    if cls in (isa.JMP, isa.JMP32) and code not in (isa.CALL, isa.EXIT):
        return pc + 1 + insn.off
    return None


def generate(prog: Program) -> str:
    """The Python source of ``prog`` (functions ``f<entry>``, entry 0 is the program)."""
    return _Gen(prog).program()


def _program_key(prog: Program) -> bytes:
    h = hashlib.sha256(isa.encode(prog.insns))
    h.update(repr(sorted(prog.imm64.items())).encode())
    h.update(repr(sorted(prog.probe_mem)).encode())
    h.update(repr(sorted(prog.in_bounds)).encode())
    return h.digest()


@functools.lru_cache(maxsize=512)
def _compile(key: bytes, source: str) -> object:
    return compile(source, _filename(key), "exec")


def _filename(key: bytes) -> str:
    return f"<ebpf {key.hex()[:12]}>"


_Lines = dict[int, tuple[int, int, str]]
_Bound = dict[int, tuple[int, int]]
_source_cache: dict[bytes, tuple[str, _Lines, _Bound]] = {}


def compile_program(prog: Program) -> tuple[str, object, _Lines, _Bound]:
    """Source, code object, helper-call lines and bound helper calls (pc -> (helper imm,
    constant r1)) of ``prog``, cached by program content."""
    key = _program_key(prog)
    cached = _source_cache.get(key)
    if cached is None:
        gen = _Gen(prog)
        cached = gen.program(), gen.helper_lines, gen.bound
        if len(_source_cache) > 512:
            _source_cache.clear()
        _source_cache[key] = cached
    return cached[0], _compile(key, cached[0]), cached[1], cached[2]


class Translated:
    """A program translated to Python and bound to one VM's memory, stacks and helpers."""

    def __init__(self, vm: VM) -> None:
        prog = vm.program
        self.source, code, self._helper_lines, bound = compile_program(prog)
        self._filename = code.co_filename  # type: ignore[attr-defined]
        mem = vm.memory

        def flt(pc: int, size: int, addr: int, kind: str) -> None:
            raise MemoryFault(pc, kind, size, addr, mem.describe(addr, size, kind))

        def bx(pc: int) -> None:
            raise BudgetExhausted(pc, vm.current_budget)

        call_helper = vm.call_helper

        def cx(pc: int, hid: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
            fn = vm.helpers.get(hid)
            if fn is None:
                raise HelperError(f"callx to unknown helper id {hid}", pc)
            return call_helper(pc, fn, hid, r1, r2, r3, r4, r5)

        ns: dict[str, object] = {
            "__builtins__": {}, "RG": mem.readable.get, "WG": mem.writable.get,
            "U2": UNPACK[2], "U4": UNPACK[4], "U8": UNPACK[8],
            "P2": PACK[2], "P4": PACK[4], "P8": PACK[8], "STK": vm.frames,
            "Z": bytes(isa.STACK_SIZE), "FLT": flt, "BX": bx, "CH": call_helper, "CX": cx,
            "SDIV64": _sdiv64, "SDIV32": _sdiv32, "SMOD64": _smod64, "SMOD32": _smod32,
            "BS16": _bs16, "BS32": _bs32, "BS64": _bs64, "CB": vm.call_with_callback, "RUN": self,
            "PM": mem.probe_load,
            "VM": vm, "LD": mem.load, "ST": mem.store,
        }
        for hid in prog.helper_ids:
            ns[f"H{hid & isa.MASK32}"] = vm.helpers[hid]
        for pc, (hid, r1) in bound.items():
            bind = vm.binders.get(hid)
            ns[f"S{pc}"] = (bind(r1) if bind is not None else None) or vm.helpers[hid]
        exec(code, ns)
        self.entry = ns["f0"]
        self.functions = {entry: ns[f"f{entry}"] for entry in prog.subprogs}

    def run(self, r1: int, r2: int, r3: int, r4: int, r5: int, budget: int) -> tuple[int, int]:
        try:
            return self.entry(r1, r2, r3, r4, r5, 0, budget)
        except (StopProgram, TailCall):
            raise
        except Exception as e:
            raise self._blame(e) from (None if isinstance(e, EbpfError) else e)

    def call(self, pc: int, r1: int, r2: int, r3: int, r4: int, r5: int, depth: int,
             n: int) -> tuple[int, int]:
        """Run the subprogram at ``pc`` (a callback) in frame ``depth``; ``(r0, budget left)``."""
        try:
            return self.functions[pc](r1, r2, r3, r4, r5, depth, n)
        except (StopProgram, TailCall):
            raise
        except Exception as e:
            raise self._blame(e) from (None if isinstance(e, EbpfError) else e)

    def _blame(self, e: Exception) -> Exception:
        """What ``VM.call_helper`` would have made of ``e`` at the helper call it came out of:
        an :class:`EbpfError` gets the call's pc if it has none, anything else becomes a
        :class:`HelperError`; an exception from elsewhere is returned unchanged."""
        tb, line, frame = e.__traceback__, None, None
        while tb is not None:  # the innermost frame of this program's code
            if tb.tb_frame.f_code.co_filename == self._filename:
                line, frame = tb.tb_lineno, tb.tb_frame
            tb = tb.tb_next
        where = self._helper_lines.get(line) if line is not None else None
        if where is None:
            return e
        pc, hid, what = where
        if isinstance(e, EbpfError):
            if e.pc is None:
                e.pc = pc
            return e
        if what == "mask":
            ret = frame.f_locals.get("r0")  # type: ignore[union-attr]
            return HelperError(f"helper {hid} returned {type(ret).__name__}, not an int", pc)
        return HelperError(f"helper {hid} failed: {type(e).__name__}: {e}", pc)
