"""Load an eBPF object into a machine: create its maps, verify its programs, attach them.

``load(machine, "prog.o")`` (also ``machine.load_bpf``) reads the ELF object, creates every map
(one per-CPU slot: the simulator has one CPU; ``.rodata/.data/.bss`` become one-element array
maps whose value the programs address directly), resolves the ``lddw`` placeholders, verifies
and translates each program once, and attaches it by its section:

- ``kprobe/SYM`` or ``kprobe/SYM+OFF``: a kprobe pre-handler; the context is the trapped
  registers as Linux's ``struct pt_regs`` with IP = the probe address (read-only). Linux
  ignores a kprobe program's return value: only ``bpf_override_return`` changes the flow;
- ``kretprobe/SYM``: run in the kretprobe's return handler; the context is ``pt_regs`` at the
  return (``PT_REGS_RC`` is the return value, IP the return address);
- a bare ``kprobe``/``kretprobe`` section attaches to ``SYM`` when the program is named
  ``kprobe__SYM`` (bcc's convention); otherwise it is loaded and left unattached, as libbpf
  leaves it, until ``attach={"prog": "FUNC"}`` (``--attach prog=FUNC``) or
  :meth:`LoadedObject.attach` gives it a function (which also moves any kprobe program);
- ``fentry/FUNC`` and ``fexit/FUNC``: Linux's BPF trampoline programs, placed as a kprobe at
  the function's entry and a kretprobe (:mod:`.tracing`): the context is an array of u64, the
  arguments laid out from the function's BTF prototype (the return value after them for fexit,
  whose arguments are the ones saved at entry); struct pointers among them are BTF-typed and
  their fields read directly (``p->field``). The function is fixed at load, as libbpf's
  ``attach_btf_id`` is (``--attach PROG=FUNC`` before load, never moved later);
- programs of other types (``tracepoint``, ``raw_tp``, ``tp_btf``, ``perf_event``, ``fmod_ret``
  ...) are not loaded, one line each in ``LoadedObject.skipped``, as libbpf's ``autoload=false``;

Before load, libbpf's user-space steps (:mod:`.userspace`): CO-RE relocations against the
machine's BTF, ``globals`` (``--set``), ``map_sizes`` (``--map-size``), ``__kconfig`` and
``__ksym`` externs.

Every load error is one line: a bad object, a map that cannot be created, a verifier refusal
naming the instruction, an unsupported section (:class:`BpfError`), or an attach point that
cannot be probed (:class:`~kprobesim.errors.ProbeError`). Nothing stays attached after an error.

At run time a program's fault (memory violation, instruction budget, helper misuse) stops that
program only: it is counted in ``Program.errors`` and the first one is reported as a trace line
``bpf: <prog>: <error>``; the guest continues.

User programs: ``uprobe/PATH:SYMBOL[+OFF]`` or ``uprobe/PATH:OFFSET`` (libbpf's form; the bundled
firmware's user program is ``init``) runs as a uprobe's handler with the context of a kprobe
program; ``uretprobe/PATH:SYMBOL`` at the function's return. ``bpf_probe_read_user*`` read the
user task's memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kprobesim.errors import ProbeError, SimError

from . import absint, core, isa, tracing, userspace
from .elf import ObjectError, ObjectFile, ProgramSpec, load_object
from .errors import EbpfError, TailCall
from .helpers import HELPER_MEMORY_ARGS, OVERRIDE_RETURN, TAIL_CALL, Hit, Runtime
from .maps import BpfMap, MapError
from .maps_extra import ProgArrayMap
from .memory import Memory
from .output import Record, TraceOutput, format_maps
from .verifier import Program as Verified
from .vm import DEFAULT_BUDGET, VM, Engine

if TYPE_CHECKING:
    from kprobesim.machine import Machine
    from kprobesim.probes.kprobe import Instance, Kprobe, Kretprobe
    from kprobesim.probes.regs import Regs

#: Kretprobe instances per program. Linux's default, max(10, 2 * NR_CPUS), drops the returns of
#: deep recursion (the firmware's fib() with three tasks in it); 64 catches every one.
DEFAULT_MAXACTIVE = 64
#: The first program fd (later programs count up from it, in load order).
PROG_FD_BASE = 100
SUPPORTED = ("kprobe", "kretprobe", "uprobe", "uretprobe", *tracing.KINDS)
USER_KINDS = ("uprobe", "uretprobe")
#: why a section type is not loaded, when there is more to say than "not supported"
_WHY_NOT = {"fmod_ret": "fmod_ret programs replace a function's return value through Linux's trampoline, which "
                        "kprobesim does not model (Linux allows it only on error-injectable functions)"}


class BpfError(SimError):
    """An eBPF object that cannot be loaded: malformed, refused by the verifier, unsupported."""

    exit_status = 65


@dataclass(eq=False)
class Program:
    """One attached program and its counters."""

    name: str
    section: str
    kind: str  # kprobe / kretprobe
    target: str  # what it is attached to: SYM or SYM+OFF
    vm: VM
    addr: int = 0
    probe: Kprobe | Kretprobe | None = field(default=None, repr=False)
    runs: int = 0  # times the program ran
    errors: int = 0  # runs stopped by a fault
    insns: int = 0  # instructions executed by the runs that completed
    last_error: str | None = None
    fd: int = 0  # what user space puts in a prog array slot for it
    tracing: tracing.TracingCtx | None = None  # fentry/fexit: the function's context layout

    @property
    def hits(self) -> int:
        """Hits of its probe (kretprobe: returns handled)."""
        return self.probe.hits if self.probe is not None else 0

    @property
    def missed(self) -> int:
        return self.probe.missed if self.probe is not None else 0


class LoadedObject:
    """An eBPF object loaded into a machine: ``programs`` and ``maps`` by name."""

    def __init__(
        self, machine: Machine, obj: ObjectFile, maps: dict[str, BpfMap], runtime: Runtime, out: TraceOutput
    ) -> None:
        self.machine = machine
        self.path = obj.path
        self.object = obj
        self.btf = obj.btf
        self.maps = maps
        self.programs: dict[str, Program] = {}
        self.runtime = runtime
        self.output = out
        self.skipped: list[str] = []  # programs not loaded (libbpf's autoload=false), one line each
        self.maxactive = DEFAULT_MAXACTIVE
        self.lazy_ctx = True

    def attach(self, prog: str, target: str) -> Program:
        """Attach program ``prog`` (a kprobe or kretprobe) to ``target`` (``SYM``, ``SYM+OFF``),
        as ``bpf_program__attach_kprobe`` does at run time; a program attached before is moved."""
        p = self.programs.get(prog)
        if p is None:
            known = ", ".join(self.programs) or "none"
            raise BpfError(f"{self.path}: no loaded program {prog!r} (loaded: {known})")
        if p.tracing is not None and target != p.target:
            raise BpfError(f"{self.path}: program '{prog}' ({p.section}): an {p.kind} program is verified against "
                           f"its function's prototype at load; give it another one before load "
                           f"(--attach {prog}={target})")
        _check_target(self, p, target)
        if p.probe is not None:
            p.probe.unregister()
            p.probe = None
        p.target = target
        _attach(self, p, self.maxactive, self.lazy_ctx)
        return p

    @property
    def records(self) -> list[Record]:
        """Ring buffer and perf event records emitted so far, in order."""
        return self.output.records

    def format_maps(self, fmt: str = "text") -> str:
        """The maps as printed at exit (see :mod:`kprobesim.ebpf.output`)."""
        return format_maps(self.maps, self.machine, fmt)

    def stats(self) -> list[str]:
        """Hits and misses per program, in ``--stats``'s layout."""
        return [f"  {'bpf:' + p.name:<40} {p.hits:>15} {p.missed:>15}" for p in self.programs.values()]

    def unattached(self) -> list[str]:
        """One line per loaded program attached nowhere (a bare section given no ``--attach``)
        and not in a prog array slot (a tail call's target)."""
        slots = {id(t) for m in self.maps.values() if isinstance(m, ProgArrayMap) for _, t in m.slots.values()}
        return [f"{self.path}: program '{p.name}' ({p.section}): loaded, not attached (give it a function: "
                f"--attach {p.name}=FUNC)" for p in self.programs.values()
                if p.probe is None and id(p.vm) not in slots]

    def detach(self) -> None:
        """Unregister every probe the object placed (maps stay readable)."""
        for p in self.programs.values():
            if p.probe is not None:
                p.probe.unregister()
                p.probe = None

    def __repr__(self) -> str:
        return f"<LoadedObject {self.path} programs={list(self.programs)} maps={list(self.maps)}>"


