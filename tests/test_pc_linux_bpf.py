"""eBPF on Debian's Linux 6.1 x86_64 (the ``pc`` board) with CO-RE against the kernel's own BTF.

``linux/opensnoop.c`` is compiled at test time for x86 (``__TARGET_ARCH_x86``: its arguments
come from ``pt_regs``' ``di``/``si``/``dx``, relocated like every struct read) against the
``vmlinux.h`` Debian's bpftool generates from the BTF blob found in the bzImage's vmlinux
(``linux/corebuild.py``, as for riscv64); kprobesim relocates its CO-RE reads of
``task_struct``, ``open_how`` and ``struct filename`` against the same BTF. The same checks as
the riscv64 test (``linux/snoopcheck.py``), in both x86 step variants.

CPU: from the shared boot snapshot at init's first instruction (``pc_linux``) to the power-off
~1.4 M instructions, under a second per variant (the first compile of vmlinux.h: ~2 s).
"""

from __future__ import annotations

import pytest
from linux import corebuild, obtain, pclinux, snoopcheck

from kprobesim.ebpf.loader import load
from kprobesim.trace.tracer import Tracer

pytestmark = pytest.mark.xdist_group(pclinux.XDIST_GROUP)


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_opensnoop_core_counts_the_files_init_and_child_opened(pc_linux: pclinux.PcLinux, variant: str) -> None:
    obj_path = obtain(corebuild.build, "opensnoop", "x86_64")
    m = pc_linux.restore(variant)
    obj = load(m, obj_path)
    tracer = Tracer(m)
    tracer.add(snoopcheck.CLONE)
    tracer.add(snoopcheck.OPEN_FLAGS)
    assert pc_linux.run_to_power_off() == 0, m.console[-2000:]
    assert "reboot: System halted" in m.console
    snoopcheck.check_opensnoop(obj, tracer, m.console)
