"""The eBPF virtual machine: one verified program, its memory, stacks, helpers and engines.

Typical use (the kprobe pre-handler)::

    vm = VM(insns, helpers={1: map_lookup, ...}, resolver=loader.resolve)  # verify + translate
    r0 = vm.run(pt_regs_bytes)            # r1 = address of a read-only copy of the context
    vm.last_count                         # instructions executed by that run

Helpers are called as ``fn(vm, r1, r2, r3, r4, r5) -> int`` and use ``vm.memory`` to read,
write or map regions (e.g. ``vm.memory.map_region(view, True, "map value", key=...)``); a helper
may raise :class:`StopProgram` to end the program with a given r0.  Anything a helper raises
besides :class:`EbpfError` becomes a :class:`HelperError` naming the pc.  Helpers that take a
callback (:data:`~kprobesim.ebpf.helper_ids.TAKES_CALLBACK`: ``bpf_loop``, ...) get a seventh
argument, ``invoke(func, a1, ..., a5) -> r0``, which runs the subprogram whose address the
program passed one frame below the caller, charging the run's budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from . import isa
from .asm import assemble
from .errors import EbpfError, HelperError, StopProgram, TailCall
from .helper_ids import describe as describe_helper
from .interp import Interpreter
from .isa import Insn
from .memory import Buffer, Memory
from .translate import Translated
from .verifier import Program, Resolver, verify

Helper = Callable[..., int]
#: ``resolver(vm, pseudo_src, imm, next_imm) -> 64-bit value`` for lddw placeholders.
VMResolver = Callable[["VM", int, int, int], int]
Engine = Literal["interp", "translate"]
DEFAULT_BUDGET = 1_000_000
#: Larger programs run in the interpreter even when the translator is asked for.
TRANSLATE_MAX_INSNS = 100_000


class VM:
    """A loaded program.

    ``program``: slots, raw bytes, or assembly text.  ``helpers``: helper id -> callable.
    ``resolver(vm, pseudo_src, imm, next_imm) -> int`` resolves the ``lddw`` placeholders
    (map fd / map value / map index / BTF id) at load time; it may map regions in
    ``vm.memory`` (e.g. a global-data value) and return their address.
    ``engine``: default engine of :meth:`run`; the translator compiles at construction.
    ``budget``: default maximum number of instructions per run.
    ``binders``: helper id -> ``bind(r1)``, a faster equivalent of that helper for the calls
    whose r1 is a known constant (the translator asks once per call site; None: no faster one).
    """

    def __init__(self, program: Sequence[Insn] | bytes | bytearray | str,
                 helpers: Mapping[int, Helper] | None = None, *,
                 resolver: VMResolver | None = None, engine: Engine = "translate",
                 budget: int = DEFAULT_BUDGET, max_insns: int = isa.MAX_INSNS,
                 memory: Memory | None = None, name: str = "prog",
                 binders: Mapping[int, Callable[[int], Helper | None]] | None = None) -> None:
        if isinstance(program, str):
            insns: Sequence[Insn] = assemble(program)
        elif isinstance(program, (bytes, bytearray, memoryview)):
            if len(program) % 8:
                raise EbpfError(f"program length {len(program)} is not a multiple of 8")
            insns = isa.decode(program)
        else:
            insns = program
        if engine not in ("interp", "translate"):
            raise ValueError(f"unknown engine {engine!r}")
        self.name = name
        self.helpers: dict[int, Helper] = dict(helpers or {})
        #: helper id -> ``bind(r1)``: that helper specialised for a call site whose r1 the
        #: translator knows (a map's address), or None for the generic one
        self.binders: dict[int, Callable[[int], Helper | None]] = dict(binders or {})
        self.memory = memory if memory is not None else Memory()
        self.data: dict[str, Any] = {}  # free for the embedding simulator and its helpers
        bound: Resolver | None = None
        if resolver is not None:
            def bound(src: int, imm: int, next_imm: int) -> int:
                return resolver(self, src, imm, next_imm)
        self.program: Program = verify(insns, self.helpers, bound, max_insns)
        self.engine: Engine = engine
        self.budget = budget
        self.current_budget = budget
        self.last_count: int | None = None
        self.frames: list[tuple[bytearray, int]] = []
        for depth in range(self.program.max_frames):
            stack = bytearray(isa.STACK_SIZE)
            base = self.memory.map_region(stack, True, f"stack{depth}")
            self.frames.append((stack, base + isa.STACK_SIZE))
        self.ctx_addr = self.memory.reserve("ctx")
        # The context region, and the buffer the last run mapped there (a run with the same
        # buffer maps it again by two assignments)
        self._ctx_region = self.memory.region_at(self.ctx_addr)
        self._ctx: object = None
        self._ctx_buf: Buffer = b""
        self._ctx_writable = False
        self._ctx_len = 0
        self._running = False
        self._interp: Interpreter | None = None
        self._translated: Translated | None = None
        if engine == "translate":
            self._engine("translate")

    # --- engines ---------------------------------------------------------------------------------
    def _engine(self, engine: Engine):
        if engine == "interp":
            if self._interp is None:
                self._interp = Interpreter(self)
            return self._interp
        if engine == "translate":
            if self._translated is None:
                if len(self.program.insns) > TRANSLATE_MAX_INSNS:
                    return self._engine("interp")  # same semantics, avoids a huge compile
                try:
                    self._translated = Translated(self)
                except Exception as e:  # a translator bug must not escape as a random error
                    raise EbpfError(f"internal error: translation failed: "
                                    f"{type(e).__name__}: {e}") from e
            return self._translated
        raise ValueError(f"unknown engine {engine!r}")

    def use(self, engine: Engine, probe_mem: frozenset[int] = frozenset(),
            in_bounds: frozenset[int] = frozenset()) -> None:
        """Make ``engine`` the default, with ``probe_mem`` the loads through BTF-typed kernel
        pointers and ``in_bounds`` the loads and stores proved to stay in a map value (both
        known once the program is verified); engines built before are rebuilt."""
        if probe_mem != self.program.probe_mem or in_bounds != self.program.in_bounds:
            self.program.probe_mem = probe_mem
            self.program.in_bounds = in_bounds
            self._interp = self._translated = None
        self.engine = engine
        self._engine(engine)

    @property
    def source(self) -> str:
        """The Python source the translator generated for this program ("" if interpreted)."""
        return getattr(self._engine("translate"), "source", "")

    def call_with_callback(self, runner: Any, pc: int, fn: Helper, hid: int, r1: int, r2: int,
                           r3: int, r4: int, r5: int, depth: int, n: int) -> tuple[int, int]:
        """Call a helper that takes a callback from frame ``depth`` with ``n`` instructions of
        budget left; ``runner`` is the engine running the program. Returns ``(r0, n left)``."""
        left = [n]
        callbacks = self.program.callbacks
        frames = len(self.frames)

        def invoke(func: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
            entry = func & isa.MASK32
            if func & ~isa.MASK32 != isa.FUNC_TAG or entry not in callbacks:
                raise HelperError(f"{describe_helper(hid)}: {func:#x} is not a callback's address", pc)
            if depth + 1 >= frames:
                raise HelperError(f"{describe_helper(hid)}: callback needs frame {depth + 2} of "
                                  f"{frames}", pc)
            r0, left[0] = runner.call(entry, a1 & isa.MASK64, a2 & isa.MASK64, a3 & isa.MASK64,
                                      a4 & isa.MASK64, a5 & isa.MASK64, depth + 1, left[0])
            return r0

        r0 = self.call_helper(pc, fn, hid, r1, r2, r3, r4, r5, invoke)
        return r0, left[0]

    def call_helper(self, pc: int, fn: Helper, hid: int, r1: int, r2: int, r3: int, r4: int,
                    r5: int, invoke: Callable[..., int] | None = None) -> int:
        """Call helper ``fn`` (id ``hid``) for the instruction at ``pc``; returns the new r0."""
        try:
            ret = fn(self, r1, r2, r3, r4, r5) if invoke is None else fn(self, r1, r2, r3, r4, r5, invoke)
        except EbpfError as e:
            if e.pc is None:
                e.pc = pc
            raise
        except (StopProgram, TailCall):
            raise
        except Exception as e:
            raise HelperError(f"helper {hid} failed: {type(e).__name__}: {e}", pc) from e
        if ret.__class__ is not int:
            if not isinstance(ret, int):
                raise HelperError(f"helper {hid} returned {type(ret).__name__}, not an int", pc)
            ret = int(ret)
        return ret & isa.MASK64

    # --- running ---------------------------------------------------------------------------------
    def context_runner(self, ctx: bytearray) -> Callable[[], int]:
        """A function running the program with ``ctx`` as its (read-only) context, for a caller
        that fills one buffer in place before every run (a probe's ``pt_regs``): the same as
        ``run(ctx)`` without its per-call set-up."""
        region, mem, addr, size = self._ctx_region, self.memory, self.ctx_addr, len(ctx)
        writable, temporary = mem.writable, mem._temporary

        def run() -> int:
            if self._running:
                raise EbpfError(f"program {self.name!r} is already running (re-entered)")
            runner = self._translated
            if runner is None or self.engine != "translate":
                runner = self._engine(self.engine)
            region.buf, region.size = ctx, size
            if region.writable:  # a run() with a writable context was last
                region.writable = False
                writable.pop(region.key, None)
                self._ctx = None
            budget = self.current_budget = self.budget
            self._running = True
            self.last_count = None
            try:
                if runner is self._translated:  # its entry function, without Translated.run's frame
                    r0, left = runner.entry(addr, 0, 0, 0, 0, 0, budget)
                else:
                    r0, left = runner.run(addr, 0, 0, 0, 0, budget)
                self.last_count = budget - left
                return r0
            except StopProgram as stop:
                return stop.value & isa.MASK64
            except TailCall:
                raise
            except Exception as e:
                if runner is self._translated:  # what Translated.run makes of it
                    blamed = runner._blame(e)
                    if isinstance(blamed, EbpfError):
                        raise blamed from (None if isinstance(e, EbpfError) else e)
                elif isinstance(e, EbpfError):
                    raise
                # never let an engine bug escape as a random exception
                raise EbpfError(f"internal error: {type(e).__name__}: {e}") from e
            finally:
                self._running = False
                region.buf, region.size = b"", 0
                if temporary:
                    mem.release_temporary()

        return run

    def run(self, ctx: Buffer | int | None = None, *, ctx_writable: bool = False,
            args: Sequence[int] = (), engine: Engine | None = None,
            budget: int | None = None) -> int:
        """Run the program once and return r0.

        ``ctx``: a buffer mapped for this run (r1 = its address; read-only unless
        ``ctx_writable``), or an integer put in r1 as is.  ``args``: values for r1..r5
        (overriding r1 from ``ctx``).  Raises :class:`EbpfError` on any failure.
        """
        if self._running:
            raise EbpfError(f"program {self.name!r} is already running (re-entered)")
        budget = self.budget if budget is None else budget
        r1 = r2 = r3 = r4 = r5 = 0
        ctx_region = None
        if ctx is not None:
            if ctx.__class__ is int or isinstance(ctx, int):
                r1 = ctx & isa.MASK64  # type: ignore[operator]
            else:
                ctx_region = self._ctx_region
                if ctx is self._ctx and ctx_writable == self._ctx_writable and len(ctx) == self._ctx_len:
                    ctx_region.buf, ctx_region.size = self._ctx_buf, self._ctx_len  # as last run
                    if ctx_writable:
                        self.memory.writable[ctx_region.key] = ctx_region
                else:
                    self.memory.rebind(self.ctx_addr, ctx, ctx_writable)
                    self._ctx, self._ctx_writable, self._ctx_len = ctx, ctx_writable, ctx_region.size
                    self._ctx_buf = ctx_region.buf
                r1 = self.ctx_addr
        if args:
            if len(args) > 5:
                raise EbpfError("at most 5 arguments (r1..r5)")
            regs = [r1, r2, r3, r4, r5]
            for i, v in enumerate(args):
                regs[i] = v & isa.MASK64
            r1, r2, r3, r4, r5 = regs
        runner = self._engine(engine or self.engine)
        self._running = True
        self.current_budget = budget
        self.last_count = None
        try:
            r0, left = runner.run(r1, r2, r3, r4, r5, budget)
            self.last_count = budget - left
            return r0
        except StopProgram as stop:
            return stop.value & isa.MASK64
        except (EbpfError, TailCall):
            raise
        except Exception as e:  # never let an engine bug escape as a random exception
            raise EbpfError(f"internal error: {type(e).__name__}: {e}") from e
        finally:
            self._running = False
            if ctx_region is not None:  # the context is mapped during the run only
                ctx_region.buf, ctx_region.size = b"", 0
                if ctx_writable:
                    self.memory.writable.pop(ctx_region.key, None)
            if self.memory._temporary:
                self.memory.release_temporary()


def load(program: Sequence[Insn] | bytes | str, helpers: Mapping[int, Helper] | None = None,
         **kwargs: Any) -> VM:
    """Shorthand for :class:`VM`."""
    return VM(program, helpers, **kwargs)
