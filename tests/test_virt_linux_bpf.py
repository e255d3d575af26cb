"""eBPF on Debian's Linux riscv64 with CO-RE against the kernel's own BTF.

``linux/opensnoop.c`` is compiled at test time against a ``vmlinux.h`` that Debian's bpftool
generates from the BTF blob found in the kernel image (``linux/corebuild.py``); kprobesim
relocates its CO-RE reads against the same BTF (:attr:`Machine.btf` of a Linux image);
``linux/digits.c`` pairs uprobe and uretprobe programs on init's ``digits()``. From the
boot snapshot at init's first instruction (``riscv_linux``) to power off: ~4 M instructions,
~1 s of CPU (the boot itself is shared; the first compile of vmlinux.h takes a few seconds).

Oracles (``linux/snoopcheck.py``): init's and its child's console lines (which files they
opened), the kernel's own return value of ``kernel_clone`` in init (the child's pid), and a
kprobe fetcharg reading ``open_how`` by hand.
"""

from __future__ import annotations

import re
import struct

import pytest
from linux import corebuild, obtain, rvguest, snoopcheck

from kprobesim.ebpf.loader import load
from kprobesim.trace.tracer import Tracer

pytestmark = pytest.mark.xdist_group(rvguest.XDIST_GROUP)


def test_opensnoop_core_counts_the_files_init_and_child_opened(riscv_linux: rvguest.RiscvLinux) -> None:
    obj_path = obtain(corebuild.build, "opensnoop", "riscv64")
    digits_path = obtain(corebuild.build, "digits", "riscv64")
    m = riscv_linux.restore()
    obj = load(m, obj_path)
    digits = load(m, digits_path)  # on the user program's function: see the end
    tracer = Tracer(m)
    tracer.add(snoopcheck.CLONE)
    tracer.add(snoopcheck.OPEN_FLAGS)
    riscv_linux.run_to_power_off()
    assert m.exit_status == 0, m.console[-2000:]
    snoopcheck.check_opensnoop(obj, tracer, m.console)
    child_pid = snoopcheck.child_pid(tracer)

    # uprobe + uretprobe programs on /init's digits(): every argument init printed, paired with
    # the value it printed, and the caller (init, or its forked child before the exec)
    printed = re.findall(r"^kpsim-init: (forked child: )?digits (\d+): (\d+)$", m.console.replace("\r", ""), re.M)
    assert len(printed) == 6
    results = {int.from_bytes(k, "little"): struct.unpack("<qQ", bytes(v)) for k, v in digits.maps["results"].items()}
    assert results == {int(n): (int(d), ((child_pid << 32) | child_pid) if forked else (1 << 32) | 1)
                       for forked, n, d in printed}
    assert not digits.maps["args"].items()  # every entry met its return
    assert [p.hits for p in digits.programs.values()] == [6, 6]
