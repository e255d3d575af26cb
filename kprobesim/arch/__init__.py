"""Per-architecture packages (installed from the top-level ``arch/`` folder).

The core never branches on an architecture name: it looks up an :class:`Arch` here and goes
through it for the engine, the board, trap delivery and the kprobe instruction layer.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..board import Device
    from ..machine import Machine

# In a source tree the arch packages live in the top-level ``arch/`` folder, beside this package:
# put it on this package's path so the bare tree (and any worktree of it) imports its own arch code
# before an installed copy's.
_SOURCE_ARCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "arch")
if os.path.isfile(os.path.join(_SOURCE_ARCH, "riscv64", "__init__.py")):
    __path__.insert(0, _SOURCE_ARCH)  # noqa: F821 (a package's __path__)

ARCH_NAMES = ("riscv64", "loongarch64", "x86_64")


@dataclass(frozen=True)
class Arch:
    """Everything the core needs to know about one architecture."""

    name: str
    ram: tuple[int, int]  # base, size
    sim_base: int  # simulator-owned pages (probe slots, trampolines), outside RAM
    new_engine: Callable[[], Any]
    devices: Callable[[], Sequence[Device]]
    traps: Callable[[Machine], Any]
    pc_reg: int
    sp_reg: int
    dump_regs: Sequence[tuple[str, int]]
    until: int  # an address emu_start is never expected to reach
    default_base: int  # where a raw image of the bundled firmware loads
    # The simulator's own guest code reads and writes its pages as data (x86's former ring-3
    # trampoline and shadow GDT; no arch does now); otherwise the guest may only execute them.
    sim_data: bool = False

    def module(self, part: str) -> Any:
        """The arch's ``decode``, ``simulate``, ``step`` or ``regs`` module."""
        name = f"kprobesim.arch.{self.name}.{part}"
        return sys.modules.get(name) or importlib.import_module(name)  # asked for at every registry


def get_arch(name: str) -> Arch:
    """The :class:`Arch` called ``name`` (UsageError naming the choices otherwise)."""
    if name not in ARCH_NAMES:
        raise UsageError(f"unknown architecture '{name}' (choose from {', '.join(ARCH_NAMES)})")
    return importlib.import_module(f"kprobesim.arch.{name}").ARCH