def _target(spec: ProgramSpec) -> str:
    """Where a program attaches by itself: its section's target, or bcc's ``kprobe__SYM`` name;
    "" for a bare ``kprobe``/``kretprobe`` section (attached at run time, as libbpf leaves it)."""
    if spec.attach_point:
        return spec.attach_point
    for prefix in ("kprobe__", "kretprobe__"):
        if spec.name.startswith(prefix):
            return spec.name[len(prefix) :]
    return ""


def load(
    machine: Machine,
    path: str | Path,
    *,
    engine: Engine = "translate",
    fmt: str = "text",
    maxactive: int = DEFAULT_MAXACTIVE,
    budget: int = DEFAULT_BUDGET,
    lazy_ctx: bool = True,
    attach: Mapping[str, str] | None = None,
    globals: Mapping[str, str] | None = None,
    map_sizes: Mapping[str, int] | None = None,
    verify: bool = True,
) -> LoadedObject:
    """Load ``path`` into ``machine`` and attach its programs (see the module docstring).

    ``engine``: ``translate`` (default) or ``interp``; ``fmt``: trace lines as ``text`` or
    ``json``; ``maxactive``: kretprobe instances per program; ``budget``: instructions per run;
    ``lazy_ctx``: fill only the ``pt_regs`` fields a program can read (see :func:`ctx_reads`),
    False to build all of them on every hit. libbpf's user-space steps: ``attach`` maps program
    names to the function (``SYM[+OFF]``) each attaches to instead of its section's target;
    ``globals`` gives ``.rodata``/``.data``/``.bss`` variables values before load (text, parsed
    by their BTF type); ``map_sizes`` sets maps' ``max_entries``. ``verify``: run the verifier
    (:mod:`.absint`) on each program, as Linux does at load (False: the static checks only).
    """
    name = str(path)
    try:
        obj = load_object(path, machine.btf)
    except ObjectError as e:
        raise BpfError(str(e)) from None
    if not obj.programs:
        raise BpfError(f"{name}: no programs")
    attach = dict(attach or {})
    try:
        for var, text in (globals or {}).items():
            userspace.set_global(obj, var, text)
        for map_name, entries in (map_sizes or {}).items():
            userspace.resize_map(obj, map_name, entries)
        userspace.fill_kconfig(obj, machine)
        for prog_name in attach:
            if not any(p.name == prog_name for p in obj.programs):
                known = ", ".join(p.name for p in obj.programs)
                raise BpfError(f"--attach {prog_name}={attach[prog_name]}: {name} has no program {prog_name!r} "
                               f"(its programs: {known})")
    except userspace.UserspaceError as e:
        raise BpfError(f"{name}: {e}") from None
    try:
        created = obj.create_maps(1)
    except MapError as e:
        raise BpfError(f"{name}: {e}") from None
    memory = Memory()
    out = TraceOutput(machine, obj.btf, fmt)
    runtime = Runtime(machine, memory, created, out)
    loaded = LoadedObject(machine, obj, {m.name: m for m in created}, runtime, out)
    loaded.maxactive, loaded.lazy_ctx = maxactive, lazy_ctx
    helpers = runtime.helpers()
    infos = map_infos(created)
    ctx_size = machine.arch.module("regs").PT_REGS_SIZE

    for spec in obj.programs:
        where = f"{name}: program '{spec.name}' ({spec.section})"
        kind = spec.prog_type
        if kind not in SUPPORTED:
            # libbpf's autoload=false: the object loads, this program does not
            why = _WHY_NOT.get(kind, "only kprobe, kretprobe, uprobe, uretprobe, fentry and fexit programs attach")
            loaded.skipped.append(f"{where}: not loaded: section type '{kind}' is not supported ({why})")
            continue
        tctx = None
        if kind in tracing.KINDS:
            func = attach.get(spec.name, spec.attach_point)
            if not func or "+" in func:
                raise BpfError(f"{where}: an {kind} program attaches to a function's entry: SEC(\"{kind}/FUNC\") "
                               f"or --attach {spec.name}=FUNC" + (f", not {func}" if func else ""))
            try:
                tctx = tracing.func_model(machine.btf, func, kind, len(machine.arch.module("regs").ALL_ARG_REGS))
            except tracing.TracingError as e:
                raise BpfError(f"{where}: {e}") from None
        insns = isa.decode(spec.insns)
        try:
            for pc, ksym in spec.ksym_refs:
                addr = userspace.ksym_address(obj, machine, ksym)
                lo, hi = isa.lddw(insns[pc].dst, addr)
                insns[pc], insns[pc + 1] = lo, hi
        except userspace.UserspaceError as e:
            raise BpfError(f"{where}: {e}") from None
        if spec.poisoned:
            live = sorted(set(spec.poisoned) & core.reachable(insns))
            if live:
                raise BpfError(f"{name}: prog '{spec.name}': insn {live[0]}: <invalid CO-RE relocation>: "
                               f"{spec.poisoned[live[0]]}")
        try:
            vm = VM(
                insns,
                {**helpers, core.POISON_HELPER: _poisoned} if spec.poisoned else helpers,
                resolver=runtime.resolve,
                engine="interp",  # built lazily: the engine is chosen once the verifier has spoken
                budget=budget,
                memory=memory,
                name=spec.name,
                binders=runtime.binders(),
            )
            probe_mem: frozenset[int] = frozenset()
            in_bounds: frozenset[int] = frozenset()
            if verify:
                verdict = absint.verify_program(vm.program.insns, infos, ctx_size, obj.license, frozenset(helpers),
                                                strict_alignment=machine.arch.name != "x86_64", tracing=tctx,
                                                kernel_btf=machine.btf)
                probe_mem, in_bounds = verdict.probe_mem, verdict.in_bounds
            vm.use(engine, probe_mem, in_bounds)
            if tctx is not None:
                vm.data["tracing"] = tctx  # bpf_get_func_arg and friends read the layout
        except EbpfError as e:
            raise BpfError(f"{where}: {e}") from None
        if OVERRIDE_RETURN in vm.program.helper_ids and kind != "kprobe":
            raise BpfError(f"{where}: bpf_override_return needs a kprobe at a function's entry")
        if TAIL_CALL in vm.program.helper_ids and set(vm.program.subprogs) - {0} - vm.program.callbacks:
            raise BpfError(f"{where}: mixing of tail_calls and bpf-to-bpf calls is not supported")
        loaded.programs[spec.name] = Program(spec.name, spec.section, kind, attach.get(spec.name, _target(spec)), vm,
                                             fd=PROG_FD_BASE + len(loaded.programs), tracing=tctx)

    if not loaded.programs:
        raise BpfError(loaded.skipped[0] if len(loaded.skipped) == 1 else
                       f"{name}: no program the machine can attach ({len(loaded.skipped)} of other types)")
    _fill_prog_arrays(loaded)
    try:
        for prog in loaded.programs.values():
            if prog.target:
                _check_target(loaded, prog, prog.target)
                _attach(loaded, prog, maxactive, lazy_ctx)
    except (ProbeError, BpfError):
        loaded.detach()
        raise
    return loaded


