"""``kprobesim verify``: the load-time verdict on each program of an object, without a run.

Each kprobe/kretprobe program goes through the static checks (:mod:`.verifier`) and the verifier
by abstract interpretation (:mod:`.absint`) as the loader runs them: the target's ``struct
pt_regs`` and alignment rules come from the arch, CO-RE relocations and ``__ksym`` externs from
the kernel image when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import absint, isa, tracing, userspace
from .elf import ObjectError, load_object
from .errors import EbpfError
from .helper_protos import PROTOS
from .loader import SUPPORTED, BpfError, map_infos
from .verifier import verify

if TYPE_CHECKING:
    from kprobesim.machine import Machine


@dataclass
class Verdict:
    """One program's verdict: ``error`` is None when it is accepted."""

    name: str
    section: str
    error: str | None = None
    processed: int = 0
    states: int = 0
    log: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.error is not None:
            return f"{self.name} ({self.section}): refused: {self.error}"
        return f"{self.name} ({self.section}): accepted ({self.processed} insns processed, {self.states} states)"


def check_object(path: str | Path, arch: str, machine: Machine | None = None, log: bool = False) -> list[Verdict]:
    """The verdict on every kprobe program of ``path`` for ``arch`` (``machine``: the kernel whose
    BTF and symbols resolve CO-RE relocations and ``__ksym`` externs)."""
    from kprobesim.arch import get_arch

    regs = get_arch(arch).module("regs")
    try:
        obj = load_object(path, machine.btf if machine is not None else None)
    except ObjectError as e:
        raise BpfError(str(e)) from None
    try:
        infos = map_infos(obj.create_maps(1))
    except ValueError as e:
        raise BpfError(f"{path}: {e}") from None
    out = []
    for spec in obj.programs:
        if spec.prog_type not in SUPPORTED:
            continue
        v = Verdict(spec.name, spec.section)
        insns = isa.decode(spec.insns)
        try:
            for pc, ksym in spec.ksym_refs:
                addr = userspace.ksym_address(obj, machine, ksym) if machine is not None else 0
                insns[pc], insns[pc + 1] = isa.lddw(insns[pc].dst, addr)
            kernel_btf = machine.btf if machine is not None else None
            tctx = None
            if spec.prog_type in tracing.KINDS:
                if machine is None:
                    raise tracing.TracingError(f"an {spec.prog_type} program is verified against its function's "
                                               f"BTF prototype: give the kernel (--kernel IMAGE)")
                tctx = tracing.func_model(kernel_btf, spec.attach_point, spec.prog_type, len(regs.ALL_ARG_REGS))
            verify(insns, set(PROTOS) | set(range(1, 212)), lambda *_: 0)
            res = absint.verify_program(insns, infos, regs.PT_REGS_SIZE, obj.license, frozenset(PROTOS), log=log,
                                        strict_alignment=arch != "x86_64", tracing=tctx, kernel_btf=kernel_btf)
            v.processed, v.states, v.log = res.processed, res.states, res.log
        except EbpfError as e:
            v.error = str(e)
            v.log = getattr(e, "log", [])
        except (userspace.UserspaceError, tracing.TracingError) as e:
            v.error = str(e)
        out.append(v)
    if not out:
        raise BpfError(f"{path}: no kprobe or kretprobe programs")
    return out
