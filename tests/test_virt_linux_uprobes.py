"""Uprobes and uretprobes on the processes of Debian's Linux riscv64 guest: ``/init:digits``
names a function of the initramfs's ``/init`` (its ELF symbol table, the file found in the
initramfs the machine boots with). The probe follows every process that maps the file: init,
and its forked child until that execs ``/bin/child`` (a different program at the same
addresses, which must not be hit).

From the boot snapshot at init's first instruction (``riscv_linux``) to power off: ~40 M
instructions, ~3 s of CPU. Oracles: init's transcript (every digits() call's argument and
return value is printed), QEMU's transcript of the same kernel and initramfs (the probed run's
lines equal it), and the kernel's own kernel_clone return value (the forked child's pid).
"""

from __future__ import annotations

import re

import pytest
from linux import oracle, rvguest
from linux.qemu import init_lines

from kprobesim.errors import ProbeError
from kprobesim.trace.tracer import Tracer

pytestmark = pytest.mark.xdist_group(rvguest.XDIST_GROUP)


def test_uprobe_counts_calls_and_uretprobe_reads_returns(riscv_linux: rvguest.RiscvLinux) -> None:
    m = riscv_linux.restore()
    tracer = Tracer(m)
    entry = tracer.add("p:dig /init:digits n=$arg1:u64")
    ret = tracer.add("r:digr /init:digits d=$retval:s32")
    tracer.add("r:clone kernel_clone pid=$retval:s64")
    riscv_linux.run_to_power_off()
    assert m.exit_status == 0, m.console[-2000:]
    expected = [line for line in oracle.boot("riscv64").init_lines if not line.startswith("kpsim-init: kallsyms")]
    assert init_lines(m.console) == expected  # the probes change nothing init or its child do

    lines = "\n".join(init_lines(m.console))
    printed = re.findall(r"^kpsim-init: (forked child: )?digits (\d+): (\d+)$", lines, re.M)
    assert len(printed) == 6, printed
    child = next(int(e.args["pid"]) for e in tracer.events if e.event == "clone" and e.comm == "init")
    who = [("init", child if forked else 1) for forked, _, _ in printed]
    calls = [e for e in tracer.events if e.event == "dig"]
    returns = [e for e in tracer.events if e.event == "digr"]
    pairs = list(zip(who, printed, strict=True))
    assert [(e.comm, e.pid, e.args["n"]) for e in calls] == [(c, p, int(n)) for (c, p), (_, n, _) in pairs]
    assert [(e.comm, e.pid, e.args["d"]) for e in returns] == [(c, p, int(d)) for (c, p), (_, _, d) in pairs]
    assert entry.hits == 6 and ret.hits == 6 and ret.kprobe.hits == 6
    assert all(e.location.endswith(f"<- {ret.addr:#x}") for e in returns)


def test_bad_uprobe_specs_on_a_linux_guest(riscv_linux: rvguest.RiscvLinux) -> None:
    m = riscv_linux.restore()
    cases = {
        "/nope:main": r"/nope: no such file in the initramfs \(ENOENT\)",
        "/data/hello.txt:main": r"not an ELF file",
        "/init:no_such_function": r"/init has no function 'no_such_function' \(ENOENT\)",
        "/init:digits+0x1": r"not on an instruction boundary of digits \(EILSEQ\)",
        "/init:0x7fffffff": r"file offset 0x7fffffff is not in /init's text",
    }
    for spec, message in cases.items():
        with pytest.raises(ProbeError, match=message):
            m.uprobe(spec)
    assert not m.uprobes.placed
