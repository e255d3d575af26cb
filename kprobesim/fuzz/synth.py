"""Synthetic-code fuzzing: random functions, every instruction probed in turn.

Each arch's ``kprobesim.arch.<name>.synth`` generates a random, valid, terminating function
(every integer instruction class, PC-relative ones, forward branches, bounded loops, calls to a
local helper) for a scratch RAM region. The harness runs it unprobed as the reference, then
once per instruction with one empty kprobe on it, from a snapshot, and compares the final
registers, the data buffer and stack, virtual time and the probe's hit count with the
reference. This finds decoder/simulator bugs on instructions no firmware contains. With ``devices`` the
functions also load from and store to the board's devices (UART, timer, interrupt controller)
in random sequences; the console output then is part of what must match.

Layout around ``base`` (all in RAM, far from the kernel image)::

    base            the function (and its helper)       CODE_SPACE bytes at most
    base + 0x1000   the exit stub (the function's return address)
    base + 0x2000   the data buffer (DATA_SIZE); the data register points at its middle
    base + 0x4000   the initial stack pointer (the stack grows down to base + 0x3000)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unicorn import UC_HOOK_CODE

from kprobesim.errors import ProbeError, SimError
from kprobesim.machine import Machine
from kprobesim.probes.insn import Kind
from kprobesim.probes.regs import Regs

CODE_SPACE = 0x1000
STUB_OFFSET = 0x1000
DATA_OFFSET = 0x2000
DATA_SIZE = 0x1000
STACK_TOP_OFFSET = 0x4000
STACK_SIZE = 0x1000
#: Scratch regions near the top of each board's RAM.
SCRATCH = {"riscv64": 0x8700_0000, "x86_64": 0x700_0000, "loongarch64": 0x0F00_0000}
MASK64 = (1 << 64) - 1


# -- the generators' shared assembler -------------------------------------------------------------
@dataclass
class Insn:
    """One encoded instruction and the assembler text it was meant to be."""

    raw: bytes
    asm: str


@dataclass
class _Fixup:
    """Instructions whose bytes depend on a target address resolved at layout time."""

    lengths: list[int]
    encode: Callable[[int, int], list[Insn]]  # (address of the first instruction, target)
    target: str | None  # a label, or None: a random boundary ahead within ``reach`` bytes
    reach: int
    pick: float


@dataclass
class SynthFunction:
    """A generated function: code for ``base``, instruction starts, and how to call it."""

    arch: str
    base: int
    code: bytes
    starts: list[int]
    asm: list[str]  # the intended text of each instruction (same order as ``starts``)
    data: int  # the data buffer (DATA_SIZE bytes)
    data_reg: str  # holds ``data + DATA_SIZE // 2`` at the call
    reserved: tuple[str, ...]  # registers the body never writes (stack, data pointer)
    pure_user: bool = True  # no privileged instruction: fit for a user-mode oracle

    def listing(self) -> str:
        """One line per instruction: address, bytes, intended text."""
        out = []
        for i, (addr, text) in enumerate(zip(self.starts, self.asm, strict=True)):
            end = self.starts[i + 1] if i + 1 < len(self.starts) else self.base + len(self.code)
            raw = self.code[addr - self.base : end - self.base]
            out.append(f"{addr:#x}: {raw.hex():<24} {text}")
        return "\n".join(out)


class Asm:
    """Lays out instructions, labels and forward-branch fix-ups, then resolves them.

    Boundaries (group starts) are the only targets a random forward branch may pick, so no
    branch lands inside a loop body or a multi-instruction group.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.items: list[Insn | _Fixup] = []
        self.labels: dict[str, int] = {}  # name -> item index
        self.boundaries: list[int] = []  # item indexes
        self._n = 0

    def ins(self, raw: bytes, asm: str) -> None:
        self.items.append(Insn(raw, asm))

    def add(self, insn: Insn | Sequence[Insn]) -> None:
        for i in [insn] if isinstance(insn, Insn) else insn:
            self.items.append(i)

    def label(self, name: str | None = None) -> str:
        """Name the next item's address (a fresh local name if none given)."""
        if name is None:
            self._n += 1
            name = f".L{self._n}"
        self.labels[name] = len(self.items)
        return name

    def boundary(self) -> None:
        """The next item starts a group: a possible forward-branch target."""
        if not self.boundaries or self.boundaries[-1] != len(self.items):
            self.boundaries.append(len(self.items))

    def fixup(
        self,
        lengths: list[int],
        encode: Callable[[int, int], list[Insn]],
        target: str | None = None,
        reach: int = 1 << 20,
    ) -> None:
        """Instructions of known lengths aiming at ``target``: a label, None (a random boundary
        ahead within ``reach``) or "." (no target: the encoding only depends on its address)."""
        self.items.append(_Fixup(lengths, encode, target, reach, self.rng.random()))

    def resolve(self, base: int) -> tuple[bytes, list[int], list[str]]:
        """Code bytes, instruction start addresses and texts for the function at ``base``."""
        addrs, pc = [], base
        for it in self.items:
            addrs.append(pc)
            pc += len(it.raw) if isinstance(it, Insn) else sum(it.lengths)
        addrs.append(pc)
        bounds = sorted({addrs[i] for i in self.boundaries})
        code, starts, texts = bytearray(), [], []
        for k, it in enumerate(self.items):
            if isinstance(it, Insn):
                out = [it]
            else:
                end = addrs[k] + sum(it.lengths)
                if it.target == ".":  # position-dependent only (RIP-relative data)
                    target = addrs[k]
                elif it.target is not None:
                    target = addrs[self.labels[it.target]]
                else:
                    ahead = [b for b in bounds if end <= b <= addrs[k] + it.reach]
                    if not ahead:
                        raise ValueError(f"no boundary within reach of the branch at {addrs[k]:#x}")
                    target = ahead[min(int(it.pick * len(ahead)), len(ahead) - 1)]
                out = it.encode(addrs[k], target)
                if [len(i.raw) for i in out] != it.lengths:
                    raise ValueError(f"fix-up at {addrs[k]:#x} changed length")
            for i in out:
                starts.append(base + len(code))
                texts.append(i.asm)
                code += i.raw
        return bytes(code), starts, texts


