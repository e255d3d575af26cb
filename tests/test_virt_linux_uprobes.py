"""Uprobes and uretprobes on the processes of Debian's Linux riscv64 guest: ``/init:digits``
names a function of the initramfs's ``/init`` (its ELF symbol table, the file found in the
initramfs the machine boots with). The probe follows every process that maps the file: init,
and its forked child until that execs ``/bin/child`` (a different program at the same
addresses, which must not be hit).

From the boot snapshot at init's first instruction (``riscv_linux``) to power off: ~4 M
instructions, ~1 s of CPU. Oracles: init's transcript (every digits() call's argument and
return value is printed), QEMU's transcript of the same kernel and initramfs (the probed run's
lines equal it), and the kernel's own kernel_clone return value (the forked child's pid).
"""

from __future__ import annotations

import re

import pytest
from kprobesim.arch.riscv64.mmu import user_top
from linux import oracle, rvguest
from linux.qemu import init_lines
from unicorn import UC_HOOK_CODE
from unicorn.riscv_const import UC_RISCV_REG_PRIV, UC_RISCV_REG_SATP

from kprobesim.errors import ProbeError
from kprobesim.task import current_task
from kprobesim.trace.tracer import Tracer

pytestmark = pytest.mark.xdist_group(rvguest.XDIST_GROUP)


def test_uprobe_counts_calls_and_uretprobe_reads_returns(riscv_linux: rvguest.RiscvLinux) -> None:
    m = riscv_linux.restore()
    tracer = Tracer(m)
    entry = tracer.add("p:dig /init:digits n=$arg1:u64")
    ret = tracer.add("r:digr /init:digits d=$retval:s32")
    tracer.add("r:clone kernel_clone pid=$retval:s64")
    with m.traps.machine_mode():
        satp = m.engine.reg_read(UC_RISCV_REG_SATP)
    xol = user_top(satp) - 0x1000  # the top page of the user half (Sv57 here: 2^56 - 4 KiB)
    assert satp >> 60 == 10 and m.uprobes.user_xol == xol == (1 << 56) - 0x1000
    in_xol: list[tuple[int, int, int]] = []  # (pc, privilege, its physical page) of every instruction run there

    def xol_insn(uc, addr, size, ud):
        in_xol.append((addr, uc.reg_read(UC_RISCV_REG_PRIV), m.traps.physical(addr) & ~0xFFF))

    m.engine.hook_add(UC_HOOK_CODE, xol_insn, None, xol, xol + 0xFFF)
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

    # Stepped out of line in the process's XOL page, in U-mode, in init's and its child's own
    # address spaces; each return comes back through the trampoline, the page's first slot
    assert in_xol and all(priv == 0 for _, priv, _ in in_xol)
    assert len({page for _, _, page in in_xol}) == 2  # one XOL page each, at the same address
    assert sum(pc == xol for pc, _, _ in in_xol) == 6
    steps = [pc for pc, _, _ in in_xol if pc != xol]
    assert len(steps) == 2 * 6  # digits' first instruction, then the slot's ebreak, per call


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


