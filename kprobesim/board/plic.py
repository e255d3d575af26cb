"""RISC-V PLIC (SiFive layout, as on QEMU's ``virt``) for hart 0's M and S contexts.

Sources raise pending bits; each context (0: M-mode, 1: S-mode) sees the highest-priority
enabled pending source above its threshold, claims it (pending cleared, source held until
completed) and completes it. A context with something to claim drives its hart line (MEIP for
M, SEIP for S). A source re-pends when its device raises it again, as QEMU's PLIC does.
"""

from __future__ import annotations

from collections.abc import Callable

SOURCES = 96  # QEMU virt: sources 1..95
CONTEXTS = 2
PENDING, ENABLE, CONTEXT = 0x1000, 0x2000, 0x200000


class Plic:
    """Priorities, pending bits, per-context enables, thresholds and claim/complete."""

    SIZE = 0x600000

    def __init__(self, base: int, lines: tuple[int, ...] = (11, 9)) -> None:
        self.base = base
        self.lines = lines  # mip bit per context
        self.priority = [0] * SOURCES
        self.pending = 0
        self.claimed = 0
        self.enable = [0] * CONTEXTS
        self.threshold = [0] * CONTEXTS
        self._set_line: Callable[[int, bool], None] = lambda bit, level: None

    def attach(self, machine: object) -> None:
        self.machine = machine
        hart = machine.traps.hart  # type: ignore[attr-defined]
        self._set_line = hart.set_line
        machine.engine.mmio_map(self.base, self.SIZE, self._read, None, self._write, None)  # type: ignore[attr-defined]

    # -- device side ---------------------------------------------------------------------------
    def raise_irq(self, source: int) -> None:
        """A device signals ``source`` (it becomes pending unless held by a claim)."""
        if not self.claimed >> source & 1:
            self.pending |= 1 << source
            self._update()

    def lower_irq(self, source: int) -> None:
        if self.pending >> source & 1:
            self.pending &= ~(1 << source)
            self._update()

    # -- state -----------------------------------------------------------------------------
    def _best(self, context: int) -> int:
        best, best_prio = 0, self.threshold[context]
        candidates = self.pending & self.enable[context] & ~self.claimed
        source = 1
        while candidates >> source:
            if candidates >> source & 1 and self.priority[source] > best_prio:
                best, best_prio = source, self.priority[source]
            source += 1
        return best

    def _update(self) -> None:
        for context, bit in enumerate(self.lines):
            self._set_line(1 << bit, self._best(context) != 0)

    def _read(self, uc: object, offset: int, size: int, ud: object) -> int:
        if offset < PENDING:
            return self.priority[offset // 4] if offset // 4 < SOURCES else 0
        if offset < ENABLE:
            word = (offset - PENDING) // 4
            return (self.pending >> (32 * word)) & 0xFFFFFFFF
        if offset < CONTEXT:
            context, byte = divmod(offset - ENABLE, 0x80)
            return (self.enable[context] >> (8 * byte)) & 0xFFFFFFFF if context < CONTEXTS else 0
        context, reg = divmod(offset - CONTEXT, 0x1000)
        if context >= CONTEXTS:
            return 0
        if reg == 0:
            return self.threshold[context]
        if reg == 4:  # claim
            source = self._best(context)
            if source:
                self.pending &= ~(1 << source)
                self.claimed |= 1 << source
                self._update()
            return source
        return 0

    def _write(self, uc: object, offset: int, size: int, value: int, ud: object) -> None:
        value &= 0xFFFFFFFF
        if offset < PENDING:
            if 0 < offset // 4 < SOURCES:
                self.priority[offset // 4] = value & 7
        elif ENABLE <= offset < CONTEXT:
            context, byte = divmod(offset - ENABLE, 0x80)
            if context < CONTEXTS and byte < SOURCES // 8:
                shift = 8 * byte
                mask = 0xFFFFFFFF << shift
                self.enable[context] = (self.enable[context] & ~mask) | ((value << shift) & mask) & ~1
        elif offset >= CONTEXT:
            context, reg = divmod(offset - CONTEXT, 0x1000)
            if context >= CONTEXTS:
                return
            if reg == 0:
                self.threshold[context] = value & 7
            elif reg == 4 and value < SOURCES:  # complete
                self.claimed &= ~(1 << value)
        self._update()
