"""User-facing probe objects: kprobes and kretprobes with their counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import Registry
    from .regs import Regs

PreHandler = Callable[["Kprobe", "Regs"], Any]
PostHandler = Callable[["Kprobe", "Regs"], Any]


@dataclass(eq=False)
class Kprobe:
    """A probe on one instruction. ``pre`` returning non-zero means "I moved the PC"."""

    name: str
    addr: int
    symbol: str
    pre: PreHandler | None = None
    post: PostHandler | None = None
    hits: int = 0
    missed: int = 0
    enabled: bool = True
    registry: Registry | None = field(default=None, repr=False)

    def disable(self) -> None:
        self.enabled = False
        if self.registry:
            self.registry.update_arming(self.addr)

    def enable(self) -> None:
        self.enabled = True
        if self.registry:
            self.registry.update_arming(self.addr)

    def unregister(self) -> None:
        if self.registry:
            self.registry.unregister(self)


@dataclass(eq=False)
class Instance:
    """One live kretprobe activation (Linux's ``kretprobe_instance``)."""

    kretprobe: Kretprobe
    ret_addr: int
    return_sp: int  # the stack pointer the function returns with
    data: dict = field(default_factory=dict)


ReturnHandler = Callable[[Instance, "Regs"], Any]


@dataclass(eq=False)
class Kretprobe:
    """A return probe: ``entry`` runs at the call (non-zero skips this return), ``handler`` at return."""

    name: str
    addr: int
    symbol: str
    handler: ReturnHandler | None = None
    entry: ReturnHandler | None = None
    maxactive: int = 10
    hits: int = 0  # returns handled
    missed: int = 0  # activations missed for lack of a free instance
    active: int = 0
    enabled: bool = True
    kprobe: Kprobe | None = field(default=None, repr=False)
    registry: Registry | None = field(default=None, repr=False)
    #: Instances whose function returned, reused by later activations (no allocation per hit).
    free: list[Instance] = field(default_factory=list, repr=False)

    def disable(self) -> None:
        self.enabled = False
        if self.kprobe:
            self.kprobe.disable()

    def enable(self) -> None:
        self.enabled = True
        if self.kprobe:
            self.kprobe.enable()

    def unregister(self) -> None:
        if self.registry:
            self.registry.unregister_kretprobe(self)
