"""The kprobe registry: placing probes, handling their traps, stepping out of line.

Flow of a hit (DESIGN.md §7): the break at the probe traps; pre-handlers run in order (a
non-zero return means the handler moved the PC: the step is skipped); the probed instruction
is simulated, or stepped in its slot with interrupts masked, ending on the slot's step break
(or, on x86 with the "tf" variant, on the single-step debug trap); the arch's fix-ups set the
resume PC; post-handlers run; interrupts are restored. A probe that is not hit costs nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unicorn import UcError

from kprobesim.errors import GuestFault, HandlerError, ProbeError, SimError
from kprobesim.numbers import MASK64

from .archbound import ArchBound
from .insn import Decision, DecodeError, Kind, SlotError
from .kprobe import Instance, Kprobe, Kretprobe, PostHandler, PreHandler, ReturnHandler
from .regs import Regs
from .slots import SlotPages
from .userprog import user_program

if TYPE_CHECKING:
    from kprobesim.machine import Machine

MAX_INSN = 16


@dataclass(eq=False)
class Site:
    """One patched address and the probes aggregated on it."""

    addr: int
    decision: Decision
    orig: bytes
    slot: int | None = None
    slot_code: bytes = b""
    probes: list[Kprobe] = field(default_factory=list)
    armed: bool = False
    #: (step break address, TF backstop address) of the slot, worked out at the first hit.
    plan: tuple[int | None, int | None] | None = None
    boost: int | None = None  # the boosted slot (copy + jump back); 0: none; None: not yet asked
    #: The arch's register-only execution of the instruction (no step needed), False: none,
    #: None: not yet asked (see the arch step module's ``register_step``).
    reg_step: Callable[[Any], None] | bool | None = None


@dataclass(eq=False, slots=True)
class Step:
    """An out-of-line step in progress."""

    site: Site
    saved_irq: int | None  # None: interrupts were not masked (the machine holds them instead)
    end: int | None  # address of the step break; None when single-stepping with TF
    orphan: bool = False  # the site was unregistered meanwhile: free its slot at the end
    quiet: bool = False  # a re-entered hit (counted missed): no post-handlers
    backstop: int | None = None  # TF: a break after the copy ends the step if no #DB came
    begin: Any = None  # arch state noted at the start (x86: a rep op's count)


class Registry(ArchBound):
    """All kprobes and kretprobes of one machine."""

    def __init__(self, machine: Machine, variant: str | None = None) -> None:
        super().__init__(machine, variant)
        self.slots = SlotPages(machine, self.step.SLOT_SIZE)
        self.sites: dict[int, Site] = {}
        self._boundaries: dict[tuple[int, int], frozenset[int]] = {}  # per function (addr, size)
        self._patched: dict[int, Site] = {}  # each byte under an armed site's break -> the site
        self.steps: list[Step] = []  # out-of-line steps in progress, innermost last
        self.blacklist = machine.image.blacklist()
        self.user = user_program(machine.image)  # its text takes uprobes, not kprobes
        self.trampoline: int | None = None
        self._trampoline_bytes = b""  # its address as a little-endian u64 (a stack return address)
        self.instances: list[Instance] = []
        self.kretprobes: list[Kretprobe] = []
        self.regs = Regs(machine, in_trap=True)  # the view handlers get, reset at every trap
        # Interrupts wait while a step is in flight without touching the guest's enable bits
        # (no instruction in a slot can read them; the arch's fix-ups see to pushf): where the
        # machine delivers them (between slices) it holds them itself (_deliver_interrupts);
        # an engine that takes them at any instruction (the P-code engine) is told to hold.
        # x86 still saves and masks its flags, for its TF (its step's ALWAYS_SAVE_FLAGS).
        self._sp_name: str = self.spec.SP_REG
        # Boosted slots (x86): the copy jumps back, no trap ends the step (see _boosted).
        self._boost_fn: Callable[[Decision, int], bytes | None] | None = getattr(self.step, "boost_slot", None)
        # Register-only instructions (riscv64, loongarch64: addi sp, ...) are computed at the
        # hit instead of stepped, the way x86 boosts a slot: one trap a hit, not two.
        self._reg_step: Callable[[Decision], Callable[[Any], None] | None] | None = getattr(
            self.step, "register_step", None
        )
        self._boost_sites: dict[int, Site] = {}  # boosted slot -> its site
        self._boost_orphans: list[int] = []  # boosted slots of removed sites, freed once left
        self._hold: Callable[[bool], None] | None = getattr(machine.traps, "hold_interrupts", None)
        self._mask_irqs = getattr(self.step, "ALWAYS_SAVE_FLAGS", False)
        self._step_hooks = {
            name: getattr(self.step, name, None)
            for name in ("backstop_addr", "step_begin", "step_extra_count")
        }
        self._step_begin = self._step_hooks["step_begin"]
        self._step_extra = self._step_hooks["step_extra_count"]
        # The PC written straight to the engine where nothing reads it back in this trap.
        pc_id = self.spec.REG_IDS[self.spec.PC_REG]
        reg_write = machine.engine.reg_write
        self._set_pc: Callable[[int], None] = getattr(machine.engine, "write_pc", None) or (
            lambda value: reg_write(pc_id, value)
        )
        self._pc_name: str = self.spec.PC_REG
        self._hitting: Site | None = None  # the site whose pre-handlers are running
        # The stack pointer and return address register in the engine's register file, where
        # the view reads them there (kretprobe hits use them without the view's layers).
        self._sp_word = self.regs.word(self._sp_name)
        self._ra_word = self.regs.word(self.spec.RA_REG) if self.spec.RA_REG is not None else None
        self._boost_allowed: Callable[[Any], bool] | None = getattr(self.step, "boost_allowed", None)
        # Fixed for the machine's life, so asked once, not on every hit.
        self._in_place = machine.steps_in_place
        self._map_sim = getattr(machine.board, "map_sim_window", None)
        machine.break_handlers.append(self._on_break)
        machine.exception_fixups.append(self._on_exception)
        if hasattr(machine.traps, "debug_handlers"):
            machine.traps.debug_handlers.append(self._on_debug)

    def detach(self) -> None:
        """Stop handling the machine's traps (the machine was restored to a snapshot)."""
        self.m.break_handlers.remove(self._on_break)
        self.m.exception_fixups.remove(self._on_exception)
        if hasattr(self.m.traps, "debug_handlers"):
            self.m.traps.debug_handlers.remove(self._on_debug)

    # -- placing probes ------------------------------------------------------------------------
    def original(self, addr: int, size: int) -> bytes:
        """Guest bytes as the image has them, with our patched breaks taken out."""
        data = self.m.read(addr, size)
        patched = self._patched
        if not patched:
            return bytes(data)
        # Look up each byte of the range, or walk the patched bytes when there are fewer of
        # them: linear in the range either way, however many probes are armed.
        if len(patched) <= size:
            near = [(a, site) for a, site in patched.items() if addr <= a < addr + size]
        else:
            near = [(a, site) for a in range(addr, addr + size) if (site := patched.get(a)) is not None]
        if not near:
            return bytes(data)
        out = bytearray(data)
        for a, site in near:
            out[a - addr] = site.orig[a - site.addr]
        return bytes(out)

    def _patch(self, site: Site, arm: bool) -> None:
        """Put the break over a site's instruction, or its original bytes back, and note which
        bytes hold the original instruction's elsewhere (for :meth:`original`)."""
        if arm:
            self.m.patch_code(site.addr, self.step.probe_break(site.decision))
            for a in range(site.addr, site.addr + len(site.orig)):
                self._patched[a] = site
        else:
            self.m.patch_code(site.addr, site.orig)
            patched = self._patched
            for a in range(site.addr, site.addr + len(site.orig)):
                if patched.get(a) is site:
                    del patched[a]
        site.armed = arm

    def _starts(self, sym: Any) -> frozenset[int]:
        """Instruction boundaries of a function's original code (decoded once per function)."""
        key = (sym.addr, sym.size)
        starts = self._boundaries.get(key)
        if starts is None:
            starts = frozenset(self.decode.boundaries(self.original(sym.addr, sym.size), sym.addr))
            self._boundaries[key] = starts
        return starts

    def locate(self, spec: str | int) -> tuple[int, str]:
        """Resolve ``SYM``, ``SYM+OFF`` or an address; like Linux's ``check_kprobe_address_safe``
        only kernel text outside the blacklist, on an instruction boundary, may be probed."""
        if isinstance(spec, bool) or not isinstance(spec, (str, int)):
            raise ProbeError(f"a probe location is 'SYM[+OFF]' or an address, not {type(spec).__name__} {spec!r}")
        if isinstance(spec, int) and not 0 <= spec <= MASK64:
            raise ProbeError(f"address {spec:#x} is not a 64-bit address")
        image = self.m.image
        addr = spec if isinstance(spec, int) else image.resolve(spec)
        addr = image.probe_site(addr)  # e.g. past a Linux function's ftrace pad
        text = spec if isinstance(spec, str) else f"{addr:#x}"
        if self.m.in_sim_pages(addr):
            raise ProbeError(f"{text}: address {addr:#x} is in the simulator's own pages")
        found = image.lookup(addr)
        if self.user is not None and self.user.contains(addr):
            raise ProbeError(f"{text}: {self.user.describe(addr)} is user text, not kernel text: use a uprobe (EINVAL)")
        if found is not None and found[0].addr in self.blacklist:
            raise ProbeError(f"{text}: {found[0].name} is blacklisted (not probeable)")
        if not image.in_text(addr):
            named = spec.split("+")[0] if isinstance(spec, str) and image.has_symbol(spec.split("+")[0]) else None
            name = named or (found[0].name if found is not None else None)
            if name and image.in_text(image.symbol(name).addr):  # SYM+OFF past the end of text
                what = f"address {addr:#x} ({name}+{addr - image.symbol(name).addr:#x}) is not in"
            else:
                what = f"{name} is data, not" if name else f"address {addr:#x} is not in"
            raise ProbeError(f"{text}: {what} kernel text (EINVAL)")
        if found is not None:
            sym, off = found
            if sym.is_func and sym.size:
                try:
                    starts = self._starts(sym)
                except DecodeError as e:
                    raise ProbeError(f"{text}: cannot decode {sym.name}: {e}") from None
                if addr not in starts:
                    raise ProbeError(
                        f"{text}: offset {off:#x} is not on an instruction boundary of {sym.name} (EILSEQ)"
                    )
        return addr, image.describe(addr)

    def classify(self, addr: int, code: bytes = b"", base: int = 0) -> Decision:
        """The arch decoder's verdict on the (original) instruction at ``addr``; from ``code``
        (the original bytes at ``base``, holding the whole instruction) when given."""
        if not code:
            code, base = self._insn_bytes(addr), addr
        try:
            return self.decide(code[addr - base : addr - base + MAX_INSN], addr)
        except (DecodeError, IndexError, struct.error) as e:
            raise ProbeError(f"{self.m.image.describe(addr)}: {e}") from None

    def _insn_bytes(self, addr: int) -> bytes:
        """The original bytes at ``addr`` the longest instruction could take (not past RAM)."""
        ram, size = self.m.ram
        end = ram + size if ram <= addr < ram + size else addr + MAX_INSN
        try:
            return self.original(addr, min(MAX_INSN, end - addr))
        except UcError:
            raise ProbeError(f"{self.m.image.describe(addr)}: address {addr:#x} cannot be read (EINVAL)") from None

    def _new_site(self, addr: int, text: str) -> Site:
        code = self._insn_bytes(addr)
        d = self.classify(addr, code, addr)
        if d.kind is Kind.REJECT:
            raise ProbeError(f"{text}: cannot probe '{d.text}': {d.reason} (EINVAL)")
        site = Site(addr, d, code[: d.length])
        if d.kind is Kind.OOL:
            slot = self.slots.alloc()
            try:
                code = self.step.make_slot(d, slot)
            except SlotError as e:
                self.slots.free(slot)
                raise ProbeError(f"{text}: {e}") from None
            self.slots.write(slot, code)
            site.slot, site.slot_code = slot, code
        return site

    def register(
        self, spec: str | int, pre: PreHandler | None = None, post: PostHandler | None = None, name: str = ""
    ) -> Kprobe:
        """Place a kprobe; several on one address share the site (aggregation)."""
        addr, where = self.locate(spec)
        site = self.sites.get(addr)
        if site is None:
            site = self._new_site(addr, str(spec))
            self.sites[addr] = site
        probe = Kprobe(name or where, addr, where, pre, post, registry=self)
        site.probes.append(probe)
        self.update_arming(addr)
        return probe

    def update_arming(self, addr: int) -> None:
        """Arm the site while any of its probes is enabled, disarm it otherwise."""
        site = self.sites.get(addr)
        if site is None:
            return
        want = any(p.enabled for p in site.probes)
        if want != site.armed:
            self._patch(site, want)

    def unregister(self, probe: Kprobe) -> None:
        """Remove a probe; safe while the CPU is stepping in its slot (freed after the step)."""
        site = self.sites.get(probe.addr)
        probe.registry = None
        if site is None or probe not in site.probes:
            return
        site.probes.remove(probe)
        if site.probes:
            self.update_arming(site.addr)
            return
        if site.armed:
            self._patch(site, False)
        del self.sites[site.addr]
        if site.boost:
            del self._boost_sites[site.boost]
            if self.m.boost_copy == site.boost:
                self._boost_orphans.append(site.boost)  # the CPU may be inside it: free it later
            else:
                self.slots.free(site.boost)
        if site.slot is not None and site is not self._hitting:  # a hit in progress frees it after
            live = [st for st in self.steps if st.site is site]
            if live:
                live[-1].orphan = True
            else:
                self.slots.free(site.slot)

    # -- kretprobes ----------------------------------------------------------------------------
    def register_kretprobe(
        self,
        spec: str | int,
        handler: ReturnHandler | None = None,
        entry: ReturnHandler | None = None,
        maxactive: int | None = None,
        name: str = "",
    ) -> Kretprobe:
        """Place a return probe: its entry kprobe hijacks the return address."""
        if maxactive is not None and (isinstance(maxactive, bool) or not isinstance(maxactive, int) or maxactive <= 0):
            raise ProbeError(f"{spec}: maxactive must be a positive number of instances, not {maxactive!r}")
        if self.trampoline is None:
            self.trampoline = self.slots.alloc()
            self.slots.write(self.trampoline, self.step.PROBE_BREAK)
            self._trampoline_bytes = self.trampoline.to_bytes(8, "little")
        rp = Kretprobe("", 0, "", handler, entry, maxactive if maxactive is not None else 10, registry=self)
        kp = self.register(spec, pre=self._kret_entry_for(rp), name=name)
        rp.name, rp.addr, rp.symbol, rp.kprobe = kp.name, kp.addr, kp.symbol, kp
        self.kretprobes.append(rp)
        return rp

    def unregister_kretprobe(self, rp: Kretprobe) -> None:
        """Stop new activations; live ones still return through the trampoline."""
        if rp.kprobe is not None:
            self.unregister(rp.kprobe)
        rp.registry = None
        if rp in self.kretprobes:
            self.kretprobes.remove(rp)

    def _stack_fault(self, what: str, addr: int, regs: Regs) -> GuestFault:
        """The error for a return address the hijack cannot reach (as ``Regs``' own accesses)."""
        return GuestFault(f"{what} of 8 bytes at {addr:#x}: not guest memory", regs.pc)

    def _kret_entry_for(self, rp: Kretprobe) -> PreHandler:
        """The pre-handler of ``rp``'s entry kprobe: hijack the return address. A closure over
        what every hit needs (a hit calls it with no layer between; registers in the engine's
        file and the stack are reached directly, not through the handler view's checks)."""
        ra_reg, sp_name, m = self.spec.RA_REG, self._sp_name, self.m
        instances, free = self.instances, rp.free
        exchange, read = m.exchange, m.read
        sp_word, ra_word = self._sp_word, self._ra_word

        def kret_entry(kp: Kprobe, regs: Regs) -> int:
            if rp.active >= rp.maxactive:
                rp.missed += 1
                return 0
            sp = sp_word[0][sp_word[1]] & MASK64 if sp_word is not None else regs[sp_name]
            entry = rp.entry
            if ra_reg is not None:
                ret_addr = ra_word[0][ra_word[1]] & MASK64 if ra_word is not None else regs[ra_reg]
                return_sp = sp
            else:  # on the stack
                try:
                    if entry is None:  # no handler runs before the hijack: swap it now
                        if sp < m._sim_end and m.sim_base < sp + 8:
                            raise ProbeError(
                                f"exchange_mem: 8 bytes at {sp:#x} would overwrite the simulator's own pages"
                            )
                        old = exchange(sp, self._trampoline_bytes)
                    else:
                        old = read(sp, 8)
                except UcError:
                    raise self._stack_fault("exchange_mem" if entry is None else "read_mem", sp, regs) from None
                ret_addr, return_sp = int.from_bytes(old, "little"), sp + 8
            if free:  # instances are recycled, as Linux's kretprobe_instance pool
                inst = free.pop()
                inst.ret_addr, inst.return_sp = ret_addr, return_sp
                if inst.data:
                    inst.data.clear()
            else:
                inst = Instance(rp, ret_addr, return_sp)
            if entry is not None:
                if self._call("entry", rp, entry, inst, regs):
                    return 0
                if ra_reg is None:
                    regs.write_mem(sp, self._trampoline_bytes)
            if ra_reg is not None:
                if ra_word is not None:
                    ra_word[0][ra_word[1]] = self.trampoline
                else:
                    regs[ra_reg] = self.trampoline
            rp.active += 1
            instances.append(inst)
            return 0

        return kret_entry

    def _back_to_caller(self, sp: int, real: int, regs: Regs) -> None:
        """Resume at the real caller with the return address as if never hijacked (the PC
        straight to the engine: nothing read it through the view in this trap)."""
        self._set_pc(real)
        ra_reg = self.spec.RA_REG
        if ra_reg is not None:
            ra_word = self._ra_word
            if ra_word is not None:
                ra_word[0][ra_word[1]] = real
            else:
                regs[ra_reg] = real
            return
        try:
            self.m.write(sp - 8, real.to_bytes(8, "little"))
        except UcError:
            raise self._stack_fault("write_mem", sp - 8, regs) from None

    def _kret_return(self, regs: Regs) -> None:
        """The probed function returned to the trampoline: run the return handlers of every
        instance of this frame (several kretprobes on one function hijack it in turn, the
        later ones saving the trampoline's address), then go back to the real caller."""
        sp_word = self._sp_word
        sp = sp_word[0][sp_word[1]] & MASK64 if sp_word is not None else regs[self._sp_name]
        instances = self.instances
        if instances:
            last = instances[-1]
            if (
                last.return_sp == sp and last.ret_addr != self.trampoline
                and (len(instances) < 2 or instances[-2].return_sp != sp)
            ):  # fmt: skip
                instances.pop()  # the common case: one instance, the newest
                self._back_to_caller(sp, last.ret_addr, regs)
                rp = last.kretprobe
                rp.active -= 1
                self._returned(last, rp, regs)
                return
        frame = [inst for inst in reversed(instances) if inst.return_sp == sp]
        if not frame:
            self.m.fault("kretprobe trampoline reached with no matching instance", regs.pc)
            return
        real = next((inst.ret_addr for inst in frame if inst.ret_addr != self.trampoline), None)
        if real is None:
            self.m.fault("kretprobe instances of a frame all return to the trampoline", regs.pc)
            return
        for inst in frame:
            instances.remove(inst)
            inst.ret_addr = real
        # Back to the real caller first (Linux sets the return address before the handlers run),
        # so a handler that raises leaves no instance behind and the guest resumes correctly.
        self._back_to_caller(sp, real, regs)
        for inst in frame:
            inst.kretprobe.active -= 1
        for inst in frame:  # the most recent first, as Linux
            self._returned(inst, inst.kretprobe, regs)

    def _returned(self, inst: Instance, rp: Kretprobe, regs: Regs) -> None:
        """Run the return handler of an instance whose function returned; recycle it."""
        if rp.registry is not None and rp.enabled:
            rp.hits += 1
            handler = rp.handler
            if handler is not None:
                try:
                    handler(inst, regs)
                except (SimError, KeyboardInterrupt):
                    raise
                except Exception as e:
                    raise self._handler_error("return", rp, handler, e) from e
        if len(rp.free) < rp.maxactive:
            rp.free.append(inst)

    # -- traps ---------------------------------------------------------------------------------
    @property
    def stepping(self) -> Step | None:
        """The innermost out-of-line step in progress."""
        return self.steps[-1] if self.steps else None

    def _on_break(self, machine: Machine, pc: int) -> bool:
        if self.steps:
            step = self.steps[-1]
            if pc == step.end:
                self._finish_step()
                return True
            if pc == step.backstop:
                self.m.pc = pc  # undo the backstop break's advance: the copy ended right there
                self._finish_step()
                return True
        if pc == self.trampoline:
            regs = self.regs
            regs.reset()
            self._kret_return(regs)
            return True
        site = self.sites.get(pc)
        if site is None or not site.armed:
            return False
        self._hit(site)
        return True

    def hit_needs_no_engine(self, pc: int) -> bool:
        """Is the break at ``pc`` a probe hit whose instruction is simulated or only computes a
        register (so a board that steps in place can finish it inside the trap hook)?"""
        site = self.sites.get(pc)
        if site is None or not site.armed or self.steps:
            return False
        if site.decision.kind is Kind.SIMULATE:
            return True
        if site.reg_step is None:
            site.reg_step = (self._reg_step(site.decision) if self._reg_step is not None else None) or False
        return bool(site.reg_step)

    def _on_exception(self, pc: int) -> int:
        """A fault inside a slot (Linux's kprobe_fault_handler): abandon the step, restore the
        interrupt state and report the fault at the probed instruction."""
        boosted = self._boost_sites.get(pc)
        if boosted is not None:  # a boosted copy faulted: its jump back never runs
            self.m.boost_abandoned()
            return boosted.addr
        step = self.stepping
        if step is None or step.site.slot is None or not 0 <= pc - step.site.slot < self.slots.size:
            return pc
        self.steps.pop()
        if self._hold is not None:
            self._hold(bool(self.steps))
        regs = Regs(self.m)
        if step.end is None:
            self.step.disarm_single_step(regs, step.site.decision)
        if step.saved_irq is not None:
            self.step.restore_interrupts(regs, step.saved_irq)
        if step.orphan:
            self.slots.free(step.site.slot)
        return step.site.addr

    def _on_debug(self, rip: int) -> bool:
        step = self.stepping
        if step is None or step.end is not None:
            return False
        assert step.site.slot is not None
        if self.step.step_incomplete(step.site.decision, self._fresh_regs(), step.site.slot):
            return True  # between iterations of a rep string op: TF stays set, step on
        self._finish_step()
        return True

    def _fresh_regs(self) -> Regs:
        regs = self.regs
        regs.reset()
        return regs

    def _call(self, kind: str, probe: Kprobe | Kretprobe, handler: Callable[..., Any], *args: Any) -> Any:
        """Run a handler; an exception it raises ends the run as a HandlerError naming it."""
        try:
            return handler(*args)
        except (SimError, KeyboardInterrupt):
            raise
        except Exception as e:
            raise self._handler_error(kind, probe, handler, e) from e

    def _handler_error(
        self, kind: str, probe: Kprobe | Kretprobe, handler: Callable[..., Any], e: Exception
    ) -> HandlerError:
        name = getattr(handler, "__qualname__", None) or type(handler).__name__
        detail = (str(e).strip().splitlines() or [""])[0]
        return HandlerError(
            f"{kind} handler {name}() of {type(probe).__name__.lower()} '{probe.name}' at "
            f"{self.m.image.describe(probe.addr)} raised {type(e).__name__}" + (f": {detail}" if detail else "")
        )

    def _hit(self, site: Site) -> None:
        regs = self.regs
        regs.reset()
        # The slot, boosted copy or kretprobe trampoline it may enter must be reachable.
        if self._map_sim is not None and not self._map_sim(self.m):
            regs.pc = site.addr  # the run ends here, at the probed instruction
            return
        if self._hitting is not None or self.steps:
            # Re-entered (e.g. the stepped instruction trapped into probed code): like Linux,
            # count it missed and execute the instruction without handlers.
            for p in site.probes:
                p.missed += p.enabled
            self._execute(site, regs, quiet=True)
            return
        skip = False
        self._hitting = site  # also: pre-handlers are running (a hit meanwhile is missed)
        try:
            for p in site.probes.copy():  # a handler may (un)register probes here
                if p.enabled:
                    p.hits += 1
                    pre = p.pre
                    if pre is not None:
                        try:
                            moved = pre(p, regs)
                        except (SimError, KeyboardInterrupt):
                            raise
                        except Exception as e:
                            raise self._handler_error("pre", p, pre, e) from e
                        if moved:
                            skip = True  # like Linux's aggr_pre_handler: later handlers do not run
                            break
        except BaseException:
            regs.pc = site.addr  # as before the hit (x86: not one byte past the int3)
            raise
        finally:
            self._hitting = None
        if not site.probes:  # (unregister drops a site with its last probe)
            # A pre-handler unregistered the site's last probe: its original instruction is
            # back in place, so resume there; the slot it would have stepped is freed now.
            if site.slot is not None:
                self.slots.free(site.slot)
            if not skip:
                regs.pc = site.addr
            return
        if not skip:
            self._execute(site, regs)

    def _execute(self, site: Site, regs: Regs, quiet: bool = False) -> None:
        """Simulate the probed instruction, or start its out-of-line step."""
        d = site.decision
        boost = site.boost
        if boost:  # its boosted slot exists (x86, made at an earlier hit): the checks of _boosted
            for p in site.probes:
                if p.post is not None and p.enabled:
                    break
            else:
                if self._boost_allowed(regs):  # type: ignore[misc]
                    self.m.boost_entered(boost, boost + d.length, d.addr + d.length)
                    self._set_pc(boost)
                    return
            self._start_step(site, regs, quiet)
            return
        if d.kind is Kind.SIMULATE:
            self.simulate.simulate(d, regs)
            self.m.account(1)
            if not quiet:
                self._post(site, regs)
            return
        reg_step = site.reg_step
        if reg_step is None:  # worked out at the first hit
            reg_step = site.reg_step = (self._reg_step(d) if self._reg_step is not None else None) or False
        if reg_step:  # it only computes a register: done here, no trap ends a step, nothing re-patched
            reg_step(regs)
            self.m.account(1)
            if not quiet:
                self._post(site, regs)
            return
        if self._in_place:
            self._step_in_place(site, quiet)
            return
        assert site.slot is not None
        if self._boost_fn is not None and self._boosted(site, regs):
            self.m.boost_entered(site.boost, site.boost + d.length, d.addr + d.length)  # type: ignore[operator]
            self._set_pc(site.boost)  # type: ignore[arg-type]
            return
        self._start_step(site, regs, quiet)

    def _start_step(self, site: Site, regs: Regs, quiet: bool) -> None:
        """Send the CPU into the site's slot for an out-of-line step."""
        assert site.slot is not None
        d = site.decision
        plan = site.plan
        if plan is None:
            end = self.step.step_break_addr(d, site.slot)
            plan = site.plan = (end, self._arch_hook("backstop_addr", d, site.slot) if end is None else None)
        end, backstop = plan
        saved = self.step.mask_interrupts(regs, d) if self._mask_irqs else None
        if end is None:  # single-step with the trap flag
            self.step.arm_single_step(regs)
        begin = self._step_begin(d, regs) if self._step_begin is not None else None
        self.steps.append(Step(site, saved, end, quiet=quiet, backstop=backstop, begin=begin))
        if self._hold is not None:
            self._hold(True)
        self._set_pc(site.slot)

    def _boosted(self, site: Site, regs: Regs) -> bool:
        """May this hit run the site's boosted slot (Linux: no post-handler, and here the arch
        agrees for this instruction and register state)? Its slot is made at the first hit."""
        for p in site.probes:
            if p.post is not None and p.enabled:
                return False
        boost = site.boost
        if boost is None:
            if self._boost_orphans:
                self._free_boost_orphans()
            try:
                slot = self.slots.alloc()
            except SimError:  # out of slot pages: this site steps with a trap, as unboosted
                site.boost = 0
                return False
            code = self._boost_fn(site.decision, slot)  # type: ignore[misc]
            if code is None:
                self.slots.free(slot)
                site.boost = 0
                return False
            self.slots.write(slot, code)
            site.boost = slot
            self._boost_sites[slot] = site
        elif not boost:
            return False
        return bool(self.step.boost_allowed(regs))

    def _free_boost_orphans(self) -> None:
        open_copy = self.m.boost_copy
        keep = [slot for slot in self._boost_orphans if slot == open_copy]
        for slot in self._boost_orphans:
            if slot != open_copy:
                self.slots.free(slot)
        self._boost_orphans = keep

    def _step_in_place(self, site: Site, quiet: bool) -> None:
        """Run the original instruction at its own address (boards whose guests page: a slot
        outside the guest's page tables could not be fetched), then put the break back."""
        if self.m.traps.step_in_place(site.addr, site.orig, self.step.probe_break(site.decision)):
            self.m.account(1)
            if not quiet:
                self._post(site, Regs(self.m))

    def _arch_hook(self, name: str, *args: Any) -> Any:
        """An optional function of the arch's step module (None when it has none)."""
        fn = self._step_hooks[name]
        return None if fn is None else fn(*args)

    def _finish_step(self) -> None:
        step = self.steps.pop()
        if self._hold is not None:
            self._hold(bool(self.steps))
        site, regs = step.site, self.regs
        regs.reset()
        assert site.slot is not None
        if step.end is None:
            self.step.disarm_single_step(regs, site.decision)
        if self._step_extra is not None:
            extra = self._step_extra(site.decision, step.begin, regs)
            if extra:
                self.m.account(extra)
        self.step.after_step(site.decision, regs, site.slot, step.saved_irq)
        if step.saved_irq is not None:
            self.step.restore_interrupts(regs, step.saved_irq)
        self.m.interrupts_unmasked()
        if not step.quiet:
            self._post(site, regs)
        if step.orphan:
            self.slots.free(site.slot)

    def _post(self, site: Site, regs: Regs) -> None:
        for p in site.probes:
            if p.post is not None:
                break
        else:
            return  # no post-handler (the usual case)
        for p in site.probes.copy():
            if p.enabled and p.post is not None:
                self._call("post", p, p.post, p, regs)