def random_value(rng: random.Random) -> int:
    """A register value biased towards edge cases (0, -1, sign bits, small, 32-bit)."""
    k = rng.randrange(12)
    if k == 0:
        return rng.choice([0, 1, MASK64, 1 << 63, (1 << 63) - 1, 0xFFFF_FFFF, 0x8000_0000, 0x7FFF_FFFF])
    if k == 1:
        return rng.randrange(-16, 17) & MASK64
    if k == 2:
        return 1 << rng.randrange(64)
    if k == 3:
        v = rng.getrandbits(32)
        return (v - (1 << 32) if v >> 31 else v) & MASK64
    if k == 4:
        return rng.getrandbits(rng.randrange(1, 64))
    return rng.getrandbits(64)


# -- the harness ----------------------------------------------------------------------------------
@dataclass
class Failure:
    """One probed run (or reference run) that differed from the unprobed one."""

    arch: str
    seed: int
    index: int  # sequence number within the campaign
    addr: int
    insn: str  # capstone's disassembly of the probed instruction
    decision: str  # out-of-line / simulated ("reference" for a failed unprobed run)
    diffs: list[str]
    listing: str = ""

    def __str__(self) -> str:
        head = f"{self.arch} seed={self.seed} sequence={self.index} {self.addr:#x}: {self.insn} ({self.decision})"
        return "\n  ".join([head, *self.diffs])


@dataclass
class SynthReport:
    """What a campaign did and found."""

    arch: str
    variant: str | None
    seed: int
    sequences: int = 0
    probes: int = 0  # probes placed (one run each)
    rejected: int = 0  # instructions the decoder rejects (not probed)
    executed: int = 0  # placed probes whose instruction ran in the reference
    simulated: int = 0  # placed probes the arch simulates
    crosschecked: int = 0  # sequences whose reference agreed with a second implementation
    printed: int = 0  # sequences whose reference run wrote to the console (device accesses)
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> str:
        v = f"/{self.variant}" if self.variant else ""
        return (
            f"synth {self.arch}{v} seed={self.seed}: {self.sequences} sequences, {self.probes} probes "
            f"({self.executed} hit, {self.simulated} simulated), {self.rejected} rejected, "
            f"{len(self.failures)} failures, {self.elapsed:.1f}s"
        )


@dataclass
class Outcome:
    """The observable end state of one run."""

    error: str = ""
    regs: dict[str, int] = field(default_factory=dict)
    mem: bytes = b""
    time: int = 0
    status: int | None = None
    console: bytes = b""


def _firmware(arch: str) -> str:
    return str(Path(__file__).resolve().parents[2] / "firmware" / arch / "kernel.elf")