def map_infos(maps: list[BpfMap]) -> list[absint.MapInfo]:
    """What the verifier needs of each map, by index."""
    return [absint.MapInfo(m.name, m.map_type, m.key_size, m.value_size, m.max_entries, m.rdonly_prog) for m in maps]


def _fill_prog_arrays(loaded: LoadedObject) -> None:
    """Prog arrays take program fds (from user space: ``obj.programs[name].fd``); the slots the
    object declares (``.values = { [i] = &prog }``) are filled as libbpf fills them after load."""
    by_fd = {p.fd: p for p in loaded.programs.values()}
    for spec in loaded.object.maps:
        m = loaded.maps[spec.name]
        if not isinstance(m, ProgArrayMap):
            continue
        m.resolve_fd = lambda fd: (p.vm if (p := by_fd.get(fd)) is not None else None)
        for slot, prog_name in sorted(spec.init_slots.items()):
            p = loaded.programs.get(prog_name)
            if p is None:
                raise BpfError(f"{loaded.path}: map {spec.name!r} slot [{slot}]: program {prog_name!r} is not loaded")
            m.update(struct.pack("<I", slot), struct.pack("<i", p.fd))


def _check_target(loaded: LoadedObject, prog: Program, target: str) -> None:
    if prog.kind in ("kretprobe", *tracing.KINDS) and "+" in target:
        raise BpfError(f"{loaded.path}: program '{prog.name}' ({prog.section}): a kretprobe attaches to a "
                       f"function, not an offset")


