"""What eBPF programs print: trace lines during the run and the maps at exit.

Trace stream (``machine.trace_line``), in the order the programs produce it:

- ``bpf_trace_printk``: ftrace's line ``<comm>-<pid> [000] d.... <ts>: bpf_trace_printk: <msg>``
  (one trailing newline of the message is dropped, as ``trace_pipe`` shows it);
- ring buffer and perf event records, when they become visible to a consumer (submit/output):
  ``... <ts>: bpf_ringbuf: <map>: <hex>`` (``bpf_perf_output`` for perf event arrays), the
  bytes as little-endian 4-byte groups, followed by `` | struct NAME {field=value, ...}`` when the
  record can be decoded with BTF. **Record rule**: a record is decoded as the object's struct
  type whose size equals the record's length, ignoring the kernel types of the bundled
  ``vmlinux.h`` (``pt_regs``, ``user_regs_struct``, ``user_pt_regs``, ``task``); if no struct
  or more than one has that size, the record is printed as hex only;
- a program's first run-time fault: ``bpf: <prog>: <error>``.

With ``fmt="json"`` each of these is one JSON object per line instead.

Maps at exit (:func:`format_maps`), in the object's order, each as ``@<name>:`` followed by its
entries and a blank line; ring buffers, perf event arrays and ``.rodata*`` are not printed:

- **Histogram rule**: a map whose name contains ``hist`` (any case), with 4- or 8-byte keys and
  8-byte values, is a log2 histogram keyed by bucket (bucket 0 counts 0, bucket ``k`` counts
  ``[2**(k-1), 2**k)``, per-CPU values summed), printed in bpftrace's layout;
- stack trace maps: ``@<name>[<stack id>]:`` then one symbolised frame (``sym+0xoff``) per line;
- ``.data``/``.bss``: one line with every variable, BTF-decoded;
- other maps (hash, array, per-CPU, LRU): ``key: value`` lines, BTF-decoded where the map has
  key/value types (a ``char[16]`` key prints as a string), else integers (1/2/4/8 bytes) or hex;
  sorted by key; array elements that are all zero are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kprobesim.task import Task, current_task

from .btf import BTF_KIND_STRUCT, Btf
from .histogram import bucket_label, format_bytes, format_log2_hist, format_map, log2_hist_counts
from .maps import (
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BpfMap,
    PerfEventArrayMap,
    RingBufMap,
    StackTraceMap,
)

if TYPE_CHECKING:
    from kprobesim.machine import Machine

#: Types of the shipped vmlinux.h that never describe a record.
KERNEL_TYPES = frozenset({"pt_regs", "user_regs_struct", "user_pt_regs", "task"})


@dataclass(frozen=True)
class Record:
    """One ring buffer / perf event record as it reached the trace stream."""

    ts: int
    kind: str  # bpf_ringbuf / bpf_perf_output
    map_name: str
    data: bytes
    decoded: str | None
    pid: int
    comm: str


def record_type(btf: Btf | None, size: int) -> int | None:
    """The BTF struct a record of ``size`` bytes is decoded as (see the module's record rule)."""
    if btf is None:
        return None
    found: dict[str, int] = {}
    for t in btf.types[1:]:
        if t.kind == BTF_KIND_STRUCT and t.name and t.size == size and t.name not in KERNEL_TYPES:
            found.setdefault(t.name, t.id)
    return next(iter(found.values())) if len(found) == 1 else None


def hex_words(data: bytes) -> str:
    """Bytes in order, in groups of four (``02000000 6b776f72``)."""
    return data.hex(" ", -4) if data else "(empty)"


class TraceOutput:
    """Formats the trace lines of one loaded object and sends them to ``machine.trace_line``."""

    def __init__(self, machine: Machine, btf: Btf | None = None, fmt: str = "text") -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown output format {fmt!r}")
        self.m = machine
        self.btf = btf
        self.fmt = fmt
        self.records: list[Record] = []
        self._types: dict[int, int | None] = {}

    def _line(self, event: str, text: str, fields: dict[str, Any], task: Task | None = None) -> None:
        ts = self.m.now()
        task = task or current_task(self.m)
        if self.fmt == "json":
            rec = {"ts_ns": ts, "cpu": 0, "pid": task.pid, "comm": task.comm, "event": event, "type": "bpf", **fields}
            self.m.trace_line(json.dumps(rec, sort_keys=True))
            return
        secs, usecs = divmod(ts // 1000, 1_000_000)
        who = f"{task.comm}-{task.pid}"
        self.m.trace_line(f"{who:>22} [000] d.... {secs:5d}.{usecs:06d}: {event}: {text}")

    def printk(self, msg: str) -> None:
        if msg.endswith("\n"):
            msg = msg[:-1]
        self._line("bpf_trace_printk", msg, {"msg": msg})

    def decode(self, data: bytes) -> str | None:
        """BTF rendering of a record (``struct NAME {...}``), or None."""
        n = len(data)
        if n not in self._types:
            self._types[n] = record_type(self.btf, n)
        tid = self._types[n]
        if tid is None or self.btf is None:
            return None
        return f"{self.btf.type_name(tid)} {self.btf.format_value(tid, data)}"

    def record(self, kind: str, m: BpfMap, data: bytes) -> None:
        decoded = self.decode(data)
        task = current_task(self.m)
        self.records.append(Record(self.m.now(), kind, m.name, bytes(data), decoded, task.pid, task.comm))
        text = f"{m.name}: {hex_words(data)}" + (f" | {decoded}" if decoded else "")
        fields: dict[str, Any] = {"map": m.name, "data": data.hex()}
        if decoded:
            fields["value"] = decoded
        self._line(kind, text, fields, task)

    def fault(self, prog: str, error: str) -> None:
        """A program's first run-time fault."""
        if self.fmt == "json":
            self.m.trace_line(
                json.dumps({"event": "bpf_error", "prog": prog, "error": error, "ts_ns": self.m.now()}, sort_keys=True)
            )
        else:
            self.m.trace_line(f"bpf: {prog}: {error}")


# ----------------------------------------------------------------------------------------------
# maps at exit
# ----------------------------------------------------------------------------------------------


def is_histogram(m: BpfMap) -> bool:
    """The histogram rule (see the module docstring)."""
    return (
        "hist" in m.name.lower()
        and m.key_size in (4, 8)
        and m.value_size == 8
        and not isinstance(m, (RingBufMap, PerfEventArrayMap, StackTraceMap))
    )


def printable(m: BpfMap) -> bool:
    """Maps printed at exit: not output channels, not read-only data."""
    from .maps_extra import BloomFilterMap  # its bits tell nothing readable

    return not isinstance(m, (RingBufMap, PerfEventArrayMap, BloomFilterMap)) and not m.name.startswith(".rodata")


def _is_data(m: BpfMap) -> bool:
    return m.name.startswith((".data", ".bss"))


def _frames(m: StackTraceMap, sid: int, machine: Machine | None) -> list[str]:
    out = []
    for ip in m.stack(sid) or []:
        out.append(machine.image.describe(ip) if machine is not None else f"{ip:#x}")
    return out


def format_one(m: BpfMap, machine: Machine | None = None) -> str:
    """One map in the exit layout (text)."""
    title = f"@{m.name}"
    if is_histogram(m):
        text = format_log2_hist(log2_hist_counts(m), title)
    elif isinstance(m, StackTraceMap):
        lines = []
        for k in m.keys():
            sid = int.from_bytes(k, "little")
            lines.append(f"{title}[{sid}]:")
            lines += [f"    {f}" for f in _frames(m, sid, machine)]
        text = "\n".join(lines or [f"{title}:"]) + "\n"
    elif _is_data(m):
        value = m.lookup(b"\0\0\0\0")
        text = f"{title}: {format_bytes(bytes(value or b''), m.btf, m.btf_value_type_id)}\n"
    else:
        arrays = (BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY)
        text = format_map(m, title, sort="key", skip_zero=m.map_type in arrays)
    return text + "\n"


def map_json(m: BpfMap, machine: Machine | None = None) -> dict[str, Any]:
    """One map as a JSON-able dict (``--format json``)."""
    out: dict[str, Any] = {"map": m.name, "type": m.type_name}
    if is_histogram(m):
        counts = log2_hist_counts(m)
        out["hist"] = [{"bucket": bucket_label(b), "count": c} for b, c in sorted(counts.items())]
    elif _is_data(m):
        out["value"] = format_bytes(bytes(m.lookup(b"\0\0\0\0") or b""), m.btf, m.btf_value_type_id)
    elif isinstance(m, StackTraceMap):
        out["stacks"] = {
            str(int.from_bytes(k, "little")): _frames(m, int.from_bytes(k, "little"), machine) for k in m.keys()
        }
    else:
        entries = []
        arrays = (BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY)
        for k, v in m.nonzero_items() if m.map_type in arrays else m.items():
            vals = v if isinstance(v, list) else [v]
            value = [format_bytes(x, m.btf, m.btf_value_type_id) for x in vals]
            entries.append(
                {"key": format_bytes(k, m.btf, m.btf_key_type_id), "value": value if isinstance(v, list) else value[0]}
            )
        out["entries"] = entries
    return out


def format_maps(maps: dict[str, BpfMap], machine: Machine | None = None, fmt: str = "text") -> str:
    """Every printable map (see the module docstring); ``fmt`` ``text`` or ``json``."""
    shown = [m for m in maps.values() if printable(m)]
    if fmt == "json":
        return "".join(json.dumps(map_json(m, machine), sort_keys=True) + "\n" for m in shown)
    return "".join(format_one(m, machine) for m in shown)
