"""Load-time verifier, in the spirit of Linux's but without abstract interpretation.

It checks what can be decided statically: opcode validity and reserved fields, register numbers,
writes to the read-only frame pointer r10, jump targets (in range, inside the same subprogram,
not into the second slot of ``lddw``), callback addresses (``lddw`` of a subprogram),
subprograms ending in ``exit``/``ja`` (no falling off the end), helper ids against the helper
table, bpf-to-bpf call recursion and depth, and the size limit. Each rejection is a
:class:`VerifierError` whose text is ``verifier: insn N: reason``. What stays dynamic (memory
bounds, endless loops, ``callx`` targets) is checked at run time.

The result, :class:`Program`, is the analysed program both engines execute: resolved ``lddw``
values, subprogram entries and the basic-block costs used for the instruction budget.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field

from . import isa
from .errors import VerifierError
from .helper_ids import describe as describe_helper
from .helper_ids import name as helper_name
from .isa import Insn

#: ``resolver(pseudo_src, imm, next_imm) -> 64-bit value`` for the ``lddw`` placeholder forms.
Resolver = Callable[[int, int, int], int]

_SUPPORTED_PSEUDO = {isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_VALUE, isa.PSEUDO_BTF_ID,
                     isa.PSEUDO_MAP_IDX, isa.PSEUDO_MAP_IDX_VALUE}


@dataclass
class Program:
    """A verified program.

    ``imm64``: pc -> resolved 64-bit value of every ``lddw``.  ``subprogs``: sorted entry pcs
    (0 first).  ``block_cost``: pc of each basic-block leader -> number of instructions in the
    block; a run charges its budget by that amount when it enters the block.
    """

    insns: tuple[Insn, ...]
    imm64: dict[int, int]
    subprogs: list[int]
    block_cost: dict[int, int]
    helper_ids: set[int] = field(default_factory=set)
    max_frames: int = 1
    ninsns: int = 0
    #: Subprogram entries whose address the program takes (``lddw PSEUDO_FUNC``): callbacks.
    callbacks: frozenset[int] = frozenset()
    #: Loads through BTF-typed kernel pointers (Linux's ``BPF_PROBE_MEM``): they read guest
    #: memory and give 0 on a fault. Set by the loader from :mod:`.absint`'s verdict.
    probe_mem: frozenset[int] = frozenset()
    #: loads/stores the verifier (absint) proved to access a map value within its bounds
    in_bounds: frozenset[int] = frozenset()

    def subprog_end(self, entry: int) -> int:
        i = self.subprogs.index(entry)
        return self.subprogs[i + 1] if i + 1 < len(self.subprogs) else len(self.insns)

    def leaders(self) -> list[int]:
        return sorted(self.block_cost)


def _fail(pc: int, reason: str) -> VerifierError:
    return VerifierError(pc, reason)


def _check_reg(pc: int, reg: int, what: str) -> None:
    if reg > 10:
        raise _fail(pc, f"invalid {what} register r{reg}")


def _check_dst_writable(pc: int, reg: int) -> None:
    _check_reg(pc, reg, "dst")
    if reg == isa.FP:
        raise _fail(pc, "frame pointer r10 is read only")


def _check_alu(pc: int, insn: Insn) -> None:
    op, dst, src, off, imm = insn
    cls, code, x = op & 7, op & 0xF0, op & isa.X
    if code == isa.END:
        if cls == isa.ALU64 and x:
            raise _fail(pc, f"invalid opcode {op:#04x}")
        if src or off or imm not in (16, 32, 64):
            raise _fail(pc, "invalid byte swap (fields must be 0, imm 16/32/64)")
        _check_dst_writable(pc, dst)
        return
    if code not in isa.ALU_NAMES:
        raise _fail(pc, f"invalid opcode {op:#04x}")
    if code == isa.NEG:
        if x or src or off or imm:
            raise _fail(pc, "neg uses reserved fields")
        _check_dst_writable(pc, dst)
        return
    if code in (isa.DIV, isa.MOD):
        if off not in (0, 1):
            raise _fail(pc, f"invalid offset {off} for div/mod (0 or 1)")
    elif code == isa.MOV and x:
        allowed = (0, 8, 16, 32) if cls == isa.ALU64 else (0, 8, 16)
        if off not in allowed:
            raise _fail(pc, f"invalid sign-extension width {off} for mov")
    elif off:
        raise _fail(pc, f"{isa.ALU_NAMES[code]} uses reserved field off")
    if x:
        if imm:
            raise _fail(pc, f"{isa.ALU_NAMES[code]} uses reserved field imm")
        _check_reg(pc, src, "src")
    elif src:
        raise _fail(pc, f"{isa.ALU_NAMES[code]} uses reserved field src")
    _check_dst_writable(pc, dst)


def _check_jmp(pc: int, insn: Insn, helpers: Container[int]) -> None:
    op, dst, src, off, imm = insn
    cls, code, x = op & 7, op & 0xF0, op & isa.X
    if code == isa.JA:
        if x or dst or src or (off if cls == isa.JMP32 else imm):
            raise _fail(pc, "ja uses reserved fields")
        return
    if code == isa.CALL:
        if cls != isa.JMP:
            raise _fail(pc, f"invalid opcode {op:#04x}")
        if x:
            if src or off or imm:
                raise _fail(pc, "callx uses reserved fields")
            _check_reg(pc, dst, "callx")
            return
        if dst or off:
            raise _fail(pc, "call uses reserved fields")
        if src == isa.CALL_HELPER:
            if imm not in helpers:
                if helper_name(imm) is None:
                    raise _fail(pc, f"invalid func {describe_helper(imm)}")
                raise _fail(pc, f"unknown func {describe_helper(imm)}: helper not implemented "
                                f"by kprobesim")
        elif src == isa.CALL_KFUNC:
            raise _fail(pc, "kernel function calls (kfunc) are not supported")
        elif src != isa.CALL_LOCAL:
            raise _fail(pc, f"invalid call kind src={src}")
        return
    if code == isa.EXIT:
        if cls != isa.JMP or x or dst or src or off or imm:
            raise _fail(pc, "exit uses reserved fields" if cls == isa.JMP
                        else f"invalid opcode {op:#04x}")
        return
    if code not in isa.JMP_NAMES:
        raise _fail(pc, f"invalid opcode {op:#04x}")
    _check_reg(pc, dst, "dst")
    if x:
        if imm:
            raise _fail(pc, f"{isa.JMP_NAMES[code]} uses reserved field imm")
        _check_reg(pc, src, "src")
    elif src:
        raise _fail(pc, f"{isa.JMP_NAMES[code]} uses reserved field src")


def _check_mem(pc: int, insn: Insn) -> None:
    op, dst, src, off, imm = insn
    cls, mode, size = op & 7, op & 0xE0, op & 0x18
    if cls == isa.LDX:
        if mode not in (isa.MEM, isa.MEMSX) or (mode == isa.MEMSX and size == isa.DW):
            raise _fail(pc, f"invalid opcode {op:#04x}")
        if imm:
            raise _fail(pc, "ldx uses reserved field imm")
        _check_reg(pc, src, "src")
        _check_dst_writable(pc, dst)
    elif cls == isa.ST:
        if mode != isa.MEM:
            raise _fail(pc, f"invalid opcode {op:#04x}")
        if src:
            raise _fail(pc, "st uses reserved field src")
        _check_reg(pc, dst, "dst")
    else:  # STX
        _check_reg(pc, dst, "dst")
        _check_reg(pc, src, "src")
        if mode == isa.MEM:
            if imm:
                raise _fail(pc, "stx uses reserved field imm")
        elif mode == isa.ATOMIC:
            if size not in (isa.W, isa.DW):
                raise _fail(pc, f"invalid atomic operand size in opcode {op:#04x}")
            if imm not in isa.ATOMIC_OPS:
                raise _fail(pc, f"invalid atomic operation {imm:#x}")
            if imm & isa.FETCH and imm != isa.CMPXCHG and src == isa.FP:
                raise _fail(pc, "frame pointer r10 is read only")
        else:
            raise _fail(pc, f"invalid opcode {op:#04x}")


def verify(insns: Sequence[Insn], helpers: Container[int] = (), resolver: Resolver | None = None,
           max_insns: int = isa.MAX_INSNS) -> Program:
    """Check ``insns`` and return the analysed :class:`Program` (or raise VerifierError)."""
    insns = tuple(insns)
    n = len(insns)
    if n == 0:
        raise _fail(0, "empty program")
    if n > max_insns:
        raise _fail(max_insns, f"program too large ({n} insns, limit {max_insns})")

    second: set[int] = set()  # second slots of lddw
    func_refs: list[tuple[int, int]] = []  # (pc, subprogram) of each lddw pseudo func (callbacks)
    imm64: dict[int, int] = {}
    starts: list[int] = []
    pc = 0
    while pc < n:
        insn = insns[pc]
        starts.append(pc)
        cls = insn.opcode & 7
        if cls == isa.LD:
            if insn.opcode != isa.LDDW:
                if insn.opcode & 0xE0 in (isa.ABS, isa.IND):
                    raise _fail(pc, "legacy packet access (ld abs/ind) is not supported")
                raise _fail(pc, f"invalid opcode {insn.opcode:#04x}")
            if pc + 1 >= n:
                raise _fail(pc, "lddw is missing its second slot")
            nxt = insns[pc + 1]
            if nxt.opcode or nxt.dst or nxt.src or nxt.off:
                raise _fail(pc + 1, "invalid second slot of lddw (reserved fields must be 0)")
            if insn.off:
                raise _fail(pc, "lddw uses reserved field off")
            _check_dst_writable(pc, insn.dst)
            if insn.src == isa.PSEUDO_IMM:
                imm64[pc] = isa.lddw_value(insn, nxt)
            elif insn.src == isa.PSEUDO_FUNC:
                if nxt.imm:
                    raise _fail(pc, "lddw pseudo func uses reserved field imm of its second slot")
                target = pc + 1 + insn.imm
                imm64[pc] = isa.FUNC_TAG | (target & isa.MASK32)
                func_refs.append((pc, target))
            elif insn.src in _SUPPORTED_PSEUDO:
                name = isa.PSEUDO_NAMES[insn.src]
                if resolver is None:
                    raise _fail(pc, f"lddw {name} placeholder needs a loader to resolve it")
                try:
                    value = resolver(insn.src, insn.imm, nxt.imm)
                except Exception as e:  # the loader's own error, reported at this insn
                    raise _fail(pc, f"cannot resolve lddw {name}[{insn.imm}]: {e}") from e
                if not isinstance(value, int):
                    raise _fail(pc, f"loader resolved lddw {name} to a non-integer")
                imm64[pc] = value & isa.MASK64
            else:
                raise _fail(pc, f"invalid lddw pseudo source {insn.src}")
            second.add(pc + 1)
            pc += 2
            continue
        if cls in (isa.ALU, isa.ALU64):
            _check_alu(pc, insn)
        elif cls in (isa.JMP, isa.JMP32):
            _check_jmp(pc, insn, helpers)
        else:
            _check_mem(pc, insn)
        pc += 1

    # subprograms: entry 0 plus every bpf-to-bpf call target
    calls: list[tuple[int, int]] = []
    for pc in starts:
        insn = insns[pc]
        if insn.opcode == isa.CALL_OP and insn.src == isa.CALL_LOCAL:
            target = pc + 1 + insn.imm
            if not 0 <= target < n:
                raise _fail(pc, f"call target {target} out of range")
            if target in second:
                raise _fail(pc, f"call target {target} is the middle of an lddw")
            calls.append((pc, target))
    for pc, target in func_refs:
        if not 0 <= target < n:
            raise _fail(pc, f"callback target {target} out of range")
        if target in second:
            raise _fail(pc, f"callback target {target} is the middle of an lddw")
    # a callback runs one frame below the function that takes its address (it is handed to a
    # helper there): for recursion and depth, that is a call
    calls += func_refs
    subprogs = sorted({0} | {t for _, t in calls})
    owner: list[int] = [0] * n
    for i, entry in enumerate(subprogs):
        end = subprogs[i + 1] if i + 1 < len(subprogs) else n
        for pc in range(entry, end):
            owner[pc] = entry
        last = end - 1
        if last in second:
            last -= 1
        op = insns[last].opcode
        if op not in (isa.EXIT_OP, isa.JA_OP, isa.JA32_OP):
            where = "the program" if end == n else f"subprogram at insn {entry}"
            raise _fail(last, f"last insn of {where} is not an exit or jump (falls off the end)")

    # jumps
    leaders: set[int] = set(subprogs)
    for pc in starts:
        insn = insns[pc]
        op, cls, code = insn.opcode, insn.opcode & 7, insn.opcode & 0xF0
        if cls not in (isa.JMP, isa.JMP32):
            continue
        if code == isa.CALL:
            continue
        if code == isa.EXIT:
            if pc + 1 < n:
                leaders.add(pc + 1)
            continue
        target = pc + 1 + (insn.imm if op == isa.JA32_OP else insn.off)
        if not 0 <= target < n:
            raise _fail(pc, f"jump out of range from insn {pc} to {target}")
        if target in second:
            raise _fail(pc, f"jump from insn {pc} into the middle of lddw at {target - 1}")
        if owner[target] != owner[pc]:
            raise _fail(pc, f"jump from insn {pc} to {target} leaves its subprogram")
        leaders.add(target)
        if pc + 1 < n:
            leaders.add(pc + 1)

    # call graph: recursion and depth
    graph: dict[int, list[tuple[int, int]]] = {s: [] for s in subprogs}
    for pc, target in calls:
        graph[owner[pc]].append((pc, target))
    depth: dict[int, int] = {}
    state: dict[int, int] = {}  # 1 = on stack, 2 = done

    def frames(sub: int, level: int) -> int:
        """Frames needed below ``sub`` (itself included); ``level`` = frames already used."""
        state[sub] = 1
        best = 1
        for call_pc, callee in graph[sub]:
            if state.get(callee) == 1:
                raise _fail(call_pc, f"recursive bpf-to-bpf call to insn {callee}"
                            if insns[call_pc].opcode == isa.CALL_OP else
                            f"callback at insn {callee} may call itself (recursion)")
            if level + 1 > isa.MAX_CALL_FRAMES:
                raise _fail(call_pc, f"the call stack of {level + 1} frames is too deep !")
            d = depth[callee] if state.get(callee) == 2 else frames(callee, level + 1)
            if level + d > isa.MAX_CALL_FRAMES:
                raise _fail(call_pc, f"the call stack of {level + d} frames is too deep !")
            best = max(best, d + 1)
        state[sub] = 2
        depth[sub] = best
        return best

    max_frames = frames(0, 1)

    # basic blocks: cost of each block (instructions, lddw counts once)
    block_cost: dict[int, int] = {}
    current = -1
    for pc in starts:
        if pc in leaders:
            current = pc
            block_cost[pc] = 0
        block_cost[current] += 1

    used_helpers = {insns[pc].imm for pc in starts
                  if insns[pc].opcode == isa.CALL_OP and insns[pc].src == isa.CALL_HELPER}
    return Program(insns, imm64, subprogs, block_cost, used_helpers, max_frames, len(starts),
                   frozenset(t for _, t in func_refs))
