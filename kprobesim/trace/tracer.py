"""Attach kprobe_events specs to a machine and emit one ftrace-style line (or JSON) per hit."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kprobesim.task import current_task

from . import fetch
from .spec import ProbeSpec, parse

if TYPE_CHECKING:
    from kprobesim.machine import Machine
    from kprobesim.probes.kprobe import Instance, Kprobe, Kretprobe
    from kprobesim.probes.regs import Regs

DEFAULT_MAXACTIVE = 10  # Linux: max(10, 2 * NR_CPUS) on a uniprocessor


@dataclass
class Event:
    """One probe hit as recorded by the tracer."""

    ts: int  # virtual nanoseconds (one per retired instruction)
    event: str
    kind: str
    location: str
    args: dict[str, int | str]
    pid: int
    comm: str
    user: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ts_ns": self.ts,
            "cpu": 0,
            "pid": self.pid,
            "comm": self.comm,
            "event": self.event,
            "type": ("u" if self.user else "k") + ("retprobe" if self.kind == "r" else "probe"),
            "location": self.location,
            "args": self.args,
        }


@dataclass
class Tracer:
    """The probes of a command line, their events, and their output."""

    machine: Machine
    out: Callable[[str], None] | None = None
    fmt: str = "text"
    events: list[Event] = field(default_factory=list)
    probes: list[tuple[ProbeSpec, Kprobe | Kretprobe]] = field(default_factory=list)

    def add(self, text: str) -> Kprobe | Kretprobe:
        """Parse and place one ``-p`` spec."""
        spec = parse(text)
        for fa in spec.args:
            fetch.check(fa, self.machine)
        if spec.user:
            probe: Kprobe | Kretprobe
            if spec.is_return:
                probe = self.machine.uretprobe(
                    spec.target, lambda inst, regs, spec=spec: self._on_return(spec, inst, regs), name=spec.event
                )
            else:
                probe = self.machine.uprobe(
                    spec.target, lambda p, regs, spec=spec: self._on_hit(spec, p, regs), name=spec.event
                )
        elif spec.is_return:
            probe = self.machine.kretprobe(
                spec.target,
                handler=lambda inst, regs, spec=spec: self._on_return(spec, inst, regs),
                maxactive=spec.maxactive if spec.maxactive is not None else DEFAULT_MAXACTIVE,
                name=spec.event,
            )
        else:
            probe = self.machine.kprobe(
                spec.target, pre=lambda p, regs, spec=spec: self._on_hit(spec, p, regs), name=spec.event
            )
        self.probes.append((spec, probe))
        return probe

    def _location(self, addr: int) -> str:
        found = self.machine.image.lookup(addr)
        if found is None:
            return f"{addr:#x}"
        sym, off = found
        return f"{sym.name}+{off:#x}/{sym.size:#x}"

    def _record(self, spec: ProbeSpec, location: str, regs: Regs) -> None:
        args = {fa.name: fetch.fetch(fa, regs, self.machine) for fa in spec.args}
        task = current_task(self.machine)
        ev = Event(self.machine.now(), spec.event, spec.kind, location, args, task.pid, task.comm, spec.user)
        self.events.append(ev)
        if self.out is not None:
            self.out(self.format(ev, spec))
        else:
            self.machine.trace_line(self.format(ev, spec))

    def _on_hit(self, spec: ProbeSpec, probe: Kprobe, regs: Regs) -> int:
        # uprobes print the user address, as Linux's uprobe events do
        self._record(spec, f"{probe.addr:#x}" if spec.user else self._location(probe.addr), regs)
        return 0

    def _on_return(self, spec: ProbeSpec, inst: Instance, regs: Regs) -> None:
        if spec.user:  # Linux's uretprobe event: (return address <- function)
            self._record(spec, f"{inst.ret_addr:#x} <- {inst.kretprobe.addr:#x}", regs)
            return
        caller = self._location(inst.ret_addr)
        self._record(spec, f"{caller} <- {inst.kretprobe.symbol}", regs)

    def format(self, ev: Event, spec: ProbeSpec) -> str:
        """ftrace's line (``comm-pid [cpu] flags ts: event: (where) args``) or NDJSON."""
        if self.fmt == "json":
            return json.dumps(ev.as_dict(), sort_keys=True)
        secs, usecs = divmod(ev.ts // 1000, 1_000_000)
        args = "".join(f" {fa.name}={fetch.render(fa, ev.args[fa.name])}" for fa in spec.args)
        task = f"{ev.comm}-{ev.pid}"
        return f"{task:>22} [000] d.... {secs:5d}.{usecs:06d}: {ev.event}: ({ev.location}){args}"

    def stats(self) -> list[str]:
        """Hits and misses per probe, like ``kprobe_profile``."""
        return [f"  {spec.event:<40} {probe.hits:>15} {probe.missed:>15}" for spec, probe in self.probes]