class SynthHarness:
    """One machine (the arch's bundled firmware, not booted) running synthetic functions."""

    def __init__(
        self,
        arch: str,
        variant: str | None = None,
        plant: Callable[[Any], None] | None = None,
        firmware: str | None = None,
        budget: int = 200_000,
    ) -> None:
        self.machine = m = Machine.load(firmware or _firmware(arch), step_variant=variant)
        self.arch, self.variant, self.plant, self.budget = arch, variant, plant, budget
        self.synth: Any = m.arch.module("synth")
        self.spec: Any = m.arch.module("regs")
        self.base = SCRATCH[arch]
        self.stub = self.base + STUB_OFFSET
        self.regs = Regs(m)
        self.names: tuple[str, ...] = tuple(self.synth.COMPARE_REGS)
        self._final: dict[str, int] | None = None
        self._counts: dict[int, int] | None = None
        m.write(self.stub, self.synth.exit_stub(self.stub))
        m.image.add_text(self.base, self.base + CODE_SPACE)  # the functions are probed as kernel code
        m.engine.hook_add(UC_HOOK_CODE, self._at_stub, None, self.stub, self.stub)
        self.clean = m.snapshot()

    # hooks
    def _at_stub(self, uc: object, addr: int, size: int, ud: object) -> None:
        if self._final is None:
            self._final = {n: self.regs[n] for n in self.names}

    def _count(self, uc: object, addr: int, size: int, ud: object) -> None:
        # The generators never branch to the same instruction, so the hook firing again at
        # once is an engine re-entering one instruction (x86 rep iterations): one execution.
        assert self._counts is not None
        if addr != self._last:
            self._counts[addr] = self._counts.get(addr, 0) + 1
        self._last = addr

    # one sequence
    def prepare(self, fn: SynthFunction, rng: random.Random) -> dict[str, int]:
        """Load ``fn`` with random registers and memory; returns the initial registers."""
        m = self.machine
        m.restore(self.clean)
        if len(fn.code) > CODE_SPACE:
            raise ValueError(f"function of {len(fn.code)} bytes does not fit in {CODE_SPACE}")
        m.write(self.base, fn.code + bytes(CODE_SPACE - len(fn.code)))
        m.write(self.base + DATA_OFFSET, rng.randbytes(DATA_SIZE))
        m.write(self.base + STACK_TOP_OFFSET - STACK_SIZE, rng.randbytes(STACK_SIZE))
        init = {n: random_value(rng) for n in self.spec.GPR_NAMES if n not in self.spec.ZERO_REGS}
        init.update(self.synth.random_state(rng))
        regs, mem = self.synth.call_setup(fn, self.stub, self.base + STACK_TOP_OFFSET)
        init.update(regs)
        for addr, data in mem:
            m.write(addr, data)
        for name, value in init.items():
            self.regs[name] = value
        self.image = m.read(self.base, STACK_TOP_OFFSET)
        return init

    def run(self, counts: bool = False) -> Outcome:
        """Run from the current state to the exit stub; the end state (or the error)."""
        m = self.machine
        self._final = None
        hook = None
        if counts:
            self._counts, self._last = {}, -1
            hook = m.engine.hook_add(UC_HOOK_CODE, self._count, None, self.base, self.base + CODE_SPACE - 1)
        out = Outcome()
        try:
            out.status = m.run(max_insns=self.budget, timeout=30)
        except SimError as e:
            out.error = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - a simulator bug: a finding, the campaign goes on
            out.error = f"internal error: {type(e).__name__}: {e}"
        finally:
            if hook is not None:
                m.engine.hook_del(hook)
        if not out.error and self._final is None:
            out.error = f"exited with status {out.status} without reaching the exit stub"
        out.regs = self._final or {}
        lo = self.base + DATA_OFFSET
        out.mem = m.read(lo, STACK_TOP_OFFSET - DATA_OFFSET)
        out.time = m.instructions
        out.console = bytes(m.console_bytes)
        return out

    def compare(self, ref: Outcome, got: Outcome) -> list[str]:
        """Differences of ``got`` from the reference, one line each."""
        if got.error:
            return [f"run failed: {got.error}"]
        diffs = [f"{n}: {got.regs[n]:#x}, reference {ref.regs[n]:#x}" for n in self.names if got.regs[n] != ref.regs[n]]
        if got.mem != ref.mem:
            lo = self.base + DATA_OFFSET
            bad = [i for i in range(len(ref.mem)) if got.mem[i] != ref.mem[i]]
            i = bad[0] & ~7
            diffs.append(
                f"memory differs at {len(bad)} bytes, first {lo + bad[0]:#x}: "
                f"{got.mem[i : i + 8].hex()}, reference {ref.mem[i : i + 8].hex()}"
            )
        if got.time != ref.time:
            diffs.append(f"virtual time {got.time}, reference {ref.time}")
        if got.status != ref.status:
            diffs.append(f"exit status {got.status}, reference {ref.status}")
        if got.console != ref.console:
            diffs.append(f"console {got.console[-24:]!r}, reference {ref.console[-24:]!r} (last bytes)")
        return diffs

    def check(
        self, fn: SynthFunction, rng: random.Random, report: SynthReport, index: int, oracle: Oracle | None = None
    ) -> None:
        """Reference run (checked against ``oracle`` if given), then one probed run per
        instruction of ``fn``."""
        m = self.machine
        init = self.prepare(fn, rng)
        snap = m.snapshot()
        ref = self.run(counts=True)
        counts = self._counts or {}

        def fail(addr: int, insn: str, decision: str, diffs: list[str]) -> None:
            report.failures.append(Failure(self.arch, report.seed, index, addr, insn, decision, diffs, fn.listing()))

        if ref.error:
            fail(fn.base, "(reference run)", "reference", [ref.error])
            return
        report.printed += bool(ref.console)
        if oracle is not None and fn.pure_user:
            diffs = oracle.check(self, fn, init, ref)
            if diffs:
                fail(fn.base, "(unprobed run)", oracle.name, diffs)
            else:
                report.crosschecked += 1
        for addr in fn.starts:
            m.restore(snap)
            registry = m.probes
            if self.plant is not None:
                self.plant(registry)
            d = registry.classify(addr)
            if d.kind is Kind.REJECT:
                report.rejected += 1
                continue
            try:
                kp = m.kprobe(addr)
            except ProbeError as e:
                fail(addr, d.text, d.kind.value, [f"cannot place an accepted probe: {e}"])
                continue
            report.probes += 1
            report.simulated += d.kind is Kind.SIMULATE
            report.executed += counts.get(addr, 0) > 0
            got = self.run()
            diffs = self.compare(ref, got)
            if kp.hits != counts.get(addr, 0) or kp.missed:
                diffs.append(f"hits {kp.hits} (missed {kp.missed}), executed {counts.get(addr, 0)} times")
            if diffs:
                fail(addr, d.text, d.kind.value, diffs)


