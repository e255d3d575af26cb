"""The running task as the guest kernel describes it (used by traces and eBPF helpers).

A kernel that exports ``current_task`` (a pointer to its running task) with the layout of
the bundled firmware — ``u32 pid`` at 0, ``u32 tgid`` at 4, ``char comm[16]`` at 8 — gets
real pids and names in traces. A guest OS module may instead give the machine a
``task_source`` (Linux: :func:`kprobesim.guest.current.linux_current`, from ``current`` and the
kernel's BTF). Other images show pid 0 and comm ``<...>`` as ftrace does for unknown tasks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import UcError

if TYPE_CHECKING:
    from .machine import Machine

CURRENT_SYMBOL = "current_task"


@dataclass(frozen=True)
class Task:
    """pid, tgid and comm of a guest task (``addr`` 0 when the kernel does not say)."""

    pid: int
    tgid: int
    comm: str
    addr: int = 0


UNKNOWN = Task(0, 0, "<...>")
_U64 = struct.Struct("<Q").unpack
_U32X2 = struct.Struct("<II").unpack


def current_ids(machine: Machine) -> tuple[int, int, int]:
    """``(task address, pid, tgid)`` of the running task, ``(0, 0, 0)`` when the kernel does
    not say: two guest reads on the firmware (the eBPF pid helpers and uprobes ask on every hit)."""
    source = getattr(machine, "task_source", None)
    if source is not None:
        t = source(machine)
        return t.addr, t.pid, t.tgid
    sym = machine.image.find_symbol(CURRENT_SYMBOL)
    if sym is None:
        return 0, 0, 0
    read = machine.read
    try:
        (ptr,) = _U64(read(sym.addr, 8))
        if not ptr:
            return 0, 0, 0
        pid, tgid = _U32X2(read(ptr, 8))
    except UcError:
        return 0, 0, 0
    return ptr, pid, tgid


def current_task(machine: Machine) -> Task:
    """The task the guest kernel is running now."""
    source = getattr(machine, "task_source", None)
    if source is not None:
        return source(machine)
    ptr, pid, tgid = current_ids(machine)
    if not ptr:
        return UNKNOWN
    try:
        comm = machine.read(ptr + 8, 16).split(b"\0", 1)[0].decode("ascii", "replace")
    except UcError:
        return UNKNOWN
    return Task(pid, tgid, comm, ptr)