def _attach(loaded: LoadedObject, prog: Program, maxactive: int, lazy_ctx: bool) -> None:
    m = loaded.machine
    where = f"{loaded.path}: program '{prog.name}' ({prog.section})"
    try:
        prog.addr = m.uprobes.locate(prog.target)[1] if prog.kind in USER_KINDS else m.probes.locate(prog.target)[0]
    except ProbeError as e:
        raise ProbeError(f"{where}: {e}") from None
    found = m.image.lookup(prog.addr)
    entry = found is not None and found[1] == 0 and found[0].is_func
    if OVERRIDE_RETURN in prog.vm.program.helper_ids and not entry:
        raise BpfError(f"{where}: bpf_override_return needs a kprobe at a function's entry, not {prog.target}")
    # a tail call may reach a program that reads other fields: then every field is built
    tails = any(isinstance(mp, ProgArrayMap) for mp in loaded.maps.values())
    make_ctx: Callable[[Regs, int], object] | None
    if prog.tracing is not None:  # the trampoline's u64s, filled by its handlers before each run
        make_ctx, ctx_buf = None, bytearray(8 * prog.tracing.slots)
    else:
        make_ctx, ctx_buf = _context_builder(m, prog.vm.program if lazy_ctx and not tails else None)
    run_with_ctx = prog.vm.context_runner(ctx_buf)
    rt = loaded.runtime
    # runs never overlap: one Hit; its kind is the program's (a return probe's context is the
    # function's return)
    returns = prog.kind in ("kretprobe", "uretprobe") or (prog.tracing is not None and prog.tracing.kind == "fexit")
    hit = Hit(loaded.machine.probes.regs, "kretprobe" if returns else "kprobe", 0, prog.addr, entry)

    def run(probe: Any, regs: Regs, ip: int | None = None) -> int:
        """Run the program for a hit of ``probe`` (a kprobe's or uprobe's pre-handler as it is:
        the context's IP is then the probe's address) or of a return instance (``ip`` given)."""
        if ip is None:
            ip = probe.addr
        hit.regs, hit.ip, hit.overridden = regs, ip, False
        if make_ctx is not None:
            make_ctx(regs, ip)
        rt.hit = hit
        prog.runs += 1
        vm = prog.vm
        try:
            try:
                run_with_ctx()
                prog.insns += vm.last_count
            except TailCall as t:
                vm = t.target  # type: ignore[assignment]
                while True:
                    try:
                        vm.run(ctx_buf)
                        prog.insns += vm.last_count
                        break
                    except TailCall as t:
                        vm = t.target  # type: ignore[assignment]
        except EbpfError as e:
            poison = loaded.object.program(vm.name).poisoned.get(e.pc) if e.pc is not None else None
            text = f"insn {e.pc}: <invalid CO-RE relocation>: {poison}" if poison else str(e)
            _fault(loaded, prog, text if vm is prog.vm else f"tail call to '{vm.name}': {text}")
        finally:
            if rt.reserved:  # (else what end_run does, without its call)
                if rt.end_run():
                    _fault(loaded, prog, "ring buffer record reserved but neither submitted nor discarded")
            else:
                rt.hit = None
                rt.tail_calls = 0
        return 1 if hit.overridden else 0

    if prog.tracing is not None:
        if not entry:
            raise BpfError(f"{where}: an {prog.kind} program attaches to a function's entry, not {prog.target}")
        _attach_trampoline(loaded, prog, run, maxactive, ctx_buf)
        return
    try:
        if prog.kind == "kprobe":

            prog.probe = m.kprobe(prog.addr, pre=run, name=prog.name)
        elif prog.kind == "uprobe":
            prog.probe = m.uprobe(prog.target, run, name=prog.name)
        elif prog.kind == "uretprobe":

            def uret(inst: Instance, regs: Regs) -> None:
                run(inst, regs, inst.ret_addr)

            prog.probe = m.uretprobe(prog.target, uret, name=prog.name)
        else:

            def ret(inst: Instance, regs: Regs) -> None:
                run(inst, regs, rt.return_address(inst))

            prog.probe = m.kretprobe(prog.addr, handler=ret, maxactive=maxactive, name=prog.name)
    except ProbeError as e:
        raise ProbeError(f"{where}: {e}") from None