def run_synthetic(
    arch: str,
    seed: int,
    count: int,
    length: int = 12,
    variant: str | None = None,
    plant: Callable[[Any], None] | None = None,
    first: int = 0,
    crosscheck: bool = False,
    runner: str | None = None,
    devices: bool = False,
) -> SynthReport:
    """Run ``count`` random functions of about ``length`` instructions, probing each instruction.

    ``variant`` picks the x86_64 step variant ("tf"/"int3"). ``plant(registry)`` is called on
    every fresh probe registry before its probe is placed: a test hook that may replace
    ``registry.simulate`` / ``registry.step`` / ``registry.decode`` to plant a bug. Sequence
    ``i`` depends only on (seed, i): ``first`` replays from sequence ``first`` on.
    ``devices`` mixes loads and stores on the board's devices into the functions (their
    probed runs must print, read and program the timer exactly as unprobed).
    ``crosscheck`` also compares each unprobed run with a second implementation: riscv64,
    the P-code engine on the same function (:class:`PcodeOracle`); loongarch64, qemu-loongarch64
    on the same random choices relocated for ``runner``, the engine tests' compiled
    ``la_runner`` (:class:`QemuLaOracle`). x86_64 has none.
    """
    t0 = time.perf_counter()
    h = SynthHarness(arch, variant, plant)
    report = SynthReport(arch, variant, seed)
    oracle: Oracle | None = None
    if crosscheck and arch == "riscv64":
        oracle = PcodeOracle(arch)
    elif crosscheck and (arch != "loongarch64" or runner is None):
        raise ValueError(f"no cross-check for {arch}" + (" without the la_runner executable" if runner is None else ""))
    for index in range(first, first + count):
        rng = random.Random(f"{arch}:{seed}:{index}")
        fn = (
            h.synth.generate(rng, length, h.base, devices=devices) if devices else h.synth.generate(rng, length, h.base)
        )
        fn.pure_user = fn.pure_user and not devices  # no bare-engine oracle has the board
        h.check(fn, rng, report, index, oracle)
        report.sequences += 1
    if crosscheck and arch == "loongarch64" and runner is not None:
        agreed, failures = QemuLaOracle(runner).run(seed, count, length, first)
        report.crosschecked += agreed
        report.failures += failures
    report.elapsed = time.perf_counter() - t0
    return report


