"""What ``opensnoop.c``'s maps must hold after init's run, from the guest's own evidence: the
files init and its child say they opened (their console lines), the child's pid (the kernel's
return value of ``kernel_clone`` in init, from a kretprobe) and ``open_how``'s flags (a kprobe
fetcharg reading the struct by hand). Shared by the riscv64 ``virt`` and x86_64 ``pc`` tests."""

from __future__ import annotations

import re
import struct

from kprobesim.ebpf.loader import LoadedObject
from kprobesim.trace.tracer import Tracer

SEEN = struct.Struct("<QQIIQ16s16s")  # struct open_seen
CLONE = "r:clone kernel_clone ret=$retval:s64"  # the tracer probes the check needs
OPEN_FLAGS = "p:op do_sys_openat2 flags=+0($arg3):x64"


def name(key: bytes) -> str:
    return key.split(b"\0", 1)[0].decode()


def child_pid(tracer: Tracer) -> int:
    """The pid kernel_clone returned to init (its fork of the child)."""
    return next(int(e.args["ret"]) for e in tracer.events if e.event == "clone" and e.comm == "init")


def check_opensnoop(obj: LoadedObject, tracer: Tracer, console: str) -> None:
    """Assert that ``obj`` counted exactly the files init and its child opened, each with the
    last opener's pid, tgid and comm (helpers and CO-RE reads of ``task_struct`` agreeing) and
    ``open_how``'s flags; and every kernel copy of a name (``struct filename``), the exec's too."""
    said = re.findall(r"^kpsim-(init|child): (?:read|open) (/\S+):", console, re.M)
    assert len(said) == 6, said  # init's four files, the child's one, then init's own /init
    opened: dict[str, list[str]] = {}
    for who, path in said:
        opened.setdefault(path, []).append(who)
    assert "kpsim-init: fork and exec /bin/child" in console
    child = child_pid(tracer)
    flags = {int(e.args["flags"]) for e in tracer.events if e.event == "op"}
    assert len(flags) == 1

    opens = {name(k): SEEN.unpack(bytes(v)) for k, v in obj.maps["opens"].items()}
    assert {path: seen[0] for path, seen in opens.items()} == {path: len(who) for path, who in opened.items()}
    for path, (_, pid_tgid, core_pid, core_tgid, how_flags, comm, core_comm) in opens.items():
        pid = 1 if opened[path][-1] == "init" else child  # the map keeps the last opener
        assert (pid_tgid >> 32, pid_tgid & 0xFFFFFFFF) == (pid, pid) == (core_tgid, core_pid), path
        assert name(comm) == name(core_comm) == opened[path][-1], path
        assert {how_flags} == flags, path

    filps = {name(k): int.from_bytes(v, "little") for k, v in obj.maps["filps"].items()}
    assert filps == {**{path: len(who) for path, who in opened.items()}, "/bin/child": 1}
    assert [p.hits for p in obj.programs.values()] == [6, 7]
