"""Uprobes and uretprobes: probes on a user program's instructions (Linux's ``uprobe_events``).

As Linux does it: the probe break is written into the user program's page; a hit runs the
handlers, then the instruction is simulated (PC-relative and control flow, with the arch's
kprobe decoders) or stepped out of line in a slot of the process's XOL area, a page of
simulator memory the user task executes (never a kprobe slot page). The slot belongs to that
one step, so the task may be preempted (riscv U-mode takes M-mode interrupts whatever MIE says)
or take an exception inside it: interrupts are not masked, the step ends whenever the task gets
back to the slot's step break (x86 TF: its debug trap), and a fault inside the slot is reported
at the probed instruction (Linux's ``arch_uprobe_abort_xol``). Kernel kprobes hit meanwhile
are not counted missed: a pending user step is per task, not the CPU's.

Uretprobes hijack the return address at entry, per task, without maxactive: a task's chain of
return instances is only limited by Linux's ``MAX_URETPROBE_DEPTH`` (64 nested activations;
deeper ones are counted missed, as Linux omits them). The return trampoline is the XOL area's
first slot, as in Linux. A handler that moves the PC skips the step (Linux's rule); uprobes
have no post-handler.

Linux guests (a ``PATH`` of the initramfs, see ``userprog.py``): every address space whose
page at the probed address holds the file's bytes gets a private copy of that page with the
break (Linux's copy-on-write in ``uprobe_write_opcode``), a page of the simulator's user page
pool its page-table entry points at instead of the file's page-cache page, so ``read(2)`` of
the file and other programs see the original bytes (``uspaces.py``: when the copies are made,
given back and carried over fork). The pages are looked at when the probe is armed and
whenever the kernel's ``handle_mm_fault`` returns, so a process that execs the file or faults
its text in later (a forked child) gets the break before it runs it.

On boards with a ``user_xol`` (``pc``, ``virt``) the XOL area is an address space's own page
(``xol.py``): a simulator page mapped into the process's page tables at the top of its user
half, as Linux's, given back when the mm is freed (exit, exec); a fault in a slot there is
the process's (the kernel resumes the step in the slot). On x86 relative branches are
emulated (the decoder's ``for_far_slot``) and a RIP-relative copy that cannot reach its
target from there addresses it through a scratch register (``scratch_form``, Linux's
``riprel_analyze``). The simulator never stores into a page the process may not write: an
emulated call's push or a uretprobe's hijack there makes the process take the page fault at
the probed address first (``_faults_first``; Linux's ``copy_to_user`` faults the page in).
On ``virt``, in a process that maps that page itself, the instruction is
stepped in place (a step that faults is re-run after the guest handles the fault without
running the handlers again) and the uretprobe trampoline is a simulator address: returning to
it is a fetch fault the simulator takes as the return.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unicorn import UcError

from kprobesim.errors import HandlerError, ProbeError, SimError
from kprobesim.task import current_task

from .archbound import ArchBound
from .insn import Decision, DecodeError, Kind, SlotError
from .kprobe import Instance, Kprobe, Kretprobe
from .regs import Regs
from .slots import PAGE, SlotPages
from .userprog import UserProgram, resolve_in
from .uspaces import EXHAUSTED, Spaces
from .xol import UserXol

if TYPE_CHECKING:
    from kprobesim.machine import Machine

MAX_URETPROBE_DEPTH = 64  # Linux's limit on a task's nested uretprobe activations
MAX_INSN = 16

UprobeHandler = Callable[["Uprobe", Regs], Any]
UretHandler = Callable[[Instance, Regs], Any]


@dataclass(eq=False)
class Uprobe(Kprobe):
    """A probe on a user program's instruction; ``pre`` is its handler (Linux's consumer)."""

    program: str = ""


@dataclass(eq=False)
class Uretprobe(Kretprobe):
    """A return probe on a user function; ``maxactive`` does not apply (see MAX_URETPROBE_DEPTH)."""

    program: str = ""


@dataclass(eq=False)
class USite:
    """One patched user address and the uprobes on it."""

    addr: int
    decision: Decision
    orig: bytes
    probes: list[Uprobe] = field(default_factory=list)
    armed: bool = False
    program: UserProgram | None = None  # a guest file's program: armed per physical page
    scratch: str | None = None  # the copy addresses through this register (x86 RIP-relative)


@dataclass(eq=False)
class UStep:
    """A task's out-of-line step in progress, in its own XOL slot."""

    site: USite
    pid: int
    xol: SlotPages
    slot: int
    end: int | None  # the step break's address; None when single-stepping with TF
    backstop: int | None = None
    begin: Any = None
    scratch: tuple[str, int] | None = None  # the scratch register of a rewritten copy, its value


