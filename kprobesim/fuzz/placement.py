"""Probe-placement fuzzing: random sets of kprobes and kretprobes on a real kernel (and uprobes
and uretprobes on its user program, when it has one), each run from a snapshot and checked
against the unprobed run.

A placement passes when the kernel's transcript, exit status, checksum, virtual time and the
interrupts taken (each at its instruction) equal the reference, every kprobe's hit count equals
how often its address executed there, every kretprobe accounts for every call of its function,
and nothing stays armed after unregistering.
A failing placement is shrunk to a minimal one and printed as a one-line reproducer; an
internal error (a bug of the simulator, not a guest's) is a failure like any other, and the
campaign goes on from a freshly loaded machine.

A kernel that must boot first (Linux on ``virt``) comes as ``start``, a function returning its
machine at the moment to fuzz from (no probes placed) and a snapshot of that moment; the
reference run counts executions from there with one code hook per candidate function.
"""

from __future__ import annotations

import fnmatch
import multiprocessing
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from unicorn import UC_HOOK_CODE

from kprobesim.errors import SimError, UsageError
from kprobesim.machine import Machine, Snapshot
from kprobesim.probes.insn import Kind
from kprobesim.probes.registry import Registry

MAX_KPROBES = 8
MAX_KRETPROBES = 2
MAX_UPROBES = 4
MAX_URETPROBES = 1
RUN_BUDGET = 2_000_000_000  # a reference run from a booted kernel's snapshot (to its exit)
RUN_TIMEOUT = 600.0
HOOK_GAP = 0x10000  # reference counting hooks over functions closer than this are merged


@dataclass(frozen=True)
class Placement:
    """Kprobe addresses (repeats mean several probes on one address) and kretprobe functions;
    uprobe addresses and uretprobe functions in the user program."""

    kprobes: tuple[int, ...] = ()
    kretprobes: tuple[str, ...] = ()
    uprobes: tuple[int, ...] = ()
    uretprobes: tuple[str, ...] = ()

    def text(self) -> str:
        return ",".join(
            [f"p:{a:#x}" for a in self.kprobes]
            + [f"r:{f}" for f in self.kretprobes]
            + [f"u:{a:#x}" for a in self.uprobes]
            + [f"ur:{f}" for f in self.uretprobes]
        )

    @classmethod
    def parse(cls, text: str) -> Placement:
        kp: list[int] = []
        rp: list[str] = []
        up: list[int] = []
        urp: list[str] = []
        for item in filter(None, (t.strip() for t in text.split(","))):
            kind, _, where = item.partition(":")
            if kind in ("p", "u") and where:
                try:
                    (kp if kind == "p" else up).append(int(where, 0))
                except ValueError:
                    raise UsageError(f"--replay: bad address in {item!r}") from None
            elif kind in ("r", "ur") and where:
                (rp if kind == "r" else urp).append(where)
            else:
                raise UsageError(f"--replay: expected p:ADDR, r:FUNC, u:ADDR or ur:FUNC, not {item!r}")
        return cls(tuple(kp), tuple(rp), tuple(up), tuple(urp))

    def __len__(self) -> int:
        return len(self.kprobes) + len(self.kretprobes) + len(self.uprobes) + len(self.uretprobes)

    def without(self, field_name: str, index: int) -> Placement:
        """This placement with one probe of ``field_name`` left out."""
        items: tuple = getattr(self, field_name)
        return replace(self, **{field_name: items[:index] + items[index + 1 :]})


@dataclass
class Failure:
    iteration: int
    placement: Placement
    reason: str


@dataclass
class FuzzReport:
    arch: str
    iterations: int = 0
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.iterations / self.elapsed if self.elapsed else 0.0


