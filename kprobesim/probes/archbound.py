"""What kprobes and uprobes both take from the machine's arch: its decode, simulate, step and
register modules, and the step variant chosen among those its decoder knows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kprobesim.errors import ProbeError

if TYPE_CHECKING:
    from kprobesim.machine import Machine


class ArchBound:
    """Base of the kprobe and uprobe registries: the arch's probe modules and the step variant."""

    def __init__(self, machine: Machine, variant: str | None = None) -> None:
        self.m = machine
        arch = machine.arch
        self.decode: Any = arch.module("decode")
        self.simulate: Any = arch.module("simulate")
        self.step: Any = arch.module("step")
        self.spec: Any = arch.module("regs")
        variants = getattr(self.decode, "VARIANTS", ("break",))
        self.variant = variant or variants[0]
        if self.variant not in variants:
            raise ProbeError(f"{arch.name} has no '{self.variant}' step variant ({', '.join(variants)})")
        # Arches with several step variants decode for one (what is simulated differs).
        self._decode_kw = {"variant": self.variant} if len(variants) > 1 else {}