def _attach_trampoline(
    loaded: LoadedObject, prog: Program, run: Callable[..., int], maxactive: int, buf: bytearray
) -> None:
    """fentry: a kprobe at the function's entry; fexit: a kretprobe whose entry handler saves
    the arguments (Linux's trampoline saves them before calling the function). The context is
    the arguments' registers as u64s, then (fexit) the return value register."""
    m, rt, tr = loaded.machine, loaded.runtime, prog.tracing
    assert tr is not None
    spec: Any = m.arch.module("regs")
    arg_regs = spec.ALL_ARG_REGS[: tr.nargs]
    ret_reg = spec.RETVAL_REG
    pack = struct.Struct("<Q").pack_into
    where = f"{loaded.path}: program '{prog.name}' ({prog.section})"
    try:
        if tr.kind == "fentry":

            def pre(probe: Kprobe, regs: Regs) -> int:
                for i, reg in enumerate(arg_regs):
                    pack(buf, 8 * i, regs[reg])
                return run(probe, regs)

            prog.probe = m.kprobe(prog.addr, pre=pre, name=prog.name)
        else:

            def save(inst: Instance, regs: Regs) -> int:
                inst.data["args"] = [regs[reg] for reg in arg_regs]
                return 0

            def ret(inst: Instance, regs: Regs) -> None:
                for i, value in enumerate(inst.data.get("args", ())):
                    pack(buf, 8 * i, value)
                pack(buf, 8 * tr.nargs, regs[ret_reg])
                run(inst, regs, rt.return_address(inst))

            prog.probe = m.kretprobe(prog.addr, handler=ret, entry=save, maxactive=maxactive, name=prog.name)
    except ProbeError as e:
        raise ProbeError(f"{where}: {e}") from None