class PlacementFuzzer:
    """Holds the kernel, its snapshot and the reference run."""

    def __init__(
        self,
        image: str | Path,
        func: str = "*",
        variant: str | None = None,
        plant: Callable[[Registry], None] | None = None,
        start: Callable[[], tuple[Machine, Snapshot]] | None = None,
    ) -> None:
        self.image, self.variant, self.plant, self.start = Path(image), variant, plant, start
        if start is not None:
            self.m, self.snap = start()
        else:
            self.m = Machine.load(self.image, step_variant=variant)
        self.snap_time = self.m.instructions
        spans: list[tuple[int, int]] = []  # candidate functions' bytes (for the reference count)
        reg = self.m.probes
        self.candidates: list[int] = []
        self.functions: list[str] = []
        self.ucandidates: list[int] = []  # uprobes: instructions of the user program
        self.ufunctions: list[str] = []
        self.user = reg.user
        self.repeats: set[int] = set()  # rep string instructions (one hit, many retired iterations)
        for sym in self.m.image.symbols:
            if not (sym.is_func and sym.size and fnmatch.fnmatchcase(sym.name, func)) or sym.addr in reg.blacklist:
                continue
            if self.user is not None and self.user.contains(sym.addr):  # user text takes uprobes
                up = self.m.uprobes
                starts = up.decode.boundaries(up.original(sym.addr, sym.size), sym.addr)
                decisions = [reg.classify(a) for a in starts]
                accepted = [d.addr for d in decisions if d.kind is not Kind.REJECT]
                self.repeats |= {d.addr for d in decisions if getattr(d.info, "rep_string", False)}
                self.ucandidates += accepted
                if sym.addr in accepted:
                    self.ufunctions.append(sym.name)
                continue
            code = reg.original(sym.addr, sym.size)
            decisions = [reg.classify(a, code, sym.addr) for a in reg.decode.boundaries(code, sym.addr)]
            accepted = [d.addr for d in decisions if d.kind is not Kind.REJECT]
            self.repeats |= {d.addr for d in decisions if getattr(d.info, "rep_string", False)}
            self.candidates += accepted
            if accepted:
                spans.append((sym.addr, sym.addr + sym.size - 1))
            if sym.addr in accepted:
                self.functions.append(sym.name)
        if not self.candidates and not self.ucandidates:
            raise UsageError(f"no probeable instruction in functions matching {func!r}")
        if start is not None:
            self._reference_from_snapshot(spans)
            # a booted kernel has far more text than one run executes: draw among what ran
            self.candidates = [a for a in self.candidates if self.counts.get(a)]
            if not self.candidates:
                raise UsageError(f"no instruction of the functions matching {func!r} ran after the snapshot")
            return
        self._reference()
        self._fresh_machine()

    def _fresh_machine(self) -> None:
        if self.start is not None:
            self.m, self.snap = self.start()
            return
        self.m = Machine.load(self.image, step_variant=self.variant)
        self.snap = self.m.snapshot()

    def _reference_from_snapshot(self, spans: list[tuple[int, int]]) -> None:
        """The unprobed run from the snapshot, counting executions in the candidate functions."""
        m = self.m
        m.restore(self.snap)
        self.counts = {}
        count = _ExecutionCounter(m, self.counts, self.repeats)
        hooks = [m.engine.hook_add(UC_HOOK_CODE, count, None, lo, hi) for lo, hi in _merged(spans)]
        m.engine.ctl_flush_tb()
        try:
            self.status = m.run(max_insns=RUN_BUDGET, timeout=RUN_TIMEOUT)
        finally:
            for hook in hooks:
                m.engine.hook_del(hook)
        self.console, self.instructions = m.console, m.instructions
        self.checksum = self._checksum(m)
        self.interrupts = m.interrupt_trace
        self.functions = [f for f in self.functions if self.counts.get(m.image.symbol(f).addr)]
        m.restore(self.snap)

    def _reference(self) -> None:
        lo, hi = min(self.candidates + self.ucandidates), max(self.candidates + self.ucandidates)
        stat = self.image.stat()
        key = (str(self.image.resolve()), stat.st_size, stat.st_mtime_ns, lo, hi)
        found = _REFERENCES.get(key)
        if found is None:
            found = _REFERENCES[key] = _reference_run(self.image, lo, hi, frozenset(self.repeats))
        counts, self.status, self.console, self.instructions, self.checksum, self.interrupts = found
        self.counts = dict(counts)
        image = self.m.image
        self.functions = [f for f in self.functions if self.counts.get(image.symbol(f).addr)]
        self.ufunctions = [f for f in self.ufunctions if self.counts.get(image.symbol(f).addr)]

    def ref_bytes(self, addr: int) -> bytes:
        """The byte the image has at ``addr`` (what an unregistered uprobe must put back)."""
        return self.m.image.read(addr, 1)

    @staticmethod
    def _checksum(m: Machine) -> bytes:
        return m.read(m.image.symbol("kernel_checksum").addr, 8) if m.image.has_symbol("kernel_checksum") else b""

    def draw(self, rng: random.Random) -> Placement:
        """A random placement: 1-8 kprobes (repeats allowed), up to 2 kretprobes, and in a user
        program up to 4 uprobes and a uretprobe (drawn last: kernel draws stay as they were)."""
        kp = [rng.choice(self.candidates) for _ in range(rng.randint(1, MAX_KPROBES))] if self.candidates else []
        if len(kp) > 1 and rng.random() < 0.3:
            kp.append(rng.choice(kp))  # several probes on one address
        rp = rng.sample(self.functions, k=min(len(self.functions), rng.randint(0, MAX_KRETPROBES)))
        up: list[int] = []
        urp: list[str] = []
        if self.ucandidates:
            up = [rng.choice(self.ucandidates) for _ in range(rng.randint(0 if kp else 1, MAX_UPROBES))]
            urp = rng.sample(self.ufunctions, k=min(len(self.ufunctions), rng.randint(0, MAX_URETPROBES)))
        return Placement(tuple(kp), tuple(rp), tuple(up), tuple(urp))

    def check(self, p: Placement) -> str | None:
        """Run ``p`` from the snapshot; the first broken property, or None."""
        try:
            return self._check(p)
        except Exception as e:  # noqa: BLE001 - a simulator bug is a finding, not the end
            self._fresh_machine()  # the machine may be left anywhere: start over clean
            return f"internal error: {type(e).__name__}: {e}"

    def _check(self, p: Placement) -> str | None:
        m = self.m
        m.restore(self.snap)
        reg = m.probes
        if self.plant is not None:
            self.plant(reg)
        user = self.user.name if self.user is not None else "?"
        try:
            probes = [m.kprobe(a) for a in p.kprobes]
            rps = [m.kretprobe(f, maxactive=4096) for f in p.kretprobes]
            uprobes = [m.uprobe(f"{user}:{a - self.user.lo:#x}") for a in p.uprobes] if self.user else []
            urps = [m.uretprobe(f"{user}:{f}") for f in p.uretprobes]
        except SimError as e:
            return f"placing failed: {e}"
        try:
            budget = 2 * (self.instructions - self.snap_time) + 100_000
            status = m.run(max_insns=budget, timeout=30 if self.start is None else RUN_TIMEOUT)
        except SimError as e:
            return f"run failed: {e}"
        if status != self.status:
            return f"exit status {status} != {self.status}"
        if m.console != self.console:
            return "console transcript differs"
        if self._checksum(m) != self.checksum:
            return "kernel checksum differs"
        if m.instructions != self.instructions:
            return f"virtual time {m.instructions} != {self.instructions}"
        if m.interrupt_trace != self.interrupts:
            return (f"interrupts taken at other instructions than unprobed ({m.interrupt_trace[0]} taken, "
                    f"{self.interrupts[0]} unprobed)")
        for probe in probes + uprobes:
            want = self.counts.get(probe.addr, 0)
            if probe.hits != want or probe.missed:
                return (
                    f"probe {m.image.describe(probe.addr)}: {probe.hits} hits, {probe.missed} missed, expected {want}"
                )
        for rp in rps + urps:
            calls = self.counts.get(rp.addr, 0)
            if rp.hits + rp.active + rp.missed != calls or rp.missed:
                return f"kretprobe {rp.symbol}: {rp.hits} returns + {rp.active} live + {rp.missed} missed != {calls}"
        for probe in probes + uprobes:
            probe.unregister()
        for rp in rps + urps:
            rp.unregister()
        for addr in set(p.kprobes):
            if m.read(addr, 1) != reg.original(addr, 1) or addr in reg.sites:
                return f"probe at {m.image.describe(addr)} still armed after unregister"
        if p.uprobes or p.uretprobes:
            ureg = m.uprobes
            for addr in set(p.uprobes):
                if m.read(addr, 1) != self.ref_bytes(addr) or addr in ureg.sites:
                    return f"uprobe at {m.image.describe(addr)} still armed after unregister"
            for area in ureg._xol.values():
                live = {st.slot for st in ureg.steps.values()} | set(ureg._trampolines)
                if area.in_use - live:
                    return f"{len(area.in_use - live)} XOL slots still in use after unregister"
        # Slots stay reserved only while the CPU is inside them (the guest may exit mid-step).
        live = {st.site.slot for st in reg.steps} | {reg.trampoline}
        if reg.slots.in_use - live:
            return f"{len(reg.slots.in_use - live)} slots still in use after unregister"
        return None

    def shrink(self, p: Placement) -> tuple[Placement, str]:
        """Drop probes one at a time while the placement still fails."""
        reason = self.check(p) or ""
        changed = True
        while changed and len(p) > 1:
            changed = False
            options = [
                p.without(name, i)
                for name in ("kprobes", "kretprobes", "uprobes", "uretprobes")
                for i in range(len(getattr(p, name)))
            ]
            for smaller in options:
                if len(smaller) and (why := self.check(smaller)):
                    p, reason, changed = smaller, why, True
                    break
        return p, reason

    def iterate(self, seed: int, indices: range | list[int]) -> list[Failure]:
        out = []
        for i in indices:
            p = self.draw(random.Random(f"{seed}:{i}"))
            if reason := self.check(p):
                small, why = self.shrink(p)
                out.append(Failure(i, small, why or reason))
        return out


