"""What kprobes and uprobes both take from the machine's arch: its decode, simulate, step and
register modules, and the step variant chosen among those its decoder knows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kprobesim.errors import ProbeError

from .insn import Decision

if TYPE_CHECKING:
    from kprobesim.machine import Machine

#: The decoder's verdicts by (decode function, variant, address, bytes from the address on): a
#: registry is made afresh after every restore, and fuzzers classify an instruction before
#: probing it; decoding is a pure function of these. Emptied when full.
_DECISIONS: dict[tuple[Any, str, int, bytes], Decision] = {}
DECISIONS_MAX = 1 << 16


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

    def decide(self, code: bytes, addr: int) -> Decision:
        """The arch decoder's verdict on the instruction at the start of ``code``, at ``addr``
        (decoded once for the same bytes at the same address; DecodeError as the decoder's)."""
        decode = self.decode.decode
        key = (decode, self.variant, addr, bytes(code))
        found = _DECISIONS.get(key)
        if found is None:
            found = decode(code, addr, **self._decode_kw)
            if len(_DECISIONS) >= DECISIONS_MAX:
                _DECISIONS.clear()
            _DECISIONS[key] = found
        return found
