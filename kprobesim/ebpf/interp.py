"""The reference interpreter: decode-and-dispatch over a verified :class:`Program`.

Semantics shared with the translator (:mod:`kprobesim.ebpf.translate`), checked by the
property tests:

* registers are unsigned 64-bit; r10 is the frame pointer of the current frame;
* every frame has its own zeroed 512-byte stack; a bpf-to-bpf call passes r1-r5, starts the
  callee with r0 = r6..r9 = 0, and restores the caller's r1-r9 on return (r0 is the result);
* the instruction budget is charged per basic block, when the block is entered: a run that
  would exceed it stops at that block's first pc with :class:`BudgetExhausted`;
* loads/stores/atomics go through :class:`Memory` checks; atomics need a writable region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import alu, isa
from .errors import BudgetExhausted, HelperError
from .helper_ids import TAKES_CALLBACK
from .memory import PACK, UNPACK

if TYPE_CHECKING:
    from .vm import VM

M64 = isa.MASK64
M32 = isa.MASK32
_ZERO_STACK = bytes(isa.STACK_SIZE)

# decoded instruction kinds
(K_ALU, K_END, K_JA, K_JCOND, K_LDX, K_ST, K_STX, K_ATOMIC, K_LDDW, K_CALL, K_CALLX, K_LOCAL,
 K_EXIT, K_CALLBACK, K_PROBE) = range(15)


def _decode(prog, pc: int) -> tuple:
    """Pre-decode slot ``pc`` into ``(kind, a, b, c, d, e)`` operands for the dispatch loop."""
    insn = prog.insns[pc]
    op, dst, src, off, imm = insn
    cls, code = op & 7, op & 0xF0
    if op == isa.LDDW:
        return (K_LDDW, dst, prog.imm64[pc], 0, 0, 0)
    if cls in (isa.ALU, isa.ALU64):
        bits = 64 if cls == isa.ALU64 else 32
        if code == isa.END:
            return (K_END, dst, imm, cls == isa.ALU64 or bool(op & isa.X), 0, 0)
        # (dst, src register or -1, immediate reduced to width, off, bits, op)
        k = imm & (M64 if bits == 64 else M32)
        return (K_ALU, dst, src if op & isa.X else -1, k, off, (bits, code))
    if cls in (isa.JMP, isa.JMP32):
        bits = 64 if cls == isa.JMP else 32
        if code == isa.JA:
            return (K_JA, pc + 1 + (off if cls == isa.JMP else imm), 0, 0, 0, 0)
        if code == isa.EXIT:
            return (K_EXIT, 0, 0, 0, 0, 0)
        if code == isa.CALL:
            if op & isa.X:
                return (K_CALLX, dst, 0, 0, 0, 0)
            if src == isa.CALL_LOCAL:
                return (K_LOCAL, pc + 1 + imm, 0, 0, 0, 0)
            return (K_CALLBACK if imm in TAKES_CALLBACK else K_CALL, imm, 0, 0, 0, 0)
        k = imm & (M64 if bits == 64 else M32)
        return (K_JCOND, dst, src if op & isa.X else -1, k, pc + 1 + off, (bits, code))
    size = isa.SIZE_BYTES[op & 0x18]
    if cls == isa.LDX:
        return (K_PROBE if pc in prog.probe_mem else K_LDX, dst, src, off, size, (op & 0xE0) == isa.MEMSX)
    if cls == isa.ST:
        return (K_ST, dst, imm & ((1 << (8 * size)) - 1), off, size, 0)
    if op & 0xE0 == isa.ATOMIC:
        return (K_ATOMIC, dst, src, off, size, imm)
    return (K_STX, dst, src, off, size, 0)


class Interpreter:
    """Runs a verified program instruction by instruction."""

    def __init__(self, vm: VM) -> None:
        prog = vm.program
        self.vm = vm
        self.code: list[tuple | None] = [None] * len(prog.insns)
        pc = 0
        while pc < len(prog.insns):
            self.code[pc] = _decode(prog, pc)
            pc += 2 if prog.insns[pc].opcode == isa.LDDW else 1
        self.cost = [prog.block_cost.get(pc, 0) for pc in range(len(prog.insns))]
        # helpers are bound at load time, like the translator does
        self.helper_fns = {hid: vm.helpers[hid] for hid in prog.helper_ids}

    def run(self, r1: int, r2: int, r3: int, r4: int, r5: int, budget: int) -> tuple[int, int]:
        """Execute from pc 0; return ``(r0, remaining budget)``."""
        return self.call(0, r1, r2, r3, r4, r5, 0, budget)

    def call(self, pc: int, r1: int, r2: int, r3: int, r4: int, r5: int, depth: int,
             n: int) -> tuple[int, int]:
        """Run the subprogram at ``pc`` in frame ``depth`` with ``n`` instructions of budget;
        return ``(r0, remaining budget)`` (the program itself, or a callback)."""
        vm = self.vm
        mem = vm.memory
        frames = vm.frames
        code, cost, helper_fns = self.code, self.cost, self.helper_fns
        call_helper = vm.call_helper
        stack, top = frames[depth]
        stack[:] = _ZERO_STACK
        regs = [0, r1, r2, r3, r4, r5, 0, 0, 0, 0, top]
        calls: list[tuple[int, list[int], int]] = []
        budget = vm.current_budget
        while True:
            c = cost[pc]
            if c:
                n -= c
                if n < 0:
                    raise BudgetExhausted(pc, budget)
            kind, a, b, k, d, e = code[pc]
            if kind == K_ALU:
                bits, op = e
                regs[a] = alu.alu(op, regs[a], k if b < 0 else regs[b], d, bits)
                pc += 1
            elif kind == K_JCOND:
                bits, op = e
                pc = d if alu.cond(op, regs[a], k if b < 0 else regs[b], bits) else pc + 1
            elif kind == K_LDX:
                v = mem.load(pc, (regs[b] + k) & M64, d)
                if e:
                    v = alu.signed(v, 8 * d) & M64
                regs[a] = v
                pc += 1
            elif kind == K_STX:
                mem.store(pc, (regs[a] + k) & M64, d, regs[b])
                pc += 1
            elif kind == K_ST:
                mem.store(pc, (regs[a] + k) & M64, d, b)
                pc += 1
            elif kind == K_JA:
                pc = a
            elif kind == K_LDDW:
                regs[a] = b
                pc += 2
            elif kind == K_END:
                regs[a] = alu.end(regs[a], b, k)
                pc += 1
            elif kind == K_ATOMIC:
                self._atomic(pc, regs, a, b, k, d, e)
                pc += 1
            elif kind == K_CALL:
                regs[0] = call_helper(pc, helper_fns[a], a, regs[1], regs[2], regs[3], regs[4],
                                      regs[5])
                pc += 1
            elif kind == K_CALLBACK:
                regs[0], n = vm.call_with_callback(self, pc, helper_fns[a], a, regs[1], regs[2], regs[3],
                                                   regs[4], regs[5], depth, n)
                pc += 1
            elif kind == K_CALLX:
                hid = regs[a]
                fn = vm.helpers.get(hid)
                if fn is None:
                    raise HelperError(f"callx to unknown helper id {hid}", pc)
                regs[0] = call_helper(pc, fn, hid, regs[1], regs[2], regs[3], regs[4], regs[5])
                pc += 1
            elif kind == K_LOCAL:
                calls.append((pc + 1, regs[1:10], depth))
                depth += 1
                stack, top = frames[depth]
                stack[:] = _ZERO_STACK
                regs[0] = regs[6] = regs[7] = regs[8] = regs[9] = 0
                regs[10] = top
                pc = a
            elif kind == K_EXIT:
                if not calls:
                    return regs[0], n
                pc, saved, depth = calls.pop()
                regs[1:10] = saved
                regs[10] = frames[depth][1]
            elif kind == K_PROBE:  # through a BTF-typed kernel pointer: 0 on a fault
                v = mem.probe_load(pc, (regs[b] + k) & M64, d)
                regs[a] = alu.signed(v, 8 * d) & M64 if e else v
                pc += 1
            else:  # pragma: no cover - the verifier admits nothing else
                raise AssertionError(f"bad decoded kind {kind}")

    def _atomic(self, pc: int, regs: list[int], dst: int, src: int, off: int, size: int,
                op: int) -> None:
        mask = M64 if size == 8 else M32
        buf, o = self.vm.memory.locate(pc, (regs[dst] + off) & M64, size, "atomic")
        old = UNPACK[size](buf, o)[0]
        val = regs[src] & mask
        if op == isa.CMPXCHG:
            if old == regs[0] & mask:
                PACK[size](buf, o, val)
            regs[0] = old
            return
        if op == isa.XCHG:
            PACK[size](buf, o, val)
            regs[src] = old
            return
        base = op & ~isa.FETCH
        if base == isa.ADD:
            new = (old + val) & mask
        elif base == isa.OR:
            new = old | val
        elif base == isa.AND:
            new = old & val
        else:
            new = old ^ val
        PACK[size](buf, o, new)
        if op & isa.FETCH:
            regs[src] = old