#: Unprobed reference runs of bundled kernels by (image file, size, mtime, hooked span): the
#: run is deterministic, and a campaign, its shrinking and its replays build several fuzzers.
_Reference = tuple[dict[int, int], int | None, str, int, bytes, tuple]
_REFERENCES: dict[tuple[str, int, int, int, int], _Reference] = {}


def _reference_run(image: Path, lo: int, hi: int, repeats: frozenset[int]) -> _Reference:
    """The unprobed run of ``image``: executions per address in [lo, hi], exit status, console,
    virtual time, kernel checksum and the interrupts taken."""
    ref = Machine.load(image)
    counts: dict[int, int] = {}
    ref.engine.hook_add(UC_HOOK_CODE, _ExecutionCounter(ref, counts, set(repeats)), None, lo, hi)
    status = ref.run()
    return counts, status, ref.console, ref.instructions, PlacementFuzzer._checksum(ref), ref.interrupt_trace


class _ExecutionCounter:
    """A code hook counting executions per address, as a kprobe there counts hits: the engine
    calls it again for the same execution when an unmask point stopped before the instruction
    (same virtual time), and once per iteration of a rep-prefixed string instruction (each
    iteration retires: time advances by one), which a probe hits once."""

    def __init__(self, m: Machine, counts: dict[int, int], repeats: set[int]) -> None:
        self.m, self.counts, self.repeats = m, counts, repeats  # repeats: rep string instructions
        self.last: tuple[int, int] | None = None

    def __call__(self, uc: object, addr: int, size: int, ud: object) -> None:
        now = self.m.now()
        last = self.last
        self.last = (addr, now)
        if last is not None and last[0] == addr and (now == last[1] or (now == last[1] + 1 and addr in self.repeats)):
            return
        self.counts[addr] = self.counts.get(addr, 0) + 1


