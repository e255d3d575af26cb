"""fentry/fexit programs: the context Linux's BPF trampoline gives them, from the target
function's BTF prototype, and the rules for reading kernel objects through BTF-typed pointers.

A trampoline program's context is an array of u64: ``ctx[i]`` is the i-th argument as the
caller passed it in its register (an ``int`` keeps whatever the upper bits of the register
hold, as Linux's trampoline stores the whole register); an fexit program also gets the return
value in ``ctx[nargs]``. ``BPF_PROG(name, args...)`` from ``bpf_tracing.h`` reads exactly that.

The verifier (:mod:`.absint`) checks each context read as Linux's ``btf_ctx_access`` does
(``kernel/bpf/btf.c``) and each read through a ``PTR_TO_BTF_ID`` as ``btf_struct_walk`` does:
integers, enums and pointers to non-structs read as numbers, pointers to structs (and unions)
give a typed pointer whose fields the program may read directly (the loads become Linux's
``BPF_PROBE_MEM``: a fault reads 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from .btf import (
    BTF_KIND_ARRAY,
    BTF_KIND_ENUM,
    BTF_KIND_ENUM64,
    BTF_KIND_FUNC,
    BTF_KIND_FUNC_PROTO,
    BTF_KIND_INT,
    BTF_KIND_PTR,
    BTF_KIND_STRUCT,
    BTF_KIND_UNION,
    KIND_NAMES,
    Btf,
    BtfError,
)

#: Linux's MAX_BPF_FUNC_ARGS: a trampoline program's context has at most 12 u64 slots
MAX_BPF_FUNC_ARGS = 12
KINDS = ("fentry", "fexit")
_STRUCTS = (BTF_KIND_STRUCT, BTF_KIND_UNION)


class TracingError(ValueError):
    """A function a trampoline program cannot attach to (the message says why)."""


def kind_str(btf: Btf, type_id: int) -> str:
    """Linux's ``btf_type_str``: the kind's name (``UNKNOWN`` for void)."""
    kind = btf.type(type_id).kind
    return "UNKNOWN" if kind == 0 else KIND_NAMES.get(kind, str(kind))


@dataclass(frozen=True)
class BtfRef:
    """A ``PTR_TO_BTF_ID``'s type: a struct or union of the kernel's BTF."""

    type_id: int
    name: str
    trusted: bool = False  # Linux's PTR_TRUSTED (never NULL): bpf_get_current_task_btf()


@dataclass(frozen=True)
class TracingCtx:
    """The context of an fentry/fexit program attached to ``func`` (its BTF prototype)."""

    func: str
    kind: str  # fentry / fexit
    btf: Btf
    params: tuple[int, ...]  # the arguments' type ids
    ret: int  # the return type id (0: void)

    @property
    def nargs(self) -> int:
        return len(self.params)

    @property
    def slots(self) -> int:
        """u64 slots of the context: the arguments, and the return value for fexit."""
        return self.nargs + (self.kind == "fexit")

    def access(self, off: int, size: int) -> BtfRef | int | str:
        """What a read of ``size`` bytes at ``off`` gives (Linux's ``btf_ctx_access``): a
        :class:`BtfRef`, the number of bytes of a scalar, or the refusal's message."""
        btf = self.btf
        if off % 8:
            return f"func '{self.func}' offset {off} is not multiple of 8"
        arg = off // 8
        if arg > self.nargs or (arg == self.nargs and self.kind != "fexit"):
            return f"func '{self.func}' doesn't have {arg + 1}-th argument"
        tid = btf.resolve(self.params[arg] if arg < self.nargs else self.ret)
        t = btf.type(tid)
        if t.kind in (BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64, *_STRUCTS):
            return size
        if t.kind != BTF_KIND_PTR:
            return (f"func '{self.func}' arg{arg} '{t.name}' has type {kind_str(btf, tid)}. "
                    f"Only pointer access is allowed")
        if size != 8:
            return f"func '{self.func}' size {size} must be 8"
        target = btf.resolve(t.type_id)
        if btf.type(target).kind not in _STRUCTS:
            return size  # void *, char *, pointers to pointers: numbers
        return BtfRef(target, btf.type(target).name)


def func_model(btf: Btf | None, func: str, kind: str, arg_regs: int) -> TracingCtx:
    """The context of a ``kind`` (fentry/fexit) program on ``func``, or :class:`TracingError`
    naming what stands in the way (libbpf's and Linux's ``btf_distill_func_proto`` messages,
    and what kprobesim's trampoline does not do: arguments on the stack, structs by value)."""
    if btf is None:
        raise TracingError(f"{kind}/{func}: the kernel has no BTF: a trampoline program needs the function's "
                           f"prototype")
    fid = btf.find(func, BTF_KIND_FUNC)
    if fid is None:
        raise TracingError(f"failed to find kernel BTF type ID of '{func}': -3")
    proto = btf.type(btf.type(fid).type_id)
    if proto.kind != BTF_KIND_FUNC_PROTO:
        raise TracingError(f"{func}: its BTF FUNC has no prototype")
    params = tuple(p.type_id for p in proto.params)
    if len(params) > MAX_BPF_FUNC_ARGS:
        raise TracingError(f"The function {func} has {len(params)} arguments. Too many.")
    try:
        ret = btf.resolved(proto.type_id)
        if proto.type_id and (ret.kind in _STRUCTS or ret.kind not in (BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_ENUM,
                                                                       BTF_KIND_ENUM64)):
            raise TracingError(f"The function {func} return type {kind_str(btf, ret.id)} is unsupported.")
        for i, tid in enumerate(params):
            if i == len(params) - 1 and tid == 0:
                raise TracingError(f"The function {func} with variable args is unsupported.")
            t = btf.resolved(tid)
            if t.kind in _STRUCTS:
                raise TracingError(f"{func}: arg{i} is a struct passed by value, which kprobesim's trampoline does "
                                   f"not lay out")
            if t.kind not in (BTF_KIND_INT, BTF_KIND_PTR, BTF_KIND_ENUM, BTF_KIND_ENUM64) or tid == 0:
                raise TracingError(f"The function {func} arg{i} type {kind_str(btf, t.id)} is unsupported.")
    except BtfError as e:
        raise TracingError(f"{func}: bad BTF: {e}") from None
    if len(params) > arg_regs:
        raise TracingError(f"{func}: {len(params)} arguments, but only {arg_regs} come in registers on this arch "
                           f"(kprobesim's trampoline does not read arguments from the stack)")
    return TracingCtx(func, kind, btf, params, proto.type_id)


def struct_access(btf: Btf, ref: BtfRef, off: int, size: int) -> BtfRef | int | str:
    """A read of ``size`` bytes at ``off`` in the struct ``ref`` (Linux's ``btf_struct_walk``):
    a :class:`BtfRef` for a pointer to a struct, the size of a scalar, or the refusal."""
    tid = ref.type_id
    for _ in range(64):
        t = btf.resolved(tid)
        tname = t.name
        if t.kind not in _STRUCTS:
            return f"Type '{tname}' is not a struct"
        if off + size > t.size:
            flex = _flexible_tail(btf, t, off)
            if flex is None:
                return f"access beyond struct {tname} at off {off} size {size}"
            if isinstance(flex, int):
                return size
            tid, off = flex
            continue
        nested = None
        for m in t.members:
            moff = m.bit_offset // 8
            if off + size <= moff:
                break
            if m.bitfield_size:
                end = (m.bit_offset + m.bitfield_size + 7) // 8
                if off <= moff and end <= off + size:
                    return size
                continue
            if off < moff:
                break
            mid = btf.resolve(m.type_id)
            mt = btf.type(mid)
            msize = btf.size_of(mid)
            true_end = moff + msize
            if off >= true_end:
                continue
            if mt.kind == BTF_KIND_ARRAY:
                elem, count = mid, 1
                while btf.type(elem).kind == BTF_KIND_ARRAY:
                    count *= btf.type(elem).nelems
                    elem = btf.resolve(btf.type(elem).elem_type)
                if moff == true_end:
                    continue
                esize = msize // count
                moff += (off - moff) // esize * esize
                mid, mt, msize = elem, btf.type(elem), esize
            if mt.kind in _STRUCTS:
                nested = (mid, 0 if off == moff else off - moff)
                break
            if mt.kind == BTF_KIND_PTR:
                if msize != size or off != moff:
                    return (f"cannot access ptr member {m.name} with moff {moff} in struct {tname} with off {off} "
                            f"size {size}")
                target = btf.resolve(mt.type_id)
                if btf.type(target).kind in _STRUCTS:
                    return BtfRef(target, btf.type(target).name)
                return size
            if off + size > true_end:
                return (f"access beyond the end of member {m.name} (mend:{true_end}) in struct {tname} with off {off} "
                        f"size {size}")
            return size
        if nested is None:
            return f"struct {tname} doesn't have field at offset {off}"
        tid, off = nested
    return f"struct {ref.name}: nesting too deep"


def _flexible_tail(btf: Btf, t, off: int) -> tuple[int, int] | int | None:
    """An access past a struct's end that its last member, a flexible array, covers: the
    element struct and offset in it, or 0 for an integer element; None: beyond the struct."""
    if not t.members:
        return None
    last = t.members[-1]
    at = btf.resolved(last.type_id)
    if at.kind != BTF_KIND_ARRAY or at.nelems:
        return None
    moff = last.bit_offset // 8
    if off < moff:
        return None
    elem = btf.resolved(at.elem_type)
    if elem.kind == BTF_KIND_INT:
        return 0
    if elem.kind not in _STRUCTS or not elem.size:
        return None
    return elem.id, (off - moff) % elem.size


def task_struct(btf: Btf | None) -> BtfRef | None:
    """The kernel's task descriptor, what ``bpf_get_current_task_btf`` points to: Linux's
    ``struct task_struct``, or the bundled firmware's ``struct task``."""
    if btf is None:
        return None
    for name in ("task_struct", "task"):
        tid = btf.find(name, BTF_KIND_STRUCT)
        if tid is not None:
            return BtfRef(tid, name, trusted=True)
    return None
