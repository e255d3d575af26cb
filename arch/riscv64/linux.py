"""What Linux keeps in riscv64 registers: where ``current`` (the running ``task_struct``) is.

In the kernel ``tp`` holds ``current`` (``arch/riscv/include/asm/current.h``). While the hart is
in user mode ``tp`` is the program's thread pointer and the kernel's ``tp`` waits in
``sscratch`` (``entry.S`` swaps them on every trap from user mode and stores it back on the
way out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unicorn.riscv_const import UC_RISCV_REG_SSCRATCH, UC_RISCV_REG_TP

if TYPE_CHECKING:
    from kprobesim.machine import Machine


def current_pointer(machine: Machine) -> int:
    """The address of the running task's ``task_struct`` (0 before the kernel has one)."""
    engine = machine.engine
    with machine.traps.machine_mode() as priv:
        return engine.reg_read(UC_RISCV_REG_SSCRATCH if priv == 0 else UC_RISCV_REG_TP)
