"""The arch-comparison matrix: the same probes on every arch's kernel, side by side.

For each probe: hits, misses, and the sequence of fetched values per argument in each task's
program order (shown in full when short, as a digest otherwise), with whether every arch agrees. The console transcript
(without its ``arch:`` lines) and the exit status are compared too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .arch import ARCH_NAMES, get_arch
from .errors import ImageError
from .image import Image
from .machine import Machine
from .trace.tracer import Tracer

SHOW_VALUES = 4  # longer value sequences are shown as a digest


def bundled_kernel(arch: str, hint: str = "") -> Path:
    """The project's kernel for ``arch``: ./firmware, else the checkout this package runs from.
    ``hint`` says how the calling command takes another image (compare's ``--image`` by default)."""
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        path = root / "firmware" / arch / "kernel.elf"
        if path.is_file():
            return path
    raise ImageError(f"no bundled kernel for {arch} ({hint or f'pass --image {arch}=PATH'})")


@dataclass
class Row:
    """One compared quantity: its value per arch and whether they agree."""

    probe: str
    what: str
    values: dict[str, object]
    ignored: bool = False  # shown, but not part of the verdict (e.g. scheduling-dependent counts)

    @property
    def agree(self) -> bool:
        vals = [json.dumps(v, sort_keys=True) for v in self.values.values()]
        return len(set(vals)) <= 1


@dataclass
class Comparison:
    arches: list[str]
    rows: list[Row] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return all(r.agree or r.ignored for r in self.rows)

    def as_dict(self) -> dict:
        return {
            "arches": self.arches,
            "agree": self.agree,
            "rows": [
                {"probe": r.probe, "what": r.what, "values": r.values, "agree": r.agree, "ignored": r.ignored}
                for r in self.rows
            ],
        }


def _digest(values: list) -> object:
    if len(values) <= SHOW_VALUES:
        return values
    blob = json.dumps(values, sort_keys=True).encode()
    return f"{len(values)} values #{hashlib.sha256(blob).hexdigest()[:10]}"


def _digest_tasks(per_task: dict[str, list]) -> object:
    """Per-task value sequences, in full when short."""
    if sum(len(v) for v in per_task.values()) <= SHOW_VALUES:
        return {task: per_task[task] for task in sorted(per_task)}
    blob = json.dumps(per_task, sort_keys=True).encode()
    total = sum(len(v) for v in per_task.values())
    return f"{total}@{len(per_task)} tasks #{hashlib.sha256(blob).hexdigest()[:10]}"


_KERNEL_LOG = re.compile(r"^\[\s*\d+\.\d+\] ")


def _transcript(console: str, user_only: bool = False) -> str:
    """The console without its ``arch:`` lines; ``user_only`` (a Linux guest): only what user
    space printed, without the kernel's log lines (timestamped, different on every arch)."""
    lines = console.replace("\r\n", "\n").splitlines(keepends=True)
    if user_only:
        return "".join(line for line in lines if not _KERNEL_LOG.match(line) and line.strip())
    return "".join(line for line in lines if not line.startswith("arch:"))


def compare(
    specs: list[str],
    arches: list[str] | None = None,
    images: dict[str, str] | None = None,
    max_insns: int | None = None,
    timeout: float | None = None,
    ignore: list[str] | None = None,
    machines: dict[str, Callable[[], Machine]] | None = None,
) -> Comparison:
    """Run ``specs`` on each arch's kernel and collect the comparison rows.

    ``ignore`` names rows (``EVENT`` or ``EVENT.FIELD``) shown but left out of the verdict.
    ``machines``: per arch, a function returning the machine to run instead of the bundled
    kernel (a booted Linux guest, e.g. back at a snapshot where its ``/init`` starts); its
    transcript row compares only what user space printed from there.
    """
    machines = machines or {}
    arches = list(arches or machines or ARCH_NAMES)
    images = images or {}
    runs: dict[str, tuple[Machine, Tracer, int]] = {}
    before: dict[str, int] = {}  # console already printed by a given machine (e.g. its boot)
    for arch in arches:
        if arch in machines:
            m = machines[arch]()
            before[arch] = len(m.console)
        else:
            m = Machine(get_arch(arch), Image.load(images.get(arch) or bundled_kernel(arch), arch=arch))
        tracer = Tracer(m)
        for spec in specs:
            tracer.add(spec)
        status = m.run(max_insns=max_insns, timeout=timeout)
        runs[arch] = (m, tracer, status)
    result = Comparison(arches)
    result.rows.append(Row("(kernel)", "exit status", {a: runs[a][2] for a in arches}))
    result.rows.append(
        Row("(kernel)", "transcript",
            {a: _digest(_transcript(runs[a][0].console[before.get(a, 0):], a in machines).splitlines())
             for a in arches})
    )
    first = runs[arches[0]][1]
    for i, (spec, _) in enumerate(first.probes):
        per_arch = {a: runs[a][1].probes[i][1] for a in arches}
        result.rows.append(Row(spec.event, "hits", {a: p.hits for a, p in per_arch.items()}))
        result.rows.append(Row(spec.event, "missed", {a: p.missed for a, p in per_arch.items()}))
        for fa in spec.args:
            # In order within each task: tasks interleave differently on each arch (the timer
            # preempts them after different instruction counts), program order does not.
            values = {}
            for a in arches:
                per_task: dict[str, list] = {}
                for e in runs[a][1].events:
                    if e.event == spec.event:
                        per_task.setdefault(e.comm, []).append(e.args[fa.name])
                values[a] = _digest_tasks(per_task)
            result.rows.append(Row(spec.event, fa.name, values))
    skip = set(ignore or ())
    for r in result.rows:
        r.ignored = r.probe in skip or f"{r.probe}.{r.what}" in skip
    return result


def render(result: Comparison) -> str:
    """The side-by-side table."""
    width = 26
    head = f"{'probe':<14}{'':<12}" + "".join(f"{a:<{width}}" for a in result.arches) + "agree"
    lines = [head, "-" * len(head)]
    for r in result.rows:
        cells = "".join(f"{_cell(r.values[a]):<{width}}" for a in result.arches)
        verdict = "yes" if r.agree else "ignored" if r.ignored else "NO"
        lines.append(f"{r.probe:<14}{r.what:<12}{cells}{verdict}")
    lines.append(f"all arches agree: {'yes' if result.agree else 'NO'}")
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) < 25 else text[:22] + "..."
