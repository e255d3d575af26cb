"""A verifier by abstract interpretation, after Linux's ``kernel/bpf/verifier.c``.

Every path through the program is walked with an abstract state: each register's type (scalar,
context, stack, map value or key, map, ring buffer memory, kernel object, callback, possibly
null, or not initialised) with a fixed offset and a variable part (:mod:`.scalar`: tristate
numbers with signed/unsigned, 64/32-bit bounds), each stack byte's state (invalid, data, zero
or a spilled register), the call frames and the references held (ring buffer records). Branches
refine the registers they compare; a branch whose outcome the state decides is not walked.

Termination is proved as Linux proves it: states are saved at jump targets; a path reaching a
saved state that is fully explored and covers it is pruned; reaching a state still being
explored that it equals exactly is an infinite loop; more than 1,000,000 processed instructions
or 8,192 pending branches make the program too complex. So ``for (i = 0; i < 100; i++)`` is
walked 100 times and accepted, and a loop bounded only at run time is refused.

Errors are Linux's words for the rule broken, naming the instruction (``R1 invalid mem access
'scalar'``). ``log`` (``kprobesim verify --log``) gets one line per processed instruction with
the registers it defines, like the verifier log at level 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import alu, isa
from . import helper_protos as hp
from .btf import Btf
from .disasm import disasm_insn
from .errors import VerifierError
from .helper_ids import describe as describe_helper
from .helper_ids import name as helper_name
from .isa import Insn
from .scalar import Range, Scalar, alu32, alu64, sext, sync
from .tracing import BtfRef, TracingCtx, struct_access, task_struct

COMPLEXITY_LIMIT_INSNS = 1_000_000
COMPLEXITY_LIMIT_JMP_SEQ = 8192
MAX_VAR_SIZE = 1 << 29
GPL_COMPATIBLE = ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL")

# register kinds
NOT_INIT, SCALAR, CTX, STACK, MAP_VALUE, MAP_KEY, MAP_PTR, MEM, BTF_ID, FUNC = range(10)
_NAMES = {NOT_INIT: "?", SCALAR: "scalar", CTX: "ctx", STACK: "fp", MAP_VALUE: "map_value", MAP_KEY: "map_key",
          MAP_PTR: "map_ptr", MEM: "ringbuf_mem", BTF_ID: "ptr_", FUNC: "func"}
_ZERO = Scalar.const(0)


@dataclass(frozen=True)
class MapInfo:
    """What the verifier knows of a map: its type and sizes, and whether programs may write it."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    rdonly: bool = False


@dataclass(frozen=True, slots=True)
class Reg:
    kind: int
    var: Scalar = _ZERO  # scalars: the value; pointers: the variable offset
    off: int = 0  # pointers: the fixed offset
    nullable: bool = False
    id: int = 0  # shared by copies of one possibly-null pointer
    map: MapInfo | None = None
    size: int = 0  # MEM: bytes
    frame: int = 0  # STACK: the frame whose stack it points into
    ref: int = 0  # MEM: the reference (ring buffer record) it holds
    btf: BtfRef | None = None  # BTF_ID: the struct it points to

    def type_name(self) -> str:
        name = _NAMES[self.kind]
        if self.kind == BTF_ID:
            return "ptr_" + (self.btf.name if self.btf is not None else "")
        return name + "_or_null" if self.nullable else name

    def show(self) -> str:
        if self.kind == SCALAR:
            return self.var.show()
        if self.kind == NOT_INIT:
            return "?"
        text = f"{self.type_name()}(off={self.off}"
        if not self.var.is_const or self.var.value:
            text += f",var={self.var.r64.show()}"
        if self.map is not None:
            text += f",map={self.map.name}"
        if self.kind == MEM:
            text += f",size={self.size}"
        return text + ")"


UNINIT = Reg(NOT_INIT)
UNKNOWN = Reg(SCALAR, Scalar.unknown())
# stack byte states
INVALID, MISC, ZEROB = "?", "m", "0"
_FRESH = INVALID * 8


@dataclass(frozen=True, slots=True)
class Spill:
    """A register spilled to the first ``size`` bytes of a stack slot; ``rest``: the states of
    the slot's other bytes."""

    reg: Reg
    size: int
    rest: str


def _byte_states(cell: Spill | str) -> str:
    """A slot as 8 byte states (a spilled scalar's bytes are data, zero if it is 0; a spilled
    pointer's are ``p``)."""
    if isinstance(cell, str):
        return cell
    r = cell.reg
    if r.kind == SCALAR:
        b = ZEROB if r.var.is_const and r.var.value & ((1 << (8 * cell.size)) - 1) == 0 else MISC
    else:
        b = "p"
    return b * cell.size + cell.rest


def _scalar(s: Scalar) -> Reg:
    return Reg(SCALAR, s)


class Frame:
    __slots__ = ("regs", "stack", "callsite", "callback")

    def __init__(self, regs: list[Reg], stack: dict[int, Spill | str], callsite: int, callback: int) -> None:
        self.regs = regs
        self.stack = stack  # slot i covers fp-8(i+1) .. fp-8i-1: a Spill or 8 byte states
        self.callsite = callsite  # pc of the call that made the frame (-1: the program)
        self.callback = callback  # helper id if the frame is a callback, else 0

    def copy(self) -> Frame:
        return Frame(list(self.regs), dict(self.stack), self.callsite, self.callback)


class State:
    __slots__ = ("frames", "refs")

    def __init__(self, frames: list[Frame], refs: dict[int, int]) -> None:
        self.frames = frames
        self.refs = refs  # reference id -> pc that acquired it

    def copy(self) -> State:
        return State([f.copy() for f in self.frames], dict(self.refs))

    @property
    def cur(self) -> Frame:
        return self.frames[-1]


@dataclass(eq=False)
class Checkpoint:
    state: State
    parent: Checkpoint | None
    pc: int = 0
    key: tuple = ()
    branches: int = 1


@dataclass
class Result:
    """The verdict's details: instructions processed, states saved, the log."""

    processed: int = 0
    states: int = 0
    peak_states: int = 0
    log: list[str] = field(default_factory=list)
    probe_mem: frozenset[int] = frozenset()
    #: loads and stores that read or write a map value on every path, within its bounds
    in_bounds: frozenset[int] = frozenset()


_PRUNE = object()
#: helpers Linux gives kprobe programs but not fentry/fexit ones (tracing_prog_func_proto)
_NOT_FOR_TRACING = frozenset({58})  # bpf_override_return


class _Refuse(Exception):
    def __init__(self, pc: int, msg: str) -> None:
        super().__init__(msg)
        self.pc = pc
        self.msg = msg


def _ranges_contain(old: Reg, cur: Reg) -> bool:
    return old.var.contains(cur.var)


def _reg_covers(old: Reg, cur: Reg) -> bool:
    if old.kind == NOT_INIT:
        return True
    if old.kind != cur.kind:
        return False
    if old.kind == SCALAR:
        return _ranges_contain(old, cur)
    return (old.off == cur.off and old.map == cur.map and old.size == cur.size and old.frame == cur.frame
            and old.btf == cur.btf and (old.nullable or not cur.nullable) and old.nullable == cur.nullable
            and old.ref == cur.ref            and _ranges_contain(old, cur))


def _slot_covers(old: Spill | str, cur: Spill | str | None) -> bool:
    if cur is None:
        cur = _FRESH
    if isinstance(old, Spill):
        if isinstance(cur, Spill) and cur.size == old.size and _reg_covers(old.reg, cur.reg):
            return _bytes_cover(old.rest, cur.rest)
        if old.reg.kind == NOT_INIT:
            return True
        return False
    return _bytes_cover(old, _byte_states(cur))


def _bytes_cover(old: str, cur: str) -> bool:
    for o, c in zip(old, cur, strict=True):
        if o == INVALID or o == c:
            continue
        if o == MISC and c in (ZEROB, INVALID):  # root may read uninitialised stack (Linux 6.3+)
            continue
        return False
    return True


def _covers(old: State, cur: State) -> bool:
    """Everything ``cur`` can do, ``old`` could (Linux's states_equal, without liveness)."""
    if len(old.frames) != len(cur.frames) or len(old.refs) != len(cur.refs):
        return False
    for fo, fc in zip(old.frames, cur.frames, strict=True):
        if fo.callsite != fc.callsite:
            return False
        for ro, rc in zip(fo.regs, fc.regs, strict=True):
            if not _reg_covers(ro, rc):
                return False
        for slot, so in fo.stack.items():
            if not _slot_covers(so, fc.stack.get(slot)):
                return False
    return True


