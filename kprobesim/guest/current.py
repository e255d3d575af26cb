"""Linux's ``current``: pid, tgid and comm of the running task, read from its ``task_struct``.

Where ``current`` is comes from the arch (``kprobesim.arch.<name>.linux.current_pointer``:
riscv64 ``tp``/``sscratch``); the offsets of ``pid``, ``tgid`` and ``comm`` come from the
kernel's own BTF (:attr:`Machine.btf`), so no kernel version's layout is built in. A kernel
without BTF, or a moment with no task (early boot), shows ftrace's unknown task ``<...>``.
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unicorn import UcError

from ..ebpf.btf import BTF_KIND_STRUCT, BtfError
from ..task import UNKNOWN, Task

if TYPE_CHECKING:
    from ..machine import Machine

COMM_LEN = 16  # TASK_COMM_LEN


@dataclass(frozen=True)
class TaskLayout:
    """Byte offsets of the ``task_struct`` fields a trace needs."""

    pid: int
    tgid: int
    comm: int


_layouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per BTF object, found once


def task_layout(machine: Machine) -> TaskLayout | None:
    """The layout from the machine's kernel BTF, or None when it has none or no such fields."""
    btf = machine.btf
    if btf is None:
        return None
    key = btf
    if key not in _layouts:
        try:
            tid = btf.find("task_struct", BTF_KIND_STRUCT)
            if tid is None:
                raise BtfError("no struct task_struct")
            offsets = [btf.member(tid, name).bit_offset // 8 for name in ("pid", "tgid", "comm")]
            _layouts[key] = TaskLayout(*offsets)
        except BtfError:
            _layouts[key] = None
    return _layouts[key]


def linux_current(machine: Machine) -> Task:
    """The running task as Linux describes it (:data:`~kprobesim.task.UNKNOWN` if it cannot say)."""
    layout = task_layout(machine)
    if layout is None:
        return UNKNOWN
    ptr = machine.arch.module("linux").current_pointer(machine)
    if not ptr:
        return UNKNOWN
    try:
        (pid,) = struct.unpack("<i", machine.read(ptr + layout.pid, 4))
        (tgid,) = struct.unpack("<i", machine.read(ptr + layout.tgid, 4))
        comm = machine.read(ptr + layout.comm, COMM_LEN).split(b"\0", 1)[0].decode("ascii", "replace")
    except UcError:
        return UNKNOWN
    return Task(pid, tgid, comm, ptr)