def _context_builder(m: Machine, program: Verified | None) -> tuple[Callable[[Regs, int], object], bytearray]:
    """``(fill, buffer)``: ``fill(regs, ip)`` writes ``pt_regs`` into the buffer, only the fields
    the program reads when that is known."""
    spec: Any = m.arch.module("regs")
    ip_field = next(f for f in spec.PT_REGS_FIELDS if f.reg == spec.PC_REG)
    reads = ctx_reads(program) if program is not None else None
    fields = [] if reads is None else [f for f in spec.PT_REGS_FIELDS if any(f.offset + i in reads for i in range(8))]
    buf = bytearray(spec.PT_REGS_SIZE)  # runs never overlap: one buffer per program, kept mapped
    if reads is None or any(f.reg is None for f in fields):

        def full(regs: Regs, ip: int) -> None:
            buf[:] = regs.pt_regs(**{ip_field.name: ip})

        return full, buf
    plan = [(f.offset, None if f is ip_field else f.reg) for f in fields]
    pack = struct.Struct("<Q").pack_into

    if len(plan) == 1 and plan[0][1] is not None:  # one register (an argument, say)
        (offset, reg), = plan
        view = m.probes.regs  # the view probe handlers get: its register may be in the engine's file
        word = view.word(reg)
        if word is not None:
            file, at = word

            def one_direct(regs: Regs, ip: int) -> None:
                pack(buf, offset, file[at] & 0xFFFF_FFFF_FFFF_FFFF if regs is view else regs[reg])

            return one_direct, buf

        def one(regs: Regs, ip: int) -> None:
            pack(buf, offset, regs[reg])

        return one, buf

    def partial(regs: Regs, ip: int) -> None:
        for offset, reg in plan:
            pack(buf, offset, ip if reg is None else regs[reg])

    return partial, buf