def _merged(spans: list[tuple[int, int]], gap: int = HOOK_GAP) -> list[tuple[int, int]]:
    """Spans closer than ``gap`` joined: each code hook costs the engine on every instruction it
    translates (80 hooks made a Linux run 8x slower; 5 merged ones, 1.5x)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _worker(args: tuple) -> list[Failure]:  # (bundled kernels only: a booted one is not sent)
    image, func, variant, seed, indices = args
    return PlacementFuzzer(image, func, variant).iterate(seed, indices)


def fuzz(
    arch: str,
    image: str | Path,
    seed: int,
    iterations: int,
    func: str = "*",
    variant: str | None = None,
    jobs: int = 1,
    progress: Callable[[int, int, float], None] | None = None,
    plant: Callable[[Registry], None] | None = None,
    boot: Callable[[], tuple[Machine, Snapshot]] | None = None,
) -> FuzzReport:
    """Run a campaign; the same seed gives the same placements whatever ``jobs`` is. ``boot``:
    a kernel that boots first (see :class:`PlacementFuzzer`'s ``start``), in this process."""
    report = FuzzReport(arch)
    if boot is not None and jobs > 1:
        raise UsageError("--jobs applies to the bundled kernels; a booted kernel is fuzzed in one process")
    start = time.perf_counter()
    if jobs <= 1:
        fz = PlacementFuzzer(image, func, variant, plant, boot)
        start = time.perf_counter()
        for i in range(iterations):
            report.failures += fz.iterate(seed, [i])
            report.iterations = i + 1
            if progress:
                progress(i + 1, len(report.failures), time.perf_counter() - start)
    else:
        chunks = [(str(image), func, variant, seed, list(range(w, iterations, jobs))) for w in range(jobs)]
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for failures in pool.imap(_worker, chunks):
                report.failures += failures
        report.failures.sort(key=lambda f: f.iteration)
        report.iterations = iterations
    report.elapsed = time.perf_counter() - start
    return report


def reproducer(arch: str, image: str | Path, failure: Failure, variant: str | None, board: str = "") -> str:
    """The one-line command that replays a failing placement (``board``: its board options)."""
    step = f" --step {variant}" if variant else ""
    return f"kprobesim fuzz --arch {arch}{board} {image}{step} --replay '{failure.placement.text()}'"