class Uprobes(ArchBound):
    """All uprobes and uretprobes of one machine."""

    def __init__(self, machine: Machine, variant: str | None = None) -> None:
        super().__init__(machine, variant)
        self.sites: dict[int, USite] = {}
        self.uretprobes: list[Uretprobe] = []
        self._xol: dict[int, SlotPages] = {}  # per process (tgid): pool pages (not user XOL pages)
        self._programs: dict[str, UserProgram] = {}  # guest files probed, by path
        #: Where a board's guest OS leaves a user page free for the XOL area (Linux: the top of
        #: the user half), when the arch can map it into a process; else XOL areas are pool pages.
        self._user_xol_at: Callable[[], int | None] | None = getattr(machine.traps, "user_xol", None)
        self._user_xol: int | None = None
        self._trampolines: dict[int, int] = {}  # trampoline address -> tgid
        self.steps: dict[int, UStep] = {}  # per task (pid)
        self._ends: dict[int, list[UStep]] = {}  # step break / backstop address -> steps
        self.returns: dict[int, list[Instance]] = {}  # per task (pid), innermost last
        #: The simulator's pages in a Linux guest's address spaces (boards with a user page pool).
        self.spaces: Spaces | None = Spaces(self) if machine.user_pages is not None else None
        self.refusals: list[str] = []  # why hits were refused (one line each, counted missed)
        self._replay: set[tuple[int, int]] = set()  # (pid, addr) of in-place steps that faulted
        machine.break_handlers.append(self._on_break)
        machine.exception_fixups.append(self._on_exception)
        machine.fetch_fault_claims.append(self._claims_fetch)
        if hasattr(machine.traps, "debug_handlers"):
            machine.traps.debug_handlers.append(self._on_debug)

    def detach(self) -> None:
        """Stop handling the machine's traps (the machine was restored to a snapshot)."""
        self.m.break_handlers.remove(self._on_break)
        self.m.exception_fixups.remove(self._on_exception)
        self.m.fetch_fault_claims.remove(self._claims_fetch)
        if hasattr(self.m.traps, "debug_handlers"):
            self.m.traps.debug_handlers.remove(self._on_debug)

    @property
    def placed(self) -> bool:
        return bool(self.sites or self.uretprobes)

    # -- the XOL area --------------------------------------------------------------------------
    @property
    def user_xol(self) -> int | None:
        """The user address of XOL pages (None: they are pool pages, or the guest does not page
        yet; asked again until it does)."""
        if self._user_xol is None and self._user_xol_at is not None:
            self._user_xol = self._user_xol_at()
        return self._user_xol

    def xol(self, tgid: int) -> SlotPages | None:
        """The process's XOL area: on boards with a user page pool the current address space's
        own page, mapped at :attr:`user_xol` (where it cannot be mapped and the board steps
        probed instructions in place, a pool page of the process instead; where it does not,
        None, and the run ends with a fault saying why), else a page of the simulator's pool.
        Its first slot is the uretprobe trampoline. None also when the user page pool is
        exhausted (the caller refuses the hit)."""
        area = self._xol.get(tgid)
        if area is not None:
            return area
        root = self.m.traps.user_root() if self.spaces is not None and self.user_xol is not None else None
        if root is None:
            return self.new_area(SlotPages(self.m, self.step.SLOT_SIZE), tgid)
        assert self.spaces is not None
        user, why = self.spaces.xol_area(root)
        if user is not None:
            return user
        if why == EXHAUSTED:
            return None
        if not self.m.steps_in_place:
            self.m.fault(f"cannot map the XOL page of process {tgid}: {why}", self.m.pc)
            return None
        return self.new_area(SlotPages(self.m, self.step.SLOT_SIZE), tgid)

    def new_area(self, area: SlotPages, tgid: int | None = None) -> SlotPages:
        """A new XOL area (a process's pool pages when ``tgid`` is given): its trampoline."""
        if tgid is not None:
            self._xol[tgid] = area
        area.trampoline = area.alloc()
        area.write(area.trampoline, self.step.PROBE_BREAK)
        self._trampolines[area.trampoline] = tgid or 0
        return area

    def drop_area(self, area: SlotPages) -> None:
        """An address space's XOL page is given back: steps in it end (their task is gone)."""
        for step in [st for st in self.steps.values() if st.xol is area]:
            self.steps.pop(step.pid, None)
            self._unwait(step)

    def forget_task(self, pid: int) -> None:
        """A task exits or execs (Linux's ``uprobe_free_utask``): its return instances go."""
        for inst in self.returns.pop(pid, []):
            inst.kretprobe.active -= 1
        self._replay = {(p, a) for p, a in self._replay if p != pid}

    def refuse(self, probes: list[Any], why: str, count: bool = True) -> None:
        """A hit (or a process's arming) refused: counted missed, the reason kept as one line."""
        task = current_task(self.m)
        names = ", ".join(sorted({p.name for p in probes})) or "uprobes"
        line = f"{names}: refused in {task.comm}-{task.pid}: {why}"
        if count:
            for p in probes:
                p.missed += 1
                rp = next((r for r in self.uretprobes if r.kprobe is p), None)
                if rp is not None:
                    rp.missed += 1
        if line not in self.refusals:
            self.refusals.append(line)

    # -- placing -------------------------------------------------------------------------------
    def original(self, addr: int, size: int) -> bytes:
        """User bytes as the program has them, with our breaks taken out."""
        data = bytearray(self.m.read(addr, size))
        for site in self.sites.values():
            if site.armed and addr - len(site.orig) < site.addr < addr + size:
                for i, b in enumerate(site.orig):
                    if 0 <= site.addr + i - addr < size:
                        data[site.addr + i - addr] = b
        return bytes(data)

    def locate(self, target: str) -> tuple[UserProgram, int, str]:
        """``PATH:OFFSET`` or ``PATH:SYMBOL[+OFF]`` -> program, address, its name; the address
        must start an instruction of the function holding it."""
        if not isinstance(target, str) or ":" not in target:
            raise ProbeError(f"a uprobe location is 'PATH:OFFSET' or 'PATH:SYMBOL[+OFF]', not {target!r}")
        path, _, loc = target.partition(":")
        prog, addr = resolve_in(self.m, path, loc)
        if prog.source is not None:  # one object per guest file: its sites know each other by it
            prog = self._programs.setdefault(prog.name, prog)
        sym = prog.containing(addr)
        if sym is None:
            raise ProbeError(f"{target}: offset {addr - prog.lo:#x} is in no function of {prog.name} (EINVAL)")
        try:
            starts = self.decode.boundaries(self._program_bytes(prog, sym.addr, sym.size), sym.addr)
        except DecodeError as e:
            raise ProbeError(f"{target}: cannot decode {sym.name}: {e}") from None
        if addr not in starts:
            raise ProbeError(
                f"{target}: offset {addr - sym.addr:#x} is not on an instruction boundary of {sym.name} (EILSEQ)"
            )
        return prog, addr, prog.describe(addr)

    def _program_bytes(self, prog: UserProgram, addr: int, size: int) -> bytes:
        """The program's original bytes: its file's, else the guest memory's without our breaks."""
        data = prog.file_bytes(addr, size)
        return data if data is not None else self.original(addr, size)

    def _new_site(self, addr: int, text: str, prog: UserProgram) -> USite:
        try:
            d = self.decide(self._program_bytes(prog, addr, MAX_INSN), addr)
        except (DecodeError, IndexError, struct.error, UcError) as e:
            raise ProbeError(f"{text}: {e}") from None
        if d.kind is Kind.REJECT:
            raise ProbeError(f"{text}: cannot probe '{d.text}': {d.reason} (EINVAL)")
        far = getattr(self.decode, "for_far_slot", None)
        if self.user_xol is not None and far is not None:
            d = far(d, self._program_bytes(prog, addr, MAX_INSN))  # control flow is emulated
        scratch = None
        if d.kind is Kind.OOL:  # can the copy run in any XOL slot (x86: RIP-relative reach)?
            align = getattr(self.step, "SLOT_ALIGN", 8)
            lo, hi = (self.m.sim_base, self.m.sim_end)
            if self.user_xol is not None:
                lo, hi = self.user_xol, self.user_xol + PAGE
            try:
                for where in (lo, (hi - MAX_INSN) & ~(align - 1)):
                    self.step.make_slot(d, where)
            except SlotError as e:
                rewrite = getattr(self.decode, "scratch_form", None)
                rewritten = rewrite(d) if rewrite is not None else None
                if rewritten is None:
                    raise ProbeError(f"{text}: {e}") from None
                d, scratch = rewritten  # addressed through a scratch register, as Linux's uprobes
        orig = self._program_bytes(prog, addr, d.length) if prog.source is not None else self.original(addr, d.length)
        return USite(addr, d, orig, program=prog if prog.source is not None else None, scratch=scratch)

    def register(self, target: str, handler: UprobeHandler | None = None, name: str = "") -> Uprobe:
        """Place a uprobe; several on one address share the site."""
        prog, addr, where = self.locate(target)
        site = self.sites.get(addr)
        if site is None:
            site = self.sites[addr] = self._new_site(addr, target, prog)
        probe = Uprobe(name or where, addr, where, handler, None, registry=self, program=prog.name)  # type: ignore[arg-type]
        site.probes.append(probe)
        self.update_arming(addr)
        return probe

    def update_arming(self, addr: int) -> None:
        """Arm the site while any of its probes is enabled (the break in the user page)."""
        site = self.sites.get(addr)
        if site is None:
            return
        want = any(p.enabled for p in site.probes)
        if site.program is not None:
            self._arm_file_site(site, want)
            return
        if want and not site.armed:
            self.m.patch_code(addr, self.step.probe_break(site.decision))
        elif site.armed and not want:
            self.m.patch_code(addr, site.orig)
        site.armed = want

    def unregister(self, probe: Kprobe) -> None:
        """Remove a uprobe; steps in progress finish in their own slots."""
        site = self.sites.get(probe.addr)
        probe.registry = None
        if site is None or probe not in site.probes:
            return
        site.probes.remove(probe)  # type: ignore[arg-type]
        if site.probes:
            self.update_arming(site.addr)
            return
        if site.program is not None:
            self._arm_file_site(site, False)
        elif site.armed:
            self.m.patch_code(site.addr, site.orig)
        del self.sites[site.addr]

    def register_uretprobe(self, target: str, handler: UretHandler | None = None, name: str = "") -> Uretprobe:
        """Place a return probe on a user function's entry."""
        prog, addr, where = self.locate(target)
        sym = prog.containing(addr)
        if sym is None or sym.addr != addr:
            raise ProbeError(f"{target}: uretprobes go on a function entry, not {where} (EINVAL)")
        rp = Uretprobe(where, addr, where, handler, None, registry=self, program=prog.name)  # type: ignore[arg-type]
        rp.kprobe = self.register(target, handler=lambda p, regs: self._uret_entry(rp, regs), name=name)
        rp.name = rp.kprobe.name
        self.uretprobes.append(rp)
        return rp

    def unregister_kretprobe(self, rp: Kretprobe) -> None:
        """Stop new activations; live ones still return through the trampoline."""
        if rp.kprobe is not None:
            self.unregister(rp.kprobe)
        rp.registry = None
        if rp in self.uretprobes:
            self.uretprobes.remove(rp)  # type: ignore[arg-type]

    # -- breaks in a guest file's pages --------------------------------------------------------
    def _physical(self, addr: int) -> int | None:
        """The physical address behind ``addr`` in the current address space, if mapped."""
        walk = getattr(self.m.traps, "physical", None) or getattr(self.m.traps, "translate", None)
        if walk is None:
            return addr
        try:
            return walk(addr)
        except Exception:  # the arch's page-walk error: not mapped here
            return None

    def _arm_file_site(self, site: USite, want: bool) -> None:
        if self.spaces is None:
            raise ProbeError(f"{site.program.name if site.program else 'a guest file'}: uprobes on a guest's files "
                             "need a board that maps pages into its processes (--board virt or pc)")
        if want and not site.armed:
            self.spaces.place_hooks()
            site.armed = True
            self.spaces.install(site)
        elif site.armed and not want:
            site.armed = False
            self.spaces.disarm(site)

    def _arm_mapped_all(self) -> None:
        """Give the current address space copies of the pages of every armed site there."""
        if self.spaces is None:
            return
        for site in list(self.sites.values()):
            if site.armed and site.program is not None:
                self.spaces.install(site)

    # -- uretprobes ----------------------------------------------------------------------------
    def _uret_entry(self, rp: Uretprobe, regs: Regs) -> None:
        task = current_task(self.m)
        chain = self.returns.setdefault(task.pid, [])
        if len(chain) >= MAX_URETPROBE_DEPTH:
            rp.missed += 1
            return
        area = self.xol(task.tgid)
        if area is None:
            return
        trampoline = area.trampoline
        assert trampoline is not None
        ra_reg, sp = self.spec.RA_REG, regs.sp
        if ra_reg is not None:
            inst = Instance(rp, regs[ra_reg], sp)
            regs[ra_reg] = trampoline
        else:  # the return address is on the stack
            inst = Instance(rp, int.from_bytes(regs.read_mem(sp, 8), "little"), sp + 8)
            regs.write_mem(sp, trampoline.to_bytes(8, "little"))
        rp.active += 1
        chain.append(inst)

    def _uret_return(self, regs: Regs) -> None:
        """A user function returned to the trampoline: run the handlers of this frame's
        instances (chained ones first to last), then resume at the real caller."""
        pid, sp = current_task(self.m).pid, regs.sp
        chain = self.returns.get(pid, [])
        while chain and chain[-1].return_sp < sp:  # frames left without returning (longjmp)
            chain.pop().kretprobe.active -= 1
        frame = []
        while chain and chain[-1].return_sp == sp:
            frame.append(chain.pop())
        if not frame:
            self.m.fault("uretprobe trampoline reached with no return instance for this task", regs.pc)
            return
        trampolines = set(self._trampolines)
        real = next((inst.ret_addr for inst in frame if inst.ret_addr not in trampolines), None)
        if real is None:
            self.m.fault("uretprobe instances of a frame all return to the trampoline", regs.pc)
            return
        for inst in frame:  # the most recent first, as Linux
            inst.ret_addr = real
            rp = inst.kretprobe
            rp.active -= 1
            if rp.registry is not None and rp.enabled:
                rp.hits += 1
                if rp.handler is not None:
                    self._call("return", rp, rp.handler, inst, regs)
        regs.pc = real
        ra_reg = self.spec.RA_REG
        if ra_reg is not None:
            regs[ra_reg] = real  # as if never hijacked
        else:
            refused = getattr(self.m.traps, "user_access_error", None)
            if refused is None or refused(sp - 8, 8, True) is None:  # not into a page shared copy-on-write
                regs.write_mem(sp - 8, real.to_bytes(8, "little"))

    # -- traps ---------------------------------------------------------------------------------
    def _claims_fetch(self, addr: int) -> bool:
        """A return to the trampoline address where the process has no XOL page (a child
        forked inside a uretprobed function when the user page pool had none for it)."""
        return addr in self._trampolines and bool(self.returns.get(current_task(self.m).pid))

    def _on_break(self, machine: Machine, pc: int) -> bool:
        steps = self._ends.get(pc)
        if steps:
            step = steps[0]
            if len(steps) > 1:  # XOL pages of several processes at one user address
                pid = current_task(self.m).pid
                step = next((s for s in steps if s.pid == pid), step)
            if pc == step.backstop:
                self.m.pc = pc  # undo the backstop break's advance: the copy ended right there
            self._finish(step)
            return True
        if pc in self._trampolines:
            self._uret_return(Regs(self.m))
            return True
        site = self.sites.get(pc)
        if site is None or not site.armed:
            return False
        if site.program is not None:
            assert self.spaces is not None
            phys = self._physical(pc)
            cow = self.spaces.copy_at(phys) if phys is not None else None
            if cow is None or pc not in cow.sites:
                return False  # not our break: another program's at the same address
        self._hit(site)
        return True

    def _on_debug(self, rip: int) -> bool:
        """x86 TF: the #DB after the current task's stepped instruction."""
        step = self.steps.get(current_task(self.m).pid)
        if step is None or step.end is not None:
            return False
        regs = Regs(self.m)
        if self._arch_hook("in_user_mode", regs) is False:
            return False  # the kernel's (a kprobe step while this task is preempted in its slot)
        if self.step.step_incomplete(step.site.decision, regs, step.slot):
            return True  # between iterations of a rep string op: TF stays set, step on
        self._finish(step)
        return True

    def _on_exception(self, pc: int) -> int:
        """A fault inside an XOL slot of the pool: abandon that step and report the probed
        address. In a process's own XOL page the fault is the process's, at the slot: the
        kernel handles it and returns there, and the step goes on (Linux's)."""
        inside = [step for step in self.steps.values() if 0 <= pc - step.slot < step.xol.size]
        if len(inside) > 1:  # XOL pages of several processes at one user address
            pid = current_task(self.m).pid
            inside = [step for step in inside if step.pid == pid]
        if not inside:
            return pc
        step = inside[0]
        if isinstance(step.xol, UserXol):
            return pc  # the process's own page: the kernel handles the fault and resumes the step there
        if step.end is None:
            self.step.disarm_single_step(Regs(self.m), step.site.decision)
        if step.scratch is not None:
            Regs(self.m)[step.scratch[0]] = step.scratch[1]
        self._drop(step)
        return step.site.addr

    def _call(self, kind: str, probe: Kprobe | Kretprobe, handler: Callable[..., Any], *args: Any) -> Any:
        """Run a handler; an exception it raises ends the run as a HandlerError naming it."""
        try:
            return handler(*args)
        except (SimError, KeyboardInterrupt):
            raise
        except Exception as e:
            name = getattr(handler, "__qualname__", None) or type(handler).__name__
            detail = (str(e).strip().splitlines() or [""])[0]
            what = "uretprobe" if isinstance(probe, Kretprobe) else "uprobe"
            raise HandlerError(
                f"{kind} handler {name}() of {what} '{probe.name}' at {probe.symbol} raised "
                f"{type(e).__name__}" + (f": {detail}" if detail else "")
            ) from e

    def _hit(self, site: USite) -> None:
        regs = Regs(self.m)
        at = regs.pc
        if self._replay:
            replay = (current_task(self.m).pid, site.addr)
            if replay in self._replay:  # a step that faulted, now re-run: the handlers ran already
                self._replay.discard(replay)
                self._execute(site, regs)
                return
        if site.program is not None and self._needs_xol(site) and self.xol(current_task(self.m).tgid) is None:
            assert self.spaces is not None
            self.spaces.release_current(site.addr)  # the original instruction runs, unprobed
            self.refuse([p for p in site.probes if p.enabled], f"no XOL page for this process: {EXHAUSTED}")
            regs.pc = site.addr  # (x86: the int3 advanced it)
            return
        if self._faults_first(site, regs, replay=False):
            return  # the hit comes when the process is back at the break
        for p in list(site.probes):
            if p.enabled:
                p.hits += 1
                if p.pre is not None:
                    self._call("pre", p, p.pre, p, regs)
        if regs.pc != at:
            return  # a handler moved the PC: no step (Linux's handle_swbp)
        self._execute(site, regs)

    def _needs_xol(self, site: USite) -> bool:
        """Does a hit need the process's XOL area (a step out of line, a uretprobe's trampoline)?"""
        return site.decision.kind is not Kind.SIMULATE or any(
            rp.kprobe in site.probes and rp.enabled for rp in self.uretprobes
        )

    def _execute(self, site: USite, regs: Regs) -> None:
        d = site.decision
        if d.kind is Kind.SIMULATE:
            if self._faults_first(site, regs, replay=True):  # (a handler moved the stack)
                return
            self.simulate.simulate(d, regs)
            self.m.account(1)
            return
        task = current_task(self.m)
        area = self.xol(task.tgid)
        if area is None:
            return
        if self.m.steps_in_place and not isinstance(area, UserXol):  # where it is, as kprobes here
            if self.m.traps.step_in_place(site.addr, site.orig, self.step.probe_break(d)):
                self.m.account(1)
            else:  # it trapped into the guest, which will come back to this address
                self._replay.add((task.pid, site.addr))
            return
        try:
            slot = area.alloc()
        except SimError as e:
            self.m.fault(str(e), site.addr)
            return
        try:
            area.write(slot, self.step.make_slot(d, slot))
        except SlotError as e:
            area.free(slot)
            self.m.fault(f"uprobe at {site.probes[0].symbol if site.probes else hex(site.addr)}: {e}", site.addr)
            return
        end = self.step.step_break_addr(d, slot)
        step = UStep(site, task.pid, area, slot, end)
        if end is None:  # single-step with the trap flag
            self.step.arm_single_step(regs)
            step.backstop = self._arch_hook("backstop_addr", d, slot)
        step.begin = self._arch_hook("step_begin", d, regs)
        if site.scratch is not None:
            step.scratch = (site.scratch, regs[site.scratch])
            regs[site.scratch] = d.end  # what RIP was relative to
        self.steps[task.pid] = step
        for addr in (end, step.backstop):
            if addr is not None:
                self._ends.setdefault(addr, []).append(step)
        regs.pc = slot

    def _faults_first(self, site: USite, regs: Regs, replay: bool) -> bool:
        """Would this hit's stores or loads fault in the process: a uretprobe's hijack of the
        return address or a simulated instruction's stack access, in a page fork shares
        copy-on-write or one not present yet? Then the process takes that fault at the probed
        address, as the instruction itself does unprobed (Linux stores with ``copy_to_user``,
        which faults the page in); the kernel handles it and the process comes back to the
        break. Before the handlers (``replay`` False) the hit is then simply taken again; after
        them (a handler moved the stack) the instruction runs then without running them again.
        The simulator never stores into a page the process may not write."""
        refused = getattr(self.m.traps, "user_access_error", None)
        if refused is None:
            return False
        accesses: list[tuple[int, int, bool]] = []
        if not replay and self.spec.RA_REG is None and any(
            rp.kprobe in site.probes and rp.enabled for rp in self.uretprobes
        ):
            accesses.append((regs.sp, 8, True))  # the return address the hijack rewrites
        simulated = getattr(self.simulate, "memory_accesses", None)
        if simulated is not None:
            accesses += simulated(site.decision, regs)
        for addr, size, write in accesses:
            fault = refused(addr, size, write)
            if fault is not None:
                if replay:
                    self._replay.add((current_task(self.m).pid, site.addr))
                self.m.account(1)  # the faulting attempt counts, as the unprobed run's does
                self.m.traps.user_page_fault(fault[0], fault[1], site.addr)
                return True
        return False

    def _arch_hook(self, name: str, *args: Any) -> Any:
        fn = getattr(self.step, name, None)
        return fn(*args) if fn is not None else None

    def _finish(self, step: UStep) -> None:
        regs, d = Regs(self.m), step.site.decision
        if step.end is None:
            self.step.disarm_single_step(regs, d)
        extra = self._arch_hook("step_extra_count", d, step.begin, regs)
        if extra:
            self.m.account(extra)
        self.step.after_step(d, regs, step.slot)
        if step.scratch is not None:
            regs[step.scratch[0]] = step.scratch[1]
        self._drop(step)

    def _drop(self, step: UStep) -> None:
        if self.steps.get(step.pid) is step:
            del self.steps[step.pid]
        self._unwait(step)
        step.xol.free(step.slot)

    def _unwait(self, step: UStep) -> None:
        """``step`` no longer waits at its end or backstop address."""
        for addr in (step.end, step.backstop):
            waiting = self._ends.get(addr) if addr is not None else None
            if waiting and step in waiting:
                waiting.remove(step)
                if not waiting:
                    del self._ends[addr]