def _poisoned(vm: VM, *_: int) -> int:
    """The helper behind a CO-RE-poisoned instruction (``call 0xbad2310``): reaching it is fatal."""
    raise EbpfError("invalid func unknown#195896080")


def _fault(loaded: LoadedObject, prog: Program, error: str) -> None:
    prog.errors += 1
    prog.last_error = error
    if prog.errors == 1:
        loaded.output.fault(prog.name, error)


# ----------------------------------------------------------------------------------------------
# Which context bytes a program reads
# ----------------------------------------------------------------------------------------------

_TOP = "?"  # a context pointer at an unknown offset
_ALL_ARGS = frozenset(range(1, 6))


def _join(a: tuple, b: tuple) -> tuple:
    return tuple(x if x == y else y if x is None else x if y is None else _TOP for x, y in zip(a, b, strict=True))


def ctx_reads(program: Verified) -> frozenset[int] | None:
    """The context byte offsets ``program`` may load, or None when that cannot be told.

    A forward data-flow pass tracks which registers hold the context pointer (r1 at entry) and
    at which constant offset; loads through them are recorded. Anything else done with such a
    pointer (stored, passed to a subprogram, passed to a helper in an argument the helper
    dereferences (:data:`~kprobesim.ebpf.helpers.HELPER_MEMORY_ARGS`), offset by a register,
    ``callx``) gives None, and the loader then builds the whole ``pt_regs`` on every hit.
    """
    insns = program.insns
    n = len(insns)
    start = tuple(0 if r == 1 else None for r in range(isa.NREGS))
    states: dict[int, tuple] = {0: start}
    work = [0]
    reads: set[int] = set()
    while work:
        pc = work.pop()
        st = list(states[pc])
        op, dst, src, off, imm = insns[pc]
        cls = op & 7
        succ = [pc + 1]
        if cls == isa.LD:
            st[dst] = None
            succ = [pc + 2]
        elif cls == isa.LDX:
            base = st[src]
            if base == _TOP:
                return None
            if base is not None:
                start_off = base + off
                reads.update(range(start_off, start_off + isa.SIZE_BYTES[op & 0x18]))
            st[dst] = None
        elif cls == isa.STX:
            if st[src] is not None:
                return None  # the pointer escapes to memory
            if op & 0xE0 == isa.ATOMIC and imm & isa.FETCH:
                st[0 if imm == isa.CMPXCHG else src] = None
        elif cls == isa.ST:
            pass
        elif cls in (isa.ALU, isa.ALU64):
            code, x = op & 0xF0, op & isa.X
            if cls == isa.ALU:
                st[dst] = None
            elif code == isa.MOV:
                st[dst] = st[src] if x and not off else None
            elif code in (isa.ADD, isa.SUB) and not x and st[dst] not in (None, _TOP):
                st[dst] = st[dst] + (imm if code == isa.ADD else -imm)
            elif st[dst] is not None or (x and st[src] is not None):
                st[dst] = _TOP
        else:  # JMP, JMP32
            code = op & 0xF0
            if op == isa.EXIT_OP:
                succ = []
            elif op == isa.CALLX_OP:
                return None
            elif code == isa.CALL:
                used = HELPER_MEMORY_ARGS.get(imm, _ALL_ARGS) if src == isa.CALL_HELPER else _ALL_ARGS
                if any(st[r] is not None for r in used):
                    return None
                for r in range(6):
                    st[r] = None
            elif code == isa.JA:
                succ = [pc + 1 + (imm if op == isa.JA32_OP else off)]
            else:
                succ = [pc + 1, pc + 1 + off]
        new = tuple(st)
        for nxt in succ:
            if not 0 <= nxt < n:
                continue
            old = states.get(nxt)
            merged = new if old is None else _join(old, new)
            if merged != old:
                states[nxt] = merged
                work.append(nxt)
    return frozenset(reads)
