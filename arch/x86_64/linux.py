"""What Linux keeps in x86_64 registers: where ``current`` (the running ``task_struct``) is.

Linux 6.1 keeps ``current`` in the per-CPU variable ``current_task``, read through ``%gs``:
kallsyms gives its per-CPU offset (an absolute symbol, CONFIG_KALLSYMS_ABSOLUTE_PERCPU) and
the GS base MSR the CPU's per-CPU area. In kernel mode GS_BASE holds it; in user mode the
kernel's value waits in KERNEL_GS_BASE (``swapgs`` exchanges them on every entry and exit).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from unicorn import x86_const as xc

if TYPE_CHECKING:
    from kprobesim.machine import Machine

MSR_GS_BASE, MSR_KERNEL_GS_BASE = 0xC0000101, 0xC0000102


def current_pointer(machine: Machine) -> int:
    """The address of the running task's ``task_struct`` (0 before the kernel has one)."""
    image = machine.image
    if not image.has_symbol("current_task"):
        return 0
    engine = machine.engine
    user = engine.reg_read(xc.UC_X86_REG_CS) & 3
    base = engine.msr_read(MSR_KERNEL_GS_BASE if user else MSR_GS_BASE)
    if not base:
        return 0
    return struct.unpack("<Q", machine.read(base + image.symbol("current_task").addr, 8))[0]