def _canon(r: Reg, ids: dict[int, int]) -> Reg:
    if not r.id and not r.ref:
        return r
    return Reg(r.kind, r.var, r.off, r.nullable, ids.setdefault(r.id, len(ids) + 1) if r.id else 0, r.map, r.size,
               r.frame, ids.setdefault(r.ref, len(ids) + 1) if r.ref else 0, r.btf)


def _exact_key(st: State) -> tuple:
    """A hashable image of the whole state, ids renumbered in order of appearance (Linux
    compares ids through a map): equal keys are equal states."""
    ids: dict[int, int] = {}
    frames = []
    for f in st.frames:
        regs = tuple(_canon(r, ids) for r in f.regs)
        stack = tuple(sorted((k, Spill(_canon(v.reg, ids), v.size, v.rest) if isinstance(v, Spill) else v)
                             for k, v in f.stack.items() if v != _FRESH))
        frames.append((f.callsite, regs, stack))
    return (tuple(frames), len(st.refs))


def _signature(st: State) -> tuple[tuple, tuple]:
    """Which registers of the innermost frame hold constants, and their values."""
    regs = st.frames[-1].regs
    group = tuple(i for i, r in enumerate(regs) if r.kind == SCALAR and r.var.is_const)
    return group, tuple(regs[i].var.value for i in group)


def _values_at(st: State, group: tuple) -> tuple | None:
    regs = st.frames[-1].regs
    out = []
    for i in group:
        r = regs[i]
        if r.kind != SCALAR or not r.var.is_const:
            return None
        out.append(r.var.value)
    return tuple(out)


def _same_frames(old: State, cur: State) -> bool:
    return len(old.frames) == len(cur.frames) and all(
        fo.callsite == fc.callsite for fo, fc in zip(old.frames, cur.frames, strict=True))


def _equal(old: State, cur: State) -> bool:
    """Exactly the same state (Linux's states_equal with EXACT): an infinite loop if on the path."""
    if len(old.frames) != len(cur.frames) or old.refs.keys() != cur.refs.keys():
        return False
    for fo, fc in zip(old.frames, cur.frames, strict=True):
        if fo.callsite != fc.callsite or fo.regs != fc.regs:
            return False
        so = {k: v for k, v in fo.stack.items() if v != _FRESH}
        sc = {k: v for k, v in fc.stack.items() if v != _FRESH}
        if so != sc:
            return False
    return True