# -- second implementations ------------------------------------------------------------------------
class Oracle:
    """Something else that runs a function from the harness's initial state."""

    name = "oracle"

    def check(self, h: SynthHarness, fn: SynthFunction, init: dict[str, int], ref: Outcome) -> list[str]:
        raise NotImplementedError


class PcodeOracle(Oracle):
    """The P-code engine on a bare memory image (no board): riscv64 against Unicorn's run.

    Compares the general registers at the exit stub and the data buffer and stack.
    """

    name = "cross-check: P-code engine"

    def __init__(self, arch: str) -> None:
        from kprobesim.arch import get_arch
        from kprobesim.engine.pcode import PcodeEngine

        self.engine = PcodeEngine(arch)
        self.spec: Any = get_arch(arch).module("regs")
        self.pc_id = self.spec.REG_IDS[self.spec.PC_REG]
        self.mapped: int | None = None

    def check(self, h: SynthHarness, fn: SynthFunction, init: dict[str, int], ref: Outcome) -> list[str]:
        e = self.engine
        if self.mapped != h.base:
            e.mem_map(h.base, STACK_TOP_OFFSET)
            self.mapped = h.base
        e.mem_write(h.base, h.image)
        e.ctl_remove_cache(h.base, h.base + CODE_SPACE + STUB_OFFSET)
        gprs = [n for n in self.spec.GPR_NAMES if n not in self.spec.ZERO_REGS]
        for name in gprs:
            e.reg_write(self.spec.REG_IDS[name], init[name])
        try:
            e.emu_start(fn.base, h.stub, count=h.budget)
        except Exception as err:  # noqa: BLE001 - any engine error is a disagreement
            return [f"P-code engine: {type(err).__name__}: {err} at {e.reg_read(self.pc_id):#x}"]
        if e.reg_read(self.pc_id) != h.stub:
            return [f"P-code engine stopped at {e.reg_read(self.pc_id):#x}, not at the exit stub"]
        diffs = []
        for name in gprs:
            v = e.reg_read(self.spec.REG_IDS[name]) & MASK64
            if v != ref.regs[name]:
                diffs.append(f"{name}: P-code {v:#x}, Unicorn {ref.regs[name]:#x}")
        mem = bytes(e.mem_read(h.base + DATA_OFFSET, STACK_TOP_OFFSET - DATA_OFFSET))
        if mem != ref.mem:
            bad = [i for i in range(len(mem)) if mem[i] != ref.mem[i]]
            diffs.append(f"memory differs at {len(bad)} bytes, first {h.base + DATA_OFFSET + bad[0]:#x}")
        return diffs


