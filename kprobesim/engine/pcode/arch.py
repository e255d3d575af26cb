"""What an architecture adds to the generic P-code engine (the :class:`ArchModel` interface)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .codegen import T_EXC, T_IDLE, T_INVALID, T_UNIMPL, BlockEmitter, Insn, POp, Trap

if TYPE_CHECKING:  # pragma: no cover
    from .engine import PcodeEngine


class ArchModel:
    """Per-architecture behaviour: registers, instruction overrides, user-ops, traps, time."""

    name = "?"
    lang = "?"
    nwords = 0  # register-file words
    pc_word = 0
    zero_words: frozenset[int] = frozenset()
    min_insn = 4  # smallest instruction length in bytes (alignment unit of the PC)
    max_insn = 4

    def __init__(self, eng: PcodeEngine) -> None:
        self.eng = eng
        self.sparse: dict[int, int] = {}  # register-space word -> register-file index

    def word(self, w: int) -> int:
        """Register-file index of register-space word ``w`` (words past ``nwords`` are
        allocated on first use at the end of the register file)."""
        if w < self.nwords:
            return w
        i = self.sparse.get(w)
        if i is None:
            i = self.sparse[w] = len(self.eng._R)
            self.eng._R.append(0)
        return i

    # -- registers
    def reg_read(self, rid: int) -> int:
        raise NotImplementedError

    def reg_write(self, rid: int, value: int) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Initial architectural state (after the register file is zeroed)."""

    # -- translation
    def helpers(self) -> dict[str, Any]:
        """Extra names for the generated code's namespace."""
        return {}

    def classify(self, insn: Insn) -> None:
        """Inspect a decoded instruction (mark invalid, record metadata) before compilation."""

    def is_terminator(self, insn: Insn) -> bool:
        return False

    def emit_override(self, em: BlockEmitter, insn: Insn) -> bool:
        """Emit code replacing SLEIGH's semantics for ``insn``; return True if done."""
        return False

    def emit_invalid(self, em: BlockEmitter, insn: Insn) -> None:
        em.trap(T_INVALID)

    def userop(self, em: BlockEmitter, name: str, args: list[str], p: POp) -> str | None:
        em.trap(T_UNIMPL, repr(name))
        return "0"

    def space_load(self, em: BlockEmitter, space: str, addr: str, size: int) -> str:
        em.trap(T_UNIMPL, repr(f"load from space {space}"))
        return "0"

    def space_store(self, em: BlockEmitter, space: str, addr: str, size: int, value: str) -> None:
        em.trap(T_UNIMPL, repr(f"store to space {space}"))

    def indirect_target(self, expr: str) -> str:
        return expr

    def indirect_value(self, v: int) -> int:
        """Tier 0's ``indirect_target``: the PC an indirect branch to ``v`` goes to."""
        return v

    def needs_codegen(self, insn: Insn) -> bool:
        """Does ``emit_override`` emit anything for ``insn`` (so tier 0 must not interpret its
        P-code)? Conservative default: yes."""
        return True

    def tier0_op(self, insn: Insn) -> Any:
        """An ``fn(R, vt) -> next_pc`` tier 0 runs for an instruction that ``needs_codegen``,
        instead of a compiled snippet; None if there is none."""
        return None

    def fetch_check(self, pc: int) -> Trap | None:
        """A trap to raise instead of fetching at ``pc`` (e.g. a misaligned PC), or None."""
        return None

    def va_to_pa(self, va: int) -> int | None:
        """Translate a CPU address that is not mapped as-is (None: no translation)."""
        return None

    def fetch_map(self) -> Any:
        """What decides where an instruction fetch goes and whether it is allowed (compared
        before and after a context restore: blocks are kept by address only). None: not
        known, so a restore drops every translated block."""
        return None

    # -- traps, interrupts, time
    def on_exception(self, t: Trap, ipc: int) -> int | None:
        """A T_EXC trap at ``ipc``: report it / enter it; return the PC to continue or None."""
        raise NotImplementedError

    def on_exception_args(self, a: Any, b: Any, c: Any, idx: int, ipc: int) -> int | None:
        """:meth:`on_exception` for a trap a block returned (no Trap object made)."""
        return self.on_exception(Trap(T_EXC, idx, a, b, c, True), ipc)

    def on_invalid(self, t: Trap, ipc: int) -> int | None:
        raise NotImplementedError

    def on_idle(self, t: Trap, ipc: int) -> int | None:
        raise NotImplementedError

    def on_arch_trap(self, t: Trap, ipc: int) -> int | None:
        raise NotImplementedError

    def direct_registers(self) -> dict[int, int]:
        """Register id -> word of ``R`` for the registers read and written there as plain
        values (the PC and the general registers but the zero one); empty: none."""
        return {}

    def trap_retires(self, kind: int) -> bool:
        """Does an instruction that left its block with a Trap of ``kind`` count as retired
        in virtual time? (icount() counts it as started either way.)"""
        return kind == T_IDLE

    def next_event(self) -> int | None:
        """Virtual time of the next timer expiry, or None."""
        return None

    def tick(self, now: int) -> None:
        """Called when virtual time reached :meth:`next_event`."""

    def irq_pending(self) -> bool:
        """An enabled interrupt is pending and interrupts are globally enabled."""
        return False

    def take_interrupt(self) -> None:
        """Enter the pending interrupt (the PC register holds the interrupted PC)."""

    def save(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        pass