class Verifier:
    """Walks one program. ``maps``: the object's maps by index (``lddw`` placeholders);
    ``ctx_size``: bytes of the context (the arch's ``struct pt_regs``); ``gpl``: the license is
    GPL-compatible; ``helpers``: the implemented helper ids."""

    def __init__(self, insns: Sequence[Insn], maps: Sequence[MapInfo], ctx_size: int, gpl: bool,
                 helpers: frozenset[int] | set[int], log: bool = False,
                 insn_limit: int = COMPLEXITY_LIMIT_INSNS, strict_alignment: bool = True,
                 tracing: TracingCtx | None = None, kernel_btf: Btf | None = None) -> None:
        self.insns = list(insns)
        #: an fentry/fexit program's context (the function's arguments), else None: pt_regs
        self.tracing = tracing
        #: the kernel's BTF: the structs BTF-typed pointers point to
        self.kernel_btf = kernel_btf if kernel_btf is not None else tracing.btf if tracing is not None else None
        #: loads through BTF-typed pointers (become probe reads), and through other pointers
        self.probe_pcs: set[int] = set()
        #: pc -> whether every access walked there went to a map value (checked in bounds)
        self.value_pcs: dict[int, bool] = {}
        self._load_class: dict[int, int] = {}
        #: no efficient unaligned access (riscv64, loongarch64): Linux checks every alignment
        self.strict_alignment = strict_alignment
        self.maps = list(maps)
        self.ctx_size = ctx_size
        self.gpl = gpl
        self.helpers = helpers
        self.want_log = log
        #: Linux lets programs loaded by root read uninitialised stack (6.3+): the loader is root
        self.allow_uninit_stack = True
        self.insn_limit = insn_limit
        self.result = Result()
        self.next_id = 0
        self.prune_points = self._prune_points()
        #: checkpoints by pc: still being explored (by exact state), and fully explored (by the
        #: registers that are constants in them and their values: a quick filter for _covers)
        self.active: dict[int, dict[tuple, list[Checkpoint]]] = {}
        self.done: dict[int, dict[tuple, dict[tuple, list[Checkpoint]]]] = {}
        self.jmps = self.prev_jmps = self.prev_processed = 0

    # -- setup ----------------------------------------------------------------------------------
    def _prune_points(self) -> set[int]:
        """Where states are compared, as Linux 6.x marks them: conditional jumps and their
        targets, the targets of unconditional ones, the instruction after every call, bpf-to-bpf
        calls and the functions they call."""
        points: set[int] = set()
        pc, n = 0, len(self.insns)
        while pc < n:
            insn = self.insns[pc]
            op, cls, code = insn.opcode, insn.opcode & 7, insn.opcode & 0xF0
            if op == isa.LDDW:
                pc += 2
                continue
            if op == isa.CALL_OP:
                points.add(pc + 1)
                if insn.src == isa.CALL_LOCAL:
                    points |= {pc, pc + 1 + insn.imm}
            elif cls in (isa.JMP, isa.JMP32) and code == isa.JA:
                points.add(pc + 1 + (insn.imm if op == isa.JA32_OP else insn.off))
            elif cls in (isa.JMP, isa.JMP32) and code != isa.EXIT:
                points |= {pc, pc + 1 + insn.off}
            pc += 1
        return points

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- driver ---------------------------------------------------------------------------------
    def _unreachable(self) -> int | None:
        """The first instruction no path reaches (Linux's check_cfg refuses it)."""
        insns, n = self.insns, len(self.insns)
        seen = [False] * n
        work = [0]
        while work:
            pc = work.pop()
            if not 0 <= pc < n or seen[pc]:
                continue
            seen[pc] = True
            insn = insns[pc]
            op, cls, code = insn.opcode, insn.opcode & 7, insn.opcode & 0xF0
            if op == isa.LDDW:
                if pc + 1 < n:
                    seen[pc + 1] = True
                work.append(pc + 2)
                if insn.src == isa.PSEUDO_FUNC:
                    work.append(pc + 1 + insn.imm)
            elif op == isa.EXIT_OP:
                pass
            elif op == isa.CALL_OP:
                work.append(pc + 1)
                if insn.src == isa.CALL_LOCAL:
                    work.append(pc + 1 + insn.imm)
            elif cls in (isa.JMP, isa.JMP32) and code == isa.JA:
                work.append(pc + 1 + (insn.imm if op == isa.JA32_OP else insn.off))
            elif cls in (isa.JMP, isa.JMP32) and code != isa.CALL:
                work += [pc + 1, pc + 1 + insn.off]
            else:
                work.append(pc + 1)
        return next((pc for pc in range(n) if not seen[pc]), None)

    def run(self) -> Result:
        dead = self._unreachable()
        if dead is not None:
            raise VerifierError(dead, f"unreachable insn {dead}")
        regs = [UNINIT] * 11
        regs[1] = Reg(CTX)
        regs[10] = Reg(STACK, frame=0)
        start = State([Frame(regs, {}, -1, 0)], {})
        pending: list[tuple[State, int, Checkpoint | None]] = [(start, 0, None)]
        try:
            while pending:
                state, pc, parent = pending.pop()
                self._walk(state, pc, parent, pending)
        except _Refuse as e:
            raise VerifierError(e.pc, e.msg) from None
        return self.result

    def _done(self, cp: Checkpoint | None) -> None:
        """A path ended: its checkpoints may now be fully explored (then they prune others)."""
        while cp is not None:
            cp.branches -= 1
            if cp.branches:
                return
            self.active[cp.pc][cp.key].remove(cp)
            group, values = _signature(cp.state)
            self.done.setdefault(cp.pc, {}).setdefault(group, {}).setdefault(values, []).append(cp)
            cp = cp.parent

    def _walk(self, st: State, pc: int, parent: Checkpoint | None, pending: list) -> None:
        insns = self.insns
        res = self.result
        while True:
            res.processed += 1
            if res.processed > self.insn_limit:
                raise _Refuse(pc, f"BPF program is too large. Processed {res.processed} insn")
            if pc in self.prune_points:
                verdict = self._visit(st, pc, parent)
                if verdict is _PRUNE:
                    self._done(parent)
                    return
                parent = verdict  # type: ignore[assignment]
            insn = insns[pc]
            if insn.opcode & 7 in (isa.JMP, isa.JMP32):
                self.jmps += 1
            nxt = self._step(st, pc, insn, parent, pending)
            if self.want_log:
                self._log(st, pc, insn)
            if nxt is None:
                self._done(parent)
                return
            pc = nxt

    def _visit(self, st: State, pc: int, parent: Checkpoint | None) -> Checkpoint | object | None:
        """At a prune point (Linux's is_state_visited): _PRUNE to end the path, else its
        checkpoint, a new one when enough happened since the last (>= 2 jumps and 8 insns;
        inside a loop >= 20 jumps or 100 insns)."""
        res = self.result
        add = self.jmps - self.prev_jmps >= 2 and res.processed - self.prev_processed >= 8
        active = self.active.setdefault(pc, {})
        key = _exact_key(st)
        # a state on the way here, exactly this one, is a loop (Linux's states_equal EXACT); Linux
        # first compares the current frame's registers byte for byte (states_maybe_looping), so
        # a pointer with a fresh id (a new lookup's result) is never a loop yet
        if any(cp.state.cur.regs == st.cur.regs for cp in active.get(key, ())):
            raise _Refuse(pc, f"infinite loop detected at insn {pc}")
        if any(active.values()) and self.jmps - self.prev_jmps < 20 and res.processed - self.prev_processed < 100:
            add = False
        for group, by_values in self.done.get(pc, {}).items():
            values = _values_at(st, group)
            if values is None:
                continue
            for cp in by_values.get(values, ()):
                if _covers(cp.state, st):
                    return _PRUNE
        if not add:
            return parent
        cp = Checkpoint(st.copy(), parent, pc, key)
        active.setdefault(key, []).append(cp)
        self.prev_jmps, self.prev_processed = self.jmps, res.processed
        res.states += 1
        res.peak_states = max(res.peak_states, res.states)
        return cp

    def _push(self, pending: list, st: State, pc: int, parent: Checkpoint | None, at: int) -> None:
        if len(pending) >= COMPLEXITY_LIMIT_JMP_SEQ:
            raise _Refuse(at, f"The sequence of {len(pending) + 1} jumps is too complex.")
        if parent is not None:
            parent.branches += 1
        pending.append((st, pc, parent))

    def _log(self, st: State, pc: int, insn: Insn) -> None:
        f = st.cur
        regs = " ".join(f"R{i}={r.show()}" for i, r in enumerate(f.regs) if r.kind != NOT_INIT and i != 10)
        depth = len(st.frames) - 1
        nxt = self.insns[pc + 1] if pc + 1 < len(self.insns) else None
        self.result.log.append(f"{pc}: {disasm_insn(insn, nxt)[0]}" +
                               (f" ; frame{depth}" if depth else "") + (f" ; {regs}" if regs else ""))

    # -- registers ------------------------------------------------------------------------------
    def _read(self, st: State, pc: int, r: int) -> Reg:
        reg = st.cur.regs[r]
        if reg.kind == NOT_INIT:
            raise _Refuse(pc, f"R{r} !read_ok")
        return reg

    # -- one instruction ------------------------------------------------------------------------
    def _step(self, st: State, pc: int, insn: Insn, parent: Checkpoint | None, pending: list) -> int | None:
        op, dst, src, off, imm = insn
        cls = op & 7
        f = st.cur
        if op == isa.LDDW:
            nxt = self.insns[pc + 1]
            f.regs[dst] = self._lddw(pc, insn, nxt)
            return pc + 2
        if cls in (isa.ALU, isa.ALU64):
            self._alu(st, pc, insn)
            return pc + 1
        if cls == isa.LDX:
            ptr = self._read(st, pc, src)
            size = isa.SIZE_BYTES[op & 0x18]
            f.regs[dst] = self._load(st, pc, src, ptr, off, size, (op & 0xE0) == isa.MEMSX)
            return pc + 1
        if cls == isa.ST:
            ptr = self._read(st, pc, dst)
            size = isa.SIZE_BYTES[op & 0x18]
            self._store(st, pc, dst, ptr, off, size, _scalar(Scalar.const(imm)))
            return pc + 1
        if cls == isa.STX:
            ptr = self._read(st, pc, dst)
            val = self._read(st, pc, src)
            size = isa.SIZE_BYTES[op & 0x18]
            if (op & 0xE0) == isa.ATOMIC:
                self._atomic(st, pc, insn, ptr, val, size)
            else:
                if ptr.kind == STACK and val.kind == SCALAR and off % 8 == 0 and ptr.var.is_const \
                        and (ptr.off + alu.signed(ptr.var.value, 64)) % 8 == 0 \
                        and (size == 8 or val.var.r64.umax < 1 << (8 * size)):
                    val = f.regs[src] = self._linked(val)  # a spill keeps a link to its register
                self._store(st, pc, dst, ptr, off, size, val)
            return pc + 1
        # jumps
        code = op & 0xF0
        if op == isa.EXIT_OP:
            return self._exit(st, pc)
        if op == isa.CALL_OP:
            if src == isa.CALL_LOCAL:
                return self._call_local(st, pc, pc + 1 + imm, 0)
            return self._call_helper(st, pc, imm)
        if op == isa.CALLX_OP:
            raise _Refuse(pc, "callx is not allowed")
        if code == isa.JA:
            return pc + 1 + (imm if op == isa.JA32_OP else off)
        return self._cond(st, pc, insn, parent, pending)

    def _lddw(self, pc: int, insn: Insn, nxt: Insn) -> Reg:
        src = insn.src
        if src == isa.PSEUDO_IMM:
            return _scalar(Scalar.const(isa.lddw_value(insn, nxt)))
        if src == isa.PSEUDO_FUNC:
            return Reg(FUNC, off=pc + 1 + insn.imm)
        if src in (isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_IDX, isa.PSEUDO_MAP_VALUE, isa.PSEUDO_MAP_IDX_VALUE):
            if not 0 <= insn.imm < len(self.maps):
                raise _Refuse(pc, f"fd {insn.imm} is not pointing to valid bpf_map")
            m = self.maps[insn.imm]
            if src in (isa.PSEUDO_MAP_FD, isa.PSEUDO_MAP_IDX):
                return Reg(MAP_PTR, map=m)
            if m.max_entries != 1 or m.map_type != 2:
                raise _Refuse(pc, "map_value pseudo only supported for single-element arrays")
            if not 0 <= nxt.imm < m.value_size:
                raise _Refuse(pc, f"invalid access to map value pointer, value_size={m.value_size} off={nxt.imm}")
            return Reg(MAP_VALUE, off=nxt.imm, map=m)
        raise _Refuse(pc, f"unsupported lddw source {src}")

    # -- ALU ----------------------------------------------------------------------------------------
    def _alu(self, st: State, pc: int, insn: Insn) -> None:
        op, dst, src, off, imm = insn
        f = st.cur
        is64 = (op & 7) == isa.ALU64
        code, x = op & 0xF0, bool(op & isa.X)
        if code == isa.END:
            d = self._read(st, pc, dst)
            if d.kind != SCALAR:
                raise _Refuse(pc, f"R{dst} pointer arithmetic prohibited")
            if d.var.is_const:
                bits = imm
                v = d.var.value
                if is64 or x:
                    v = alu.bswap(v, bits)
                else:
                    v &= (1 << bits) - 1
                f.regs[dst] = _scalar(Scalar.const(v))
            elif not (is64 or x):
                f.regs[dst] = _scalar(self._trunc(d.var, imm))
            else:
                f.regs[dst] = _scalar(Scalar.bounded(0, (1 << imm) - 1) if imm < 64 else Scalar.unknown())
            return
        if code == isa.NEG:
            d = self._read(st, pc, dst)
            if d.kind != SCALAR:
                raise _Refuse(pc, f"R{dst} pointer arithmetic with neg operator prohibited")
            zero = _ZERO
            f.regs[dst] = _scalar(alu64(isa.SUB, zero, d.var) if is64 else alu32(isa.SUB, zero, d.var))
            return
        if x:
            s = self._read(st, pc, src)
        else:
            s = _scalar(Scalar.const(imm if is64 else imm & isa.MASK32))
        if code == isa.MOV:
            if x and off:  # movsx
                if s.kind != SCALAR:
                    raise _Refuse(pc, f"R{src} sign-extension of a pointer prohibited")
                r = sext(s.var.r64 if is64 else Scalar.of64(s.var.r64).r64, off, 64 if is64 else 32)
                f.regs[dst] = _scalar(Scalar.of64(r) if is64 else Scalar.of32(r))
            elif is64:
                if x and s.kind == SCALAR:
                    s = f.regs[src] = self._linked(s)
                f.regs[dst] = s
            elif s.kind == SCALAR:
                f.regs[dst] = _scalar(Scalar.of32(s.var.r32))
            else:  # a 32-bit copy of a pointer: an unknown number (privileged programs may)
                f.regs[dst] = _scalar(Scalar.of32(Range.unknown(32)))
            return
        d = self._read(st, pc, dst)
        if d.kind == SCALAR and s.kind == SCALAR:
            f.regs[dst] = _scalar(self._scalar_op(code, off, d.var, s.var, is64))
            return
        f.regs[dst] = self._ptr_arith(pc, insn, d, s, is64)

    @staticmethod
    def _trunc(v: Scalar, bits: int) -> Scalar:
        if bits == 64:
            return v
        if bits == 32:
            return Scalar.of32(v.r32)
        return Scalar.of32(alu32(isa.AND, v, Scalar.const((1 << bits) - 1)).r32)

    @staticmethod
    def _scalar_op(code: int, off: int, a: Scalar, b: Scalar, is64: bool) -> Scalar:
        if code in (isa.DIV, isa.MOD) and off == 1:  # signed
            if a.is_const and b.is_const:
                bits = 64 if is64 else 32
                fn = alu.sdiv if code == isa.DIV else alu.smod
                return Scalar.const(fn(a.value, b.value, bits))
            return Scalar.unknown() if is64 else Scalar.of32(Range.unknown(32))
        return alu64(code, a, b) if is64 else alu32(code, a, b)

    def _ptr_arith(self, pc: int, insn: Insn, d: Reg, s: Reg, is64: bool) -> Reg:
        op, dst = insn.opcode, insn.dst
        code = op & 0xF0
        ptr, other = (d, s) if d.kind != SCALAR else (s, d)
        preg = dst
        if not is64:
            if code == isa.SUB:
                return UNKNOWN  # root may: a meaningless number
            raise _Refuse(pc, f"R{preg} 32-bit pointer arithmetic prohibited")
        if d.kind != SCALAR and s.kind != SCALAR:
            if code == isa.SUB and d.kind == s.kind:  # pointer difference: a number
                return UNKNOWN
            raise _Refuse(pc, f"R{dst} pointer {isa.ALU_NAMES[code]} pointer prohibited")
        if code not in (isa.ADD, isa.SUB) or (code == isa.SUB and ptr is s):
            opname = {isa.AND: "&=", isa.OR: "|=", isa.XOR: "^=", isa.LSH: "<<=", isa.RSH: ">>=",
                      isa.ARSH: "s>>=", isa.MUL: "*=", isa.DIV: "/=", isa.MOD: "%="}.get(code, "-=")
            if code in (isa.AND, isa.OR, isa.XOR):
                raise _Refuse(pc, f"R{preg} bitwise operator {opname} on pointer prohibited")
            raise _Refuse(pc, f"R{preg} pointer arithmetic with {opname} operator prohibited")
        if ptr.nullable:
            raise _Refuse(pc, f"R{preg} pointer arithmetic on {ptr.type_name()} prohibited, null-check it first")
        if ptr.kind in (MAP_PTR, FUNC):
            raise _Refuse(pc, f"R{preg} pointer arithmetic on {ptr.type_name()} prohibited")
        delta = other.var
        tname = ptr.type_name()
        # Linux's check_reg_sane_offset
        if delta.is_const:
            val = alu.signed(delta.value, 64)
            if not -MAX_VAR_SIZE < val < MAX_VAR_SIZE:
                raise _Refuse(pc, f"math between {tname} pointer and {val} is not allowed")
        else:
            smin = delta.r64.smin
            if smin == -(1 << 63):
                raise _Refuse(pc, f"math between {tname} pointer and register with unbounded min value is not "
                                  f"allowed")
            if not -MAX_VAR_SIZE < smin < MAX_VAR_SIZE:
                raise _Refuse(pc, f"value {smin} makes {tname} pointer be out of bounds")
        if code == isa.SUB:
            delta = alu64(isa.SUB, _ZERO, delta)
        if delta.is_const:
            off = ptr.off + alu.signed(delta.value, 64)
            if not -MAX_VAR_SIZE < off < MAX_VAR_SIZE:
                raise _Refuse(pc, f"{tname} pointer offset {off} is not allowed")
            return Reg(ptr.kind, ptr.var, off, ptr.nullable, ptr.id, ptr.map, ptr.size, ptr.frame, ptr.ref, ptr.btf)
        if ptr.kind == CTX:
            raise _Refuse(pc, f"R{preg} variable ctx access var_off={delta.r64.show()} disallowed")
        if ptr.kind == STACK:
            pass  # Linux allows it; accesses through it must stay in bounds
        var = alu64(isa.ADD, ptr.var, delta)
        return Reg(ptr.kind, var, ptr.off, ptr.nullable, ptr.id, ptr.map, ptr.size, ptr.frame, ptr.ref, ptr.btf)

    # -- memory ---------------------------------------------------------------------------------------
    def _bounds(self, pc: int, r: int, ptr: Reg, off: int, size: int, limit: int, what: str) -> None:
        """An access of ``size`` bytes at ``ptr + off`` must stay in ``limit`` bytes (Linux's
        check_mem_region_access, with its messages)."""
        var = ptr.var.r64
        base = ptr.off + off
        if var.smin < 0 and (var.smin == -(1 << 63) or base + var.smin != alu.signed((base + var.smin) & isa.MASK32, 32)
                             or var.smin + base < 0):
            raise _Refuse(pc, f"R{r} min value is negative, either use unsigned index or do a if (index >=0) check.")
        lo = var.smin + base
        if lo < 0 or lo + size > limit:
            raise _Refuse(pc, f"R{r} min value is outside of the allowed memory range")
        if var.umax >= MAX_VAR_SIZE:
            raise _Refuse(pc, f"R{r} unbounded memory access, make sure to bounds check any such access")
        hi = var.umax + base
        if hi < 0 or hi + size > limit:
            raise _Refuse(pc, f"R{r} max value is outside of the allowed memory range")

    def _align(self, pc: int, ptr: Reg, off: int, size: int) -> None:
        """Linux's check_ptr_alignment: stack accesses always, others on strict-alignment arches."""
        desc = {STACK: "stack ", CTX: "context ", MAP_VALUE: "value ", MAP_KEY: "key "}.get(ptr.kind, "")
        if size == 1 or not (ptr.kind == STACK or self.strict_alignment):
            return
        var = ptr.var.r64
        if (var.value + ptr.off + off) % size or (var.mask & (size - 1)):
            shown = str(alu.signed(var.value, 64)) if var.is_const else f"({var.value:#x}; {var.mask:#x})"
            raise _Refuse(pc, f"misaligned {desc}access off {shown}+{ptr.off}+{off} size {size}")

    def _frame_of(self, st: State, ptr: Reg) -> Frame:
        return st.frames[ptr.frame]

    def _stack_off(self, pc: int, r: int, ptr: Reg, off: int, size: int, access: str) -> int:
        if not ptr.var.is_const:
            raise _Refuse(pc, f"variable stack access var_off={ptr.var.r64.show()} off={off} size={size} "
                              f"is not supported")
        o = ptr.off + off + alu.signed(ptr.var.value, 64)
        if o < -isa.STACK_SIZE or o + size > 0:
            raise _Refuse(pc, f"invalid {access} stack R{r} off={o} size={size}")
        return o

    def _value_access(self, pc: int, kind: int) -> None:
        """Note the kind of pointer an access at ``pc`` goes through (see ``value_pcs``)."""
        self.value_pcs[pc] = kind == MAP_VALUE and self.value_pcs.get(pc, True)

    def _load(self, st: State, pc: int, r: int, ptr: Reg, off: int, size: int, sx: bool) -> Reg:
        kind = ptr.kind
        self._value_access(pc, kind)
        if kind in (SCALAR, MAP_PTR, FUNC) or ptr.nullable:
            raise _Refuse(pc, f"R{r} invalid mem access '{ptr.type_name()}'")
        self._align(pc, ptr, off, size)
        self._load_kind(pc, kind)
        if kind == CTX:
            o = ptr.off + off
            if not ptr.var.is_const or ptr.var.value or ptr.off:
                raise _Refuse(pc, f"dereference of modified ctx ptr R{r} off={ptr.off} disallowed")
            if self.tracing is not None:
                return self._tracing_ctx(pc, o, size, sx)
            if o < 0 or o + size > self.ctx_size or o % size:
                raise _Refuse(pc, f"invalid bpf_context access off={o} size={size}")
            return self._sized_unknown(size, sx)
        if kind == STACK:
            o = self._stack_off(pc, r, ptr, off, size, "read from")
            return self._stack_read(st, pc, r, ptr, o, size, sx)
        if kind in (MAP_VALUE, MAP_KEY):
            m = ptr.map
            assert m is not None
            limit = m.value_size if kind == MAP_VALUE else m.key_size
            self._bounds(pc, r, ptr, off, size, limit, "map value" if kind == MAP_VALUE else "map key")
            return self._sized_unknown(size, sx)
        if kind == MEM:
            self._bounds(pc, r, ptr, off, size, ptr.size, "memory")
            return self._sized_unknown(size, sx)
        if kind == BTF_ID:  # kernel object: read through the guest's memory (a fault reads 0)
            return self._btf_load(pc, r, ptr, off, size, sx)
        raise _Refuse(pc, f"R{r} invalid mem access '{ptr.type_name()}'")

    def _load_kind(self, pc: int, kind: int) -> None:
        """Linux's save_aux_ptr_type: one load instruction reads through one kind of pointer
        when that kind is the context or a kernel object (their loads are rewritten)."""
        cls = kind if kind in (CTX, BTF_ID) else -1
        prev = self._load_class.setdefault(pc, cls)
        if prev != cls:
            raise _Refuse(pc, "same insn cannot be used with different pointers")
        if cls == BTF_ID:
            self.probe_pcs.add(pc)

    def _tracing_ctx(self, pc: int, o: int, size: int, sx: bool) -> Reg:
        """An fentry/fexit program's context read (tracing_prog_is_valid_access, btf_ctx_access)."""
        tr = self.tracing
        assert tr is not None
        why = None
        if o < 0 or o >= 8 * 12 or o % size:
            got: BtfRef | int | str = ""
        else:
            got = tr.access(o, size)
            if isinstance(got, str):
                why = got
        if isinstance(got, str):
            raise _Refuse(pc, f"invalid bpf_context access off={o} size={size}" + (f" ({why})" if why else ""))
        if isinstance(got, BtfRef):
            return Reg(BTF_ID, btf=got)
        return self._sized_unknown(size, sx)

    def _btf_load(self, pc: int, r: int, ptr: Reg, off: int, size: int, sx: bool) -> Reg:
        """A read through a BTF-typed pointer (Linux's check_ptr_to_btf_access)."""
        ref = ptr.btf
        btf = self.kernel_btf
        if ref is None or btf is None:
            raise _Refuse(pc, f"R{r} invalid mem access '{ptr.type_name()}' (no kernel BTF)")
        if not self.gpl:
            raise _Refuse(pc, f"Cannot access kernel 'struct {ref.name}' from non-GPL compatible program")
        o = ptr.off + off
        if o < 0:
            raise _Refuse(pc, f"R{r} is ptr_{ref.name} invalid negative access: off={o}")
        if not ptr.var.is_const or ptr.var.value:
            raise _Refuse(pc, f"R{r} is ptr_{ref.name} invalid variable offset: off={o}, var_off={ptr.var.r64.show()}")
        got = struct_access(btf, ref, o, size)
        if isinstance(got, str):
            raise _Refuse(pc, got)
        if isinstance(got, BtfRef):
            return Reg(BTF_ID, btf=got)
        return self._sized_unknown(size, sx)

    @staticmethod
    def _sized_unknown(size: int, sx: bool = False) -> Reg:
        if size == 8:
            return UNKNOWN
        if sx:
            bits = 8 * size
            return _scalar(Scalar.of64(Range.make(64, 0, isa.MASK64, 0, isa.MASK64, -(1 << (bits - 1)),
                                                  (1 << (bits - 1)) - 1) or Range.unknown(64)))
        return _scalar(Scalar.bounded(0, (1 << (8 * size)) - 1))

    def _stack_read(self, st: State, pc: int, r: int, ptr: Reg, o: int, size: int, sx: bool) -> Reg:
        cell = self._frame_of(st, ptr).stack.get((-o - 1) // 8, _FRESH)
        start = o % 8
        if isinstance(cell, Spill):
            if size == 8 and cell.size == 8:
                return cell.reg
            if cell.reg.kind != SCALAR:
                raise _Refuse(pc, "invalid size of register fill")
            if start == 0 and size <= cell.size:  # a narrowing fill keeps what is known
                return _scalar(self._coerce(cell.reg.var, size, sx))
        states = _byte_states(cell)[start : start + size]
        if not self.allow_uninit_stack and INVALID in states:
            raise _Refuse(pc, f"invalid read from stack R{r} off {ptr.off}+{o - ptr.off} size {size}")
        if states == ZEROB * size:
            return _scalar(_ZERO)
        return self._sized_unknown(size, sx)

    @staticmethod
    def _coerce(v: Scalar, size: int, sx: bool) -> Scalar:
        if size == 8:
            return v
        bits = 8 * size
        if v.is_const:
            low = v.value & ((1 << bits) - 1)
            return Scalar.const(alu.signed(low, bits) if sx else low)
        if v.r64.umax < (1 << (bits - (1 if sx else 0))):
            return v
        if sx:
            return Scalar.of64(sext(v.r64, bits, 64))
        return Scalar.of64(Range.make(64, v.r64.value & ((1 << bits) - 1), v.r64.mask & ((1 << bits) - 1), 0,
                                      (1 << bits) - 1, 0, (1 << bits) - 1) or Range.unknown(64))

    def _store(self, st: State, pc: int, r: int, ptr: Reg, off: int, size: int, val: Reg) -> None:
        kind = ptr.kind
        self._value_access(pc, kind)
        if kind in (SCALAR, MAP_PTR, FUNC) or ptr.nullable:
            raise _Refuse(pc, f"R{r} invalid mem access '{ptr.type_name()}'")
        self._align(pc, ptr, off, size)
        if kind == CTX:
            raise _Refuse(pc, f"invalid bpf_context access off={ptr.off + off} size={size}")
        if kind == STACK:
            o = self._stack_off(pc, r, ptr, off, size, "write to")
            self._stack_write(st, pc, ptr, o, size, val)
            return
        if kind == MAP_VALUE:
            m = ptr.map
            assert m is not None
            if m.rdonly:
                raise _Refuse(pc, f"write into map forbidden, value_size={m.value_size} off={ptr.off + off} "
                                  f"size={size}")
            self._bounds(pc, r, ptr, off, size, m.value_size, "map value")
            return
        if kind == MAP_KEY:
            raise _Refuse(pc, f"R{r} cannot write into map_key")
        if kind == MEM:
            self._bounds(pc, r, ptr, off, size, ptr.size, "memory")
            return
        if kind == BTF_ID:
            raise _Refuse(pc, "only read is supported")
        raise _Refuse(pc, f"R{r} cannot write into {ptr.type_name()}")

    def _stack_write(self, st: State, pc: int, ptr: Reg, o: int, size: int, val: Reg) -> None:
        """A store to the stack: slot-aligned scalars and 8-byte pointers are spilled (their
        state kept, Linux's save_register_state), anything else leaves data bytes."""
        frame = self._frame_of(st, ptr)
        slot, start = (-o - 1) // 8, o % 8
        if val.kind != SCALAR and size != 8:
            raise _Refuse(pc, "invalid size of register spill")
        old = frame.stack.get(slot, _FRESH)
        if start == 0 and (val.kind != SCALAR or not (val.var.is_const and val.var.value == 0) or size == 8):
            rest = _byte_states(old)
            frame.stack[slot] = Spill(val, size, rest[size:] if size < 8 else "")
            return
        states = _byte_states(old)
        b = ZEROB if val.var.is_const and (val.var.value & ((1 << (8 * size)) - 1)) == 0 else MISC
        frame.stack[slot] = states[:start] + b * size + states[start + size :]

    def _atomic(self, st: State, pc: int, insn: Insn, ptr: Reg, val: Reg, size: int) -> None:
        imm = insn.imm
        if val.kind != SCALAR:
            raise _Refuse(pc, f"R{insn.src} leaks addr into mem")
        if ptr.kind == CTX:
            raise _Refuse(pc, f"BPF_ATOMIC stores into R{insn.dst} ctx is not allowed")
        if ptr.kind == STACK:
            o = self._stack_off(pc, insn.dst, ptr, insn.off, size, "read from")
            self._stack_read(st, pc, insn.dst, ptr, o, size, False)
            self._stack_write(st, pc, ptr, o, size, UNKNOWN if size == 8 else _scalar(Scalar.unknown()))
        else:
            self._load(st, pc, insn.dst, ptr, insn.off, size, False)
            self._store(st, pc, insn.dst, ptr, insn.off, size, val)
        f = st.cur
        if imm == isa.CMPXCHG:
            self._read(st, pc, 0)
            f.regs[0] = self._sized_unknown(size)
        elif imm & isa.FETCH:
            f.regs[insn.src] = self._sized_unknown(size)

    # -- branches ---------------------------------------------------------------------------------------
    def _cond(self, st: State, pc: int, insn: Insn, parent: Checkpoint | None, pending: list) -> int | None:
        op, dst, src, off, imm = insn
        is64 = (op & 7) == isa.JMP
        code = op & 0xF0
        a = self._read(st, pc, dst)
        b = self._read(st, pc, src) if op & isa.X else _scalar(Scalar.const(imm if is64 else imm & isa.MASK32))
        target = pc + 1 + off
        taken = self._decide(code, a, b, is64)
        if taken is not None:
            return target if taken else pc + 1
        other = st.copy()
        self._refine(other, code, dst, src if op & isa.X else -1, a, b, is64, True)
        self._refine(st, code, dst, src if op & isa.X else -1, a, b, is64, False)
        self._push(pending, other, target, parent, pc)
        return pc + 1

    @staticmethod
    def _decide(code: int, a: Reg, b: Reg, is64: bool) -> bool | None:
        """The branch's outcome if the state decides it, else None."""
        if a.kind != SCALAR or b.kind != SCALAR:
            # a pointer that cannot be null is never equal to 0
            ptr, other = (a, b) if a.kind != SCALAR else (b, a)
            if other.kind == SCALAR and other.var.is_const and other.var.value == 0 and not ptr.nullable \
                    and ptr.kind != SCALAR and code in (isa.JEQ, isa.JNE) \
                    and (ptr.kind != BTF_ID or (ptr.btf is not None and ptr.btf.trusted)):
                return code == isa.JNE
            return None
        ra, rb = (a.var.r64, b.var.r64) if is64 else (a.var.r32, b.var.r32)
        if ra.is_const and rb.is_const:
            return alu.cond(code, ra.value, rb.value, ra.bits)
        if code == isa.JEQ or code == isa.JNE:
            disjoint = ra.umax < rb.umin or rb.umax < ra.umin or ra.smax < rb.smin or rb.smax < ra.smin or \
                ((ra.value ^ rb.value) & ~(ra.mask | rb.mask))
            if disjoint:
                return code == isa.JNE
            return None
        if code == isa.JGT:
            return True if ra.umin > rb.umax else False if ra.umax <= rb.umin else None
        if code == isa.JGE:
            return True if ra.umin >= rb.umax else False if ra.umax < rb.umin else None
        if code == isa.JLT:
            return True if ra.umax < rb.umin else False if ra.umin >= rb.umax else None
        if code == isa.JLE:
            return True if ra.umax <= rb.umin else False if ra.umin > rb.umax else None
        if code == isa.JSGT:
            return True if ra.smin > rb.smax else False if ra.smax <= rb.smin else None
        if code == isa.JSGE:
            return True if ra.smin >= rb.smax else False if ra.smax < rb.smin else None
        if code == isa.JSLT:
            return True if ra.smax < rb.smin else False if ra.smin >= rb.smax else None
        if code == isa.JSLE:
            return True if ra.smax <= rb.smin else False if ra.smin > rb.smax else None
        if code == isa.JSET:
            if rb.is_const:
                if ra.value & rb.value:
                    return True
                if not ((ra.value | ra.mask) & rb.value):
                    return False
            return None
        return None

    def _refine(self, st: State, code: int, dst: int, src: int, a: Reg, b: Reg, is64: bool, taken: bool) -> None:
        f = st.cur
        # null checks: "if rX == 0" on a possibly-null pointer
        for ptr, other, r in ((a, b, dst), (b, a, src)):
            if r < 0 or ptr.kind == SCALAR or not ptr.nullable or code not in (isa.JEQ, isa.JNE) or not is64:
                continue
            if other.kind == SCALAR and other.var.is_const and other.var.value == 0:
                is_null = (code == isa.JEQ) == taken
                self._mark_null(st, ptr.id, is_null)
                return
        if a.kind != SCALAR or b.kind != SCALAR:
            return
        # the comparison as "a OP b" holds on this edge
        neg = {isa.JEQ: isa.JNE, isa.JNE: isa.JEQ, isa.JGT: isa.JLE, isa.JLE: isa.JGT, isa.JGE: isa.JLT,
               isa.JLT: isa.JGE, isa.JSGT: isa.JSLE, isa.JSLE: isa.JSGT, isa.JSGE: isa.JSLT, isa.JSLT: isa.JSGE}
        c = code if taken else neg.get(code, -1)
        if code == isa.JSET:
            if not taken and b.var.is_const:
                na = self._clear_bits(a.var, b.var.value if is64 else b.var.value & isa.MASK32, is64)
                if na is not None:
                    self._set(st, dst, a, na)
            return
        na, nb = self._narrow(c, a.var, b.var, is64)
        if na is not None and dst >= 0:
            self._set(st, dst, a, na)
        if nb is not None and src >= 0:
            self._set(st, src, b, nb)
        del f

    @staticmethod
    def _set(st: State, r: int, old: Reg, new: Scalar) -> None:
        st.cur.regs[r] = Reg(SCALAR, new, id=old.id)
        if not old.id:
            return
        # registers and spills that are copies of the same scalar learn it too (Linux's
        # sync_linked_regs over scalar ids)
        for frame in st.frames:
            for i, x in enumerate(frame.regs):
                if x.kind == SCALAR and x.id == old.id:
                    frame.regs[i] = Reg(SCALAR, new, id=old.id)
            for k, cell in frame.stack.items():
                if isinstance(cell, Spill) and cell.reg.kind == SCALAR and cell.reg.id == old.id and cell.size == 8:
                    frame.stack[k] = Spill(Reg(SCALAR, new, id=old.id), cell.size, cell.rest)

    def _linked(self, r: Reg) -> Reg:
        """Linux's assign_scalar_id_before_mov: an unknown scalar gets an id when copied, so
        the copies learn each other's bounds."""
        if r.kind != SCALAR or r.id or r.var.is_const:
            return r
        return Reg(SCALAR, r.var, id=self._new_id())

    @staticmethod
    def _clear_bits(v: Scalar, bits: int, is64: bool) -> Scalar | None:
        r = v.r64 if is64 else v.r32
        full = (1 << r.bits) - 1
        nr = Range.make(r.bits, r.value & ~bits, r.mask & ~bits & full, r.umin, r.umax, r.smin, r.smax)
        if nr is None:
            return None
        return Scalar.of64(nr) if is64 else sync(v.r64, nr)

    @staticmethod
    def _narrow(c: int, a: Scalar, b: Scalar, is64: bool) -> tuple[Scalar | None, Scalar | None]:
        ra, rb = (a.r64, b.r64) if is64 else (a.r32, b.r32)
        bits = ra.bits
        full = (1 << bits) - 1
        lo_s, hi_s = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        au, av, asn, asx = ra.umin, ra.umax, ra.smin, ra.smax
        bu, bv, bsn, bsx = rb.umin, rb.umax, rb.smin, rb.smax
        av_t, am, bv_t, bm = ra.value, ra.mask, rb.value, rb.mask
        if c == isa.JEQ:
            au = bu = max(au, bu)
            av = bv = min(av, bv)
            asn = bsn = max(asn, bsn)
            asx = bsx = min(asx, bsx)
            mask = am & bm
            val = (av_t | bv_t) & ~mask
            av_t, am, bv_t, bm = val, mask, val, mask
        elif c == isa.JNE:
            if rb.is_const:
                if au == rb.value:
                    au += 1
                if av == rb.value:
                    av -= 1
                if asn == alu.signed(rb.value, bits):
                    asn += 1
                if asx == alu.signed(rb.value, bits):
                    asx -= 1
            if ra.is_const:
                if bu == ra.value:
                    bu += 1
                if bv == ra.value:
                    bv -= 1
        elif c == isa.JGT:
            au, bv = max(au, bu + 1), min(bv, av - 1)
        elif c == isa.JGE:
            au, bv = max(au, bu), min(bv, av)
        elif c == isa.JLT:
            av, bu = min(av, bv - 1), max(bu, au + 1)
        elif c == isa.JLE:
            av, bu = min(av, bv), max(bu, au)
        elif c == isa.JSGT:
            asn, bsx = max(asn, bsn + 1), min(bsx, asx - 1)
        elif c == isa.JSGE:
            asn, bsx = max(asn, bsn), min(bsx, asx)
        elif c == isa.JSLT:
            asx, bsn = min(asx, bsx - 1), max(bsn, asn + 1)
        elif c == isa.JSLE:
            asx, bsn = min(asx, bsx), max(bsn, asn)
        else:
            return None, None
        na = Range.make(bits, av_t, am, max(au, 0), min(av, full), max(asn, lo_s), min(asx, hi_s))
        nb = Range.make(bits, bv_t, bm, max(bu, 0), min(bv, full), max(bsn, lo_s), min(bsx, hi_s))

        def back(old: Scalar, r: Range | None) -> Scalar | None:
            if r is None:
                return None
            return Scalar.of64(r) if is64 else sync(old.r64, r)

        return back(a, na), back(b, nb)

    def _mark_null(self, st: State, pid: int, is_null: bool) -> None:
        for frame in st.frames:
            for i, r in enumerate(frame.regs):
                if r.kind not in (NOT_INIT, SCALAR) and r.nullable and r.id == pid:
                    frame.regs[i] = self._resolved(r, is_null)
            for k, cell in frame.stack.items():
                if isinstance(cell, Spill) and cell.reg.kind not in (NOT_INIT, SCALAR) and cell.reg.nullable \
                        and cell.reg.id == pid:
                    frame.stack[k] = Spill(self._resolved(cell.reg, is_null), cell.size, cell.rest)
        if is_null:
            ref = next((r.ref for f in st.frames for r in f.regs if r.ref and r.id == pid), 0)
            for rid in [rid for rid in st.refs if rid == pid or rid == ref]:
                del st.refs[rid]

    @staticmethod
    def _resolved(r: Reg, is_null: bool) -> Reg:
        if is_null:
            return _scalar(_ZERO)
        return Reg(r.kind, r.var, r.off, False, 0, r.map, r.size, r.frame, r.ref, r.btf)

    # -- calls -------------------------------------------------------------------------------------------
    def _call_local(self, st: State, pc: int, target: int, callback: int, args: Sequence[Reg] | None = None) -> int:
        if len(st.frames) >= isa.MAX_CALL_FRAMES:
            raise _Refuse(pc, f"the call stack of {len(st.frames) + 1} frames is too deep !")
        caller = st.cur
        regs = [UNINIT] * 11
        for i in range(1, 6):
            regs[i] = args[i - 1] if args is not None else caller.regs[i]
        regs[10] = Reg(STACK, frame=len(st.frames))
        st.frames.append(Frame(regs, {}, pc, callback))
        return target

    def _exit(self, st: State, pc: int) -> int | None:
        f = st.cur
        r0 = f.regs[0]
        if r0.kind == NOT_INIT and (len(st.frames) == 1 or f.callback):  # a subprogram's is the caller's worry
            raise _Refuse(pc, "R0 !read_ok")
        if len(st.frames) == 1:
            if self.tracing is not None:  # fentry/fexit programs return 0 (check_return_code)
                self._retval_in(pc, r0, 0, 0, "At program exit")
            if st.refs:
                rid, at = next(iter(st.refs.items()))
                raise _Refuse(pc, f"Unreleased reference id={rid} alloc_insn={at}")
            return None
        if f.callback:
            if r0.kind != SCALAR or r0.var.r64.umin > 1 or r0.var.r64.umax > 1 or r0.var.r64.smin < 0:
                raise _Refuse(pc, f"At callback return the register R0 has {r0.show()} should have been in [0, 1]")
            r0 = UNKNOWN
        st.frames.pop()
        caller = st.cur
        caller.regs[0] = r0
        for i in range(1, 6):
            caller.regs[i] = UNINIT
        if f.callback:  # the callback may have changed what the caller's stack holds
            for frame in st.frames:
                for k, cell in list(frame.stack.items()):
                    if isinstance(cell, Spill) and cell.reg.kind == SCALAR:
                        frame.stack[k] = _byte_states(cell)
        return f.callsite + 1

    @staticmethod
    def _retval_in(pc: int, r0: Reg, lo: int, hi: int, where: str) -> None:
        """R0 must be a number in [lo, hi] (Linux's retval_range_within, verbose_invalid_scalar)."""
        if r0.kind != SCALAR:
            raise _Refuse(pc, f"{where} the register R0 is not a known value ({r0.type_name()})")
        r = r0.var.r64
        if lo <= r.smin and r.smax <= hi:
            return
        text = (f" smin={r.smin}" if r.smin > -(1 << 63) else "") + \
            (f" smax={r.smax}" if r.smax < (1 << 63) - 1 else "")
        raise _Refuse(pc, f"{where} the register R0 has{text or ' unknown scalar value'} "
                          f"should have been in [{lo}, {hi}]")

    def _call_helper(self, st: State, pc: int, hid: int) -> int | None:
        proto = hp.PROTOS.get(hid)
        if proto is None or hid not in self.helpers:
            if helper_name(hid) is None:
                raise _Refuse(pc, f"invalid func {describe_helper(hid)}")
            raise _Refuse(pc, f"program of this type cannot use helper {describe_helper(hid)} "
                              f"(not implemented by kprobesim)")
        if (self.tracing is not None and hid in _NOT_FOR_TRACING) or (self.tracing is None and hid in
                                                                        hp.TRAMPOLINE_ONLY):
            raise _Refuse(pc, f"program of this type cannot use helper {describe_helper(hid)}")
        if proto.gpl_only and not self.gpl:
            raise _Refuse(pc, "cannot call GPL-restricted function from non-GPL compatible program")
        f = st.cur
        args = [self._read(st, pc, i + 1) for i in range(len(proto.args))]
        the_map: MapInfo | None = None
        callback: Reg | None = None
        mem_size = 0
        for i, kind in enumerate(proto.args):
            r = i + 1
            reg = args[i]
            if kind == hp.ANYTHING:
                continue
            if kind == hp.MAP_PTR:
                if reg.kind != MAP_PTR:
                    raise _Refuse(pc, f"R{r} type={reg.type_name()} expected=map_ptr")
                the_map = reg.map
                assert the_map is not None
                allowed = hp.MAP_TYPES.get(hid, hp.KEYED)
                if the_map.map_type not in allowed or (hid not in hp.MAP_TYPES and the_map.map_type in hp.SPECIAL_MAPS):
                    raise _Refuse(pc, f"cannot pass map_type {the_map.map_type} into func {describe_helper(hid)}")
                continue
            if kind in (hp.MAP_KEY, hp.MAP_VALUE, hp.MAP_VALUE_OUT):
                assert the_map is not None
                size = the_map.key_size if kind == hp.MAP_KEY else the_map.value_size
                self._mem_arg(st, pc, r, reg, size, write=kind == hp.MAP_VALUE_OUT)
                continue
            if kind in (hp.MEM, hp.MEM_OR_NULL, hp.UNINIT_MEM, hp.UNINIT_MEM_OR_NULL):
                size_reg = args[i + 1]
                zero_ok = proto.args[i + 1] == hp.SIZE_OR_ZERO
                size = self._size_arg(pc, r + 1, size_reg, zero_ok)
                if kind.endswith("_or_null") and reg.kind == SCALAR and reg.var.is_const and reg.var.value == 0:
                    continue
                if size == 0 and reg.kind == SCALAR and reg.var.is_const and reg.var.value == 0:
                    continue
                self._mem_arg(st, pc, r, reg, size, write=kind.startswith("uninit"), umax_size=True)
                continue
            if kind in (hp.SIZE, hp.SIZE_OR_ZERO):
                continue  # checked with its memory argument
            if kind == hp.ALLOC_SIZE:
                if reg.kind != SCALAR or not reg.var.is_const:
                    raise _Refuse(pc, f"R{r} is not a known constant'")
                mem_size = reg.var.value
                continue
            if kind == hp.CTX:
                if reg.kind != CTX or reg.off or not reg.var.is_const or reg.var.value:
                    raise _Refuse(pc, f"R{r} type={reg.type_name()} expected=ctx")
                continue
            if kind == hp.FUNC:
                if reg.kind != FUNC:
                    raise _Refuse(pc, f"R{r} type={reg.type_name()} expected=func")
                callback = reg
                continue
            if kind == hp.STACK_OR_NULL:
                if reg.kind == SCALAR and reg.var.is_const and reg.var.value == 0:
                    continue
                if reg.kind not in (STACK,):
                    raise _Refuse(pc, f"R{r} type={reg.type_name()} expected=fp")
                continue
            if kind == hp.LONG_OUT:  # 8 aligned bytes the helper writes
                self._mem_arg(st, pc, r, reg, 8, write=True)
                if reg.kind == STACK or self.strict_alignment:
                    self._align(pc, reg, 0, 8)
                continue
            if kind == hp.CONST_STR:
                if reg.kind != MAP_VALUE or reg.map is None or not reg.map.rdonly:
                    raise _Refuse(pc, f"R{r} does not point to a readonly map'")
                continue
            if kind == hp.RINGBUF_MEM:
                if reg.kind != MEM or not reg.ref or reg.nullable or reg.off or not reg.var.is_const or reg.var.value:
                    raise _Refuse(pc, f"R{r} type={reg.type_name()} expected=ringbuf_mem")
                if reg.ref not in st.refs:
                    raise _Refuse(pc, f"R{r} must be referenced")
                self._release(st, reg.ref)
                continue
        # the call clobbers r1-r5
        ret = proto.ret
        cb_args = None
        if callback is not None:
            cb_args = self._callback_args(hid, args, the_map)
        for i in range(1, 6):
            f.regs[i] = UNINIT
        if ret == hp.INTEGER:
            f.regs[0] = UNKNOWN
        elif ret == hp.VOID:
            f.regs[0] = UNINIT
        elif ret == hp.MAP_VALUE_OR_NULL:
            assert the_map is not None
            f.regs[0] = Reg(MAP_VALUE, _ZERO, 0, True, self._new_id(), the_map)
        elif ret == hp.RINGBUF_MEM_OR_NULL:
            rid = self._new_id()
            st.refs[rid] = pc
            f.regs[0] = Reg(MEM, _ZERO, 0, True, rid, None, mem_size, 0, rid)
        elif ret == hp.BTF_ID:
            task = task_struct(self.kernel_btf)
            if task is None:
                raise _Refuse(pc, f"{describe_helper(hid)}: the kernel has no BTF describing its task struct")
            f.regs[0] = Reg(BTF_ID, btf=task)
        if callback is not None and cb_args is not None:
            # walk the callback once, as if called here; its exit returns after this call
            return self._call_local(st, pc, callback.off, hid, cb_args)
        return pc + 1

    def _callback_args(self, hid: int, args: list[Reg], the_map: MapInfo | None) -> list[Reg]:
        if hid == 181:  # bpf_loop(nr, cb, ctx, flags): cb(u64 index, void *ctx)
            return [_scalar(Scalar.bounded(0, (1 << 23) - 1)), args[2], UNINIT, UNINIT, UNINIT]
        assert the_map is not None  # for_each_map_elem: cb(map, key, value, ctx)
        return [Reg(MAP_PTR, map=the_map), Reg(MAP_KEY, map=the_map), Reg(MAP_VALUE, map=the_map), args[2], UNINIT]

    def _release(self, st: State, rid: int) -> None:
        del st.refs[rid]
        for frame in st.frames:
            for i, r in enumerate(frame.regs):
                if r.ref == rid:
                    frame.regs[i] = UNINIT
            for k, cell in list(frame.stack.items()):
                if isinstance(cell, Spill) and cell.reg.ref == rid:
                    frame.stack[k] = MISC * 8

    def _size_arg(self, pc: int, r: int, reg: Reg, zero_ok: bool) -> int:
        if reg.kind != SCALAR:
            raise _Refuse(pc, f"R{r} type={reg.type_name()} expected=scalar")
        v = reg.var.r64
        if v.smin < 0:
            raise _Refuse(pc, f"R{r} min value is negative, either use unsigned or 'var &= const'")
        if v.umin == 0 and not zero_ok:
            raise _Refuse(pc, f"R{r} invalid zero-sized read: u64=[{v.umin},{v.umax}]")
        if v.umax >= MAX_VAR_SIZE:
            raise _Refuse(pc, f"R{r} unbounded memory access, use 'var &= const' or 'if (var < const)'")
        return v.umax

    def _mem_arg(self, st: State, pc: int, r: int, reg: Reg, size: int, write: bool, umax_size: bool = False) -> None:
        """``size`` bytes at ``reg`` a helper reads (must be initialised) or writes."""
        kind = reg.kind
        if reg.nullable or kind in (NOT_INIT, SCALAR, MAP_PTR, FUNC):
            raise _Refuse(pc, f"R{r} type={reg.type_name()} expected=fp, pkt, pkt_meta, map_key, map_value, mem, "
                              f"ringbuf_mem, buf, trusted_ptr_")
        if size == 0:
            return
        if kind == STACK:
            if not reg.var.is_const:
                raise _Refuse(pc, f"R{r} variable offset stack access prohibited for !root")
            o = reg.off + alu.signed(reg.var.value, 64)
            if o < -isa.STACK_SIZE or o + size > 0:
                raise _Refuse(pc, f"invalid indirect access to stack R{r} off={o} size={size}")
            frame = self._frame_of(st, reg)
            for byte in range(o, o + size):
                slot, idx = (-byte - 1) // 8, byte % 8
                cell = frame.stack.get(slot, _FRESH)
                if not write and not self.allow_uninit_stack and _byte_states(cell)[idx] == INVALID:
                    raise _Refuse(pc, f"invalid indirect read from stack R{r} off {o}+{byte - o} size {size}")
                # Linux 6.12 treats every helper access to the stack as one that may write
                # (ACCESS_HELPER clobbers): the bytes become data, and a spill there is scrubbed
                if isinstance(cell, Spill):
                    states = "".join(INVALID if b == INVALID else MISC for b in _byte_states(cell))
                else:
                    states = cell
                frame.stack[slot] = states[:idx] + MISC + states[idx + 1 :]
            return
        if kind == CTX:
            raise _Refuse(pc, f"R{r} type=ctx expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf")
        if kind == MAP_VALUE:
            assert reg.map is not None
            if write and reg.map.rdonly:
                raise _Refuse(pc, f"write into map forbidden, value_size={reg.map.value_size} off={reg.off} "
                                  f"size={size}")
            self._bounds(pc, r, reg, 0, size, reg.map.value_size, "map value")
            return
        if kind == MAP_KEY:
            assert reg.map is not None
            if write:
                raise _Refuse(pc, f"R{r} cannot write into map_key")
            self._bounds(pc, r, reg, 0, size, reg.map.key_size, "map key")
            return
        if kind == MEM:
            self._bounds(pc, r, reg, 0, size, reg.size, "memory")
            return
        # BTF_ID: trusted kernel memory


def verify_program(insns: Sequence[Insn], maps: Sequence[MapInfo], ctx_size: int, license: str,
                   helpers: frozenset[int] | set[int], log: bool = False,
                   insn_limit: int = COMPLEXITY_LIMIT_INSNS, strict_alignment: bool = True,
                   tracing: TracingCtx | None = None, kernel_btf: Btf | None = None) -> Result:
    """Verify ``insns`` (already checked by :func:`.verifier.verify`); raises VerifierError.
    ``strict_alignment``: the target arch lacks efficient unaligned access (all but x86_64).
    ``tracing``: an fentry/fexit program's context (else ``ctx_size`` bytes of pt_regs);
    ``kernel_btf``: the kernel's types, for BTF-typed pointers. ``Result.probe_mem``: the loads
    through BTF-typed pointers (Linux's BPF_PROBE_MEM); ``Result.in_bounds``: the loads and
    stores that always access a map value within its bounds (so an engine may skip their checks)."""
    v = Verifier(insns, maps, ctx_size, license in GPL_COMPATIBLE, helpers, log, insn_limit, strict_alignment,
                 tracing, kernel_btf)
    try:
        res = v.run()
        res.probe_mem = frozenset(v.probe_pcs)
        res.in_bounds = frozenset(pc for pc, only in v.value_pcs.items() if only)
        return res
    except VerifierError as e:
        e.log = v.result.log  # type: ignore[attr-defined]  # what was walked before the refusal
        raise


LogSink = Callable[[str], None]