class QemuLaOracle:
    """qemu-loongarch64 (user mode) against the P-code engine on the campaign's functions.

    Each function is generated again from the same random state for the layout of the engine
    tests' ``la_runner`` (tests/engine/la_runner.c: code at 0x10000000 called with the context
    block in a0, a 4 KiB scratch block that becomes the data buffer); a prologue loads every
    register from the context, an epilogue stores them back. The same bytes run in the bare
    P-code engine and, batched, in one qemu process; registers and the data buffer must agree.
    """

    CODE, SCRATCH, CTX, RET = 0x1000_0000, 0x1010_0000, 0x1020_0000, 0x1030_0000
    EPI = CODE + 0x8000
    SAVED = (1, 2, 3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31)
    SP = CTX + 0x800  # the function's stack lives in the context page, above the block

    def __init__(self, runner: str, qemu: str = "qemu-loongarch64") -> None:
        from kprobesim.arch import get_arch
        from kprobesim.engine.pcode import PcodeEngine

        self.runner, self.qemu = runner, qemu
        self.synth: Any = get_arch("loongarch64").module("synth")
        self.ids: dict[str, int] = get_arch("loongarch64").module("regs").REG_IDS
        self.engine = PcodeEngine("loongarch64")
        for addr, size in ((self.CODE, 0x10000), (self.SCRATCH, DATA_SIZE), (self.CTX, 0x1000)):
            self.engine.mem_map(addr, size)

    def _record(self, rng: random.Random, length: int) -> tuple[SynthFunction, bytes, bytes, list[int], bytes]:
        s = self.synth
        pro = [s.i12("st.d", r, 4, 512 + 8 * k) for k, r in enumerate(self.SAVED)]
        frame = self.SP - self.CTX - s.FRAME  # zero the function's stack (qemu keeps the page)
        pro += [s.i12("st.d", 0, 4, frame + 8 * k) for k in range(s.FRAME // 8)]
        pro += [s.i12("ld.d", i, 4, 8 * i) for i in range(1, 32) if i != 4] + [s.i12("ld.d", 4, 4, 32)]
        base = self.CODE + 4 * len(pro)
        fn = s.generate(rng, length, base, data=self.SCRATCH)
        low = -0x800  # the context block relative to the stack pointer the function returns with
        epi = [s.i12("st.d", i, 3, low + 256 + 8 * i) for i in range(32)]
        epi += [s.i12("ld.d", r, 3, low + 512 + 8 * k) for k, r in enumerate(self.SAVED) if r != 3]
        epi += [s.i12("ld.d", 3, 3, low + 512 + 8 * self.SAVED.index(3)), s.jirl(0, 1, 0)]
        regs = [0] + [random_value(rng) for _ in range(31)]
        regs[1], regs[3] = self.EPI, self.SP
        regs[int(self.ids[fn.data_reg] - self.ids["r0"])] = self.SCRATCH + DATA_SIZE // 2
        code = b"".join(i.raw for i in pro) + fn.code
        return fn, code, b"".join(i.raw for i in epi), regs, rng.randbytes(DATA_SIZE)

    def _engine(self, code: bytes, epi: bytes, regs: list[int], mem: bytes) -> tuple[list[int], bytes] | str:
        import struct

        e = self.engine
        e.mem_write(self.CODE, code)
        e.mem_write(self.EPI, epi)
        e.ctl_remove_cache(self.CODE, self.CODE + 0x10000)
        e.mem_write(self.SCRATCH, mem)
        e.mem_write(self.CTX, struct.pack("<32Q", *regs) + bytes(0x1000 - 256))
        e.reg_write(self.ids["a0"], self.CTX)
        e.reg_write(self.ids["ra"], self.RET)
        try:
            e.emu_start(self.CODE, self.RET, count=200_000)
        except Exception as err:  # noqa: BLE001 - reported as a disagreement
            return f"P-code engine: {type(err).__name__}: {err}"
        if e.reg_read(self.ids["pc"]) != self.RET:
            return f"P-code engine stopped at {e.reg_read(self.ids['pc']):#x}"
        return list(struct.unpack("<32Q", bytes(e.mem_read(self.CTX + 256, 256)))), bytes(
            e.mem_read(self.SCRATCH, DATA_SIZE)
        )

    def run(self, seed: int, count: int, length: int = 12, first: int = 0) -> tuple[int, list[Failure]]:
        """Cross-check sequences ``first .. first+count-1`` of a campaign; (agreed, failures)."""
        import struct
        import subprocess

        records, batch = [], bytearray()
        for index in range(first, first + count):
            rng = random.Random(f"loongarch64:{seed}:{index}")
            rec = self._record(rng, length)
            records.append((index, *rec))
            _, code, epi, regs, mem = rec
            batch += struct.pack("<II", len(code), len(epi)) + struct.pack("<32Q", *regs) + mem + code + epi
        p = subprocess.run([self.qemu, self.runner], input=bytes(batch), capture_output=True, timeout=600)
        size = 256 + DATA_SIZE
        failures, agreed = [], 0
        for k, (index, fn, code, epi, regs, mem) in enumerate(records):
            chunk = p.stdout[k * size : (k + 1) * size]
            got = self._engine(code, epi, regs, mem)
            if len(chunk) < size:
                diffs = [f"qemu produced no result (exit {p.returncode}, {p.stderr[-200:]!r})"]
            elif isinstance(got, str):
                diffs = [got]
            else:
                want = list(struct.unpack("<32Q", chunk[:256])), chunk[256:]
                diffs = [
                    f"r{i}: P-code {got[0][i]:#x}, qemu {want[0][i]:#x}" for i in range(32) if got[0][i] != want[0][i]
                ]
                if got[1] != want[1]:
                    bad = [i for i in range(DATA_SIZE) if got[1][i] != want[1][i]]
                    diffs.append(f"data buffer differs at {len(bad)} bytes, first {self.SCRATCH + bad[0]:#x}")
            if diffs:
                where = (fn.base, "(unprobed run)", "cross-check: qemu")
                failures.append(Failure("loongarch64", seed, index, *where, diffs, fn.listing()))
            else:
                agreed += 1
        return agreed, failures