def test_process_mapping_the_xol_address_steps_in_place(riscv_linux: rvguest.RiscvLinux) -> None:
    """A process whose own tables already map the XOL address (here: a page put there before it
    runs) has its probed instruction stepped in place and its uretprobes return through the
    simulator's address; its forked child (a new address space) gets its XOL page. Same counts,
    same values, same transcript."""
    m = riscv_linux.restore()
    xol = m.uprobes.user_xol
    assert xol is not None
    assert m.traps.map_user_page(xol, m.sim_phys_alloc(), m.sim_phys_alloc) is None  # init's "own" page
    tracer = Tracer(m)
    tracer.add("p:dig /init:digits n=$arg1:u64")
    tracer.add("r:digr /init:digits d=$retval:s32")
    riscv_linux.run_to_power_off()
    assert m.exit_status == 0, m.console[-2000:]
    expected = [line for line in oracle.boot("riscv64").init_lines if not line.startswith("kpsim-init: kallsyms")]
    assert init_lines(m.console) == expected
    printed = re.findall(r"^kpsim-init: (forked child: )?digits (\d+): (\d+)$", "\n".join(init_lines(m.console)), re.M)
    assert [e.args["n"] for e in tracer.events if e.event == "dig"] == [int(n) for _, n, _ in printed]
    assert [e.args["d"] for e in tracer.events if e.event == "digr"] == [int(d) for _, _, d in printed]
    kinds = {tgid: type(area).__name__ for tgid, area in m.uprobes._xol.items()}
    assert kinds == {1: "SlotPages"}, kinds  # init's: pool pages
    # the child's XOL page (a user pool page) went back when it exited; init's space has none
    spaces = m.uprobes.spaces.spaces
    assert len(spaces) == 1 and next(iter(spaces.values())).xol is None
    assert m.user_pages.handed_out > len(m.user_pages.in_use)


def test_copies_of_the_probed_page_fork_and_exit(riscv_linux: rvguest.RiscvLinux) -> None:
    """Linux's copy-on-write of the probed page, on riscv64: init's read(2) of its own /init
    returns the file's bytes while init runs a private copy of the page with the breaks (init
    hashes its text segment as read against the hash the build wrote into it, and prints
    QEMU's verdict);
    the six children init spawns, forked inside spawn() (uretprobed), each call work() once and
    return from spawn() through the trampoline with their own pid (the return chain copied at
    fork); each child's pages go back to the user page pool when it exits, so the same run
    with the pool capped at the most pages it ever holds at once (fewer than its eight probed
    processes take in all) counts the same. CPU: two runs from the shared snapshot, ~8 s."""
    runs = []
    for limit in (None, "peak"):
        m = riscv_linux.restore()
        if limit == "peak":
            m.user_pages.limit = runs[0][0]
        tracer = Tracer(m)
        work = tracer.add("p:work /init:work n=$arg1:u64")
        dig = tracer.add("p:dig /init:digits")
        spawn = tracer.add("r:spawnr /init:spawn pid=$retval:s32")
        tracer.add("r:clone kernel_clone pid=$retval:s64")
        copies: list[int] = []

        def opened(probe, regs, m=m, copies=copies):
            if current_task(m).pid == 1:  # init's opens: does its address space hold a copy?
                copies.append(sum(c.root == m.traps.user_root() for c in m.uprobes.spaces.copies.values()))

        m.kprobe("do_sys_openat2", pre=opened)
        riscv_linux.run_to_power_off()
        assert m.exit_status == 0, m.console[-2000:]
        expected = [line for line in oracle.boot("riscv64").init_lines if not line.startswith("kpsim-init: kallsyms")]
        assert init_lines(m.console) == expected
        assert "kpsim-init: read /init: its text is the file's" in expected
        assert copies and all(n >= 1 for n in copies)
        children = [int(e.args["pid"]) for e in tracer.events if e.event == "clone" and e.comm == "init"]
        forked, spawned = children[0], children[1:]
        work_calls = [(e.pid, e.args["n"]) for e in tracer.events if e.event == "work"]
        assert work_calls == list(zip(spawned, range(1, 7), strict=True))
        returns = [(e.pid, e.args["pid"]) for e in tracer.events if e.event == "spawnr"]
        assert sorted(returns) == sorted([(1, pid) for pid in spawned] + [(pid, 0) for pid in spawned])
        assert [e.pid for e in tracer.events if e.event == "dig"] == [1] * 5 + [forked]
        assert (work.hits, dig.hits, spawn.hits, spawn.active) == (6, 6, 12, 0)
        assert not (work.missed or dig.missed or spawn.missed or m.uprobes.refusals)
        assert len(m.uprobes.spaces.spaces) == 1  # init's: every child's pages went back
        runs.append((m.user_pages.peak, m.user_pages.handed_out))
    assert runs[1] == runs[0] and runs[0][1] > 2 * runs[0][0]
