"""``compare`` on the two Linux guests: Debian's riscv64 kernel on ``virt`` and its x86_64
kernel on ``pc``, each from its boot snapshot at the same ``/init``'s first instruction (the
project's initramfs, built for each arch), with the same probes: the files init and its child
open, the byte counts ``vfs_read`` returns to them, and what user space prints must agree
across the arches; the kernels' own log lines (different on every arch) are left out.

CPU: each run from its snapshot to the power-off (riscv64 ~4 M instructions, x86_64
~1.5 M: under a second each). The test needs both boots in one worker: both guests' modules share
one xdist group, so the worker that runs them boots each guest once.
"""

from __future__ import annotations

import json

import pytest
from linux import pclinux, rvguest

from kprobesim import linuxguest
from kprobesim.compare import compare, render

pytestmark = pytest.mark.xdist_group(pclinux.XDIST_GROUP)

PROBES = ["p:op do_sys_openat2 name=+0($arg2):ustring", "r:vr vfs_read ret=$retval:s64"]


def test_linux_guests_agree_across_arches(riscv_linux: rvguest.RiscvLinux, pc_linux: pclinux.PcLinux) -> None:
    result = compare(PROBES, machines={"riscv64": riscv_linux.restore, "x86_64": pc_linux.restore},
                     max_insns=rvguest.RUN_BUDGET, timeout=600)
    table = render(result)
    assert result.agree, table
    rows = {(r.probe, r.what): r.values for r in result.rows}
    assert rows[("(kernel)", "exit status")] == {"riscv64": 0, "x86_64": 0}
    names = rows[("op", "name")]["x86_64"]
    assert "@2 tasks" in names  # init and its child (the children init spawns open nothing)
    assert rows[("op", "hits")] == {"riscv64": 6, "x86_64": 6}  # init's five files, the child's one
    assert rows[("vr", "hits")]["x86_64"] >= 13  # init's eleven reads (and /init's), the child's two

    # a disagreement shows: the same probes against a run that opens nothing more
    broken = compare(PROBES, machines={"riscv64": riscv_linux.restore, "x86_64": lambda: _cut_short(pc_linux)},
                     max_insns=rvguest.RUN_BUDGET, timeout=600)
    assert not broken.agree
    assert "NO" in render(broken)


def test_compare_command_line_on_both_linux_guests(
    riscv_linux: rvguest.RiscvLinux, pc_linux: pclinux.PcLinux, run_cli
) -> None:
    """``kprobesim compare --board virt --board pc`` with each arch's kernel, initrd (and for virt
    the firmware, RAM and command line) as the shared boots have them: the command boots each
    guest to its ``/init`` through ``kprobesim.linuxguest``, whose per-process boots the fixtures
    made, so it starts from their snapshots (checked: no new boot). CPU: two comparisons, each
    running both guests from their snapshots to the power-off (under a second each): ~2 s;
    booting both kernels from the command line would add ~80 s, which the fixtures' boots
    (through the same ``boot_all``) and ``test_virt_sbi``'s command-line boot cover."""
    rv, pc = rvguest.guest(), pclinux.guest()
    boots = linuxguest.booted_guests()
    argv = ["compare", "--board", "virt", "--board", "pc",
            "--image", f"riscv64={rv.image}", "--initrd", f"riscv64={rv.initrd}", "--bios", f"riscv64={rv.bios}",
            "-m", "riscv64=128M", "--append", f"riscv64={rv.append}",
            "--image", f"x86_64={pc.image}", "--initrd", f"x86_64={pc.initrd}"]  # fmt: skip
    for spec in PROBES:
        argv += ["-p", spec]
    status, out, err = run_cli(*argv, "--format", "json")
    assert linuxguest.booted_guests() == boots  # the shared boots, not new ones
    assert status == 0, err
    result = json.loads(out)
    assert result["agree"] and result["arches"] == ["riscv64", "x86_64"], out
    rows = {(r["probe"], r["what"]): r["values"] for r in result["rows"]}
    assert rows[("(kernel)", "exit status")] == {"riscv64": 0, "x86_64": 0}
    assert rows[("op", "hits")] == {"riscv64": 6, "x86_64": 6}  # init's five files, the child's one
    assert rows[("vr", "hits")]["riscv64"] == rows[("vr", "hits")]["x86_64"] >= 13
    assert rows[("vr", "ret")]["riscv64"] == rows[("vr", "ret")]["x86_64"]  # init's byte counts

    # the table, and a disagreement: the kernel address of each open's struct open_how differs
    status, out, err = run_cli(*argv[:argv.index("-p")], "-p", "p:op do_sys_openat2 how=$arg3")
    assert status == 1, err
    table = out.decode()
    assert "op            how" in table and "all arches agree: NO" in table, table


def _cut_short(pc_linux: pclinux.PcLinux):
    """The x86_64 guest with init's first open failing: do_sys_openat2's first hit returns
    -ENOENT at once (a kprobe pre-handler that takes the function's return)."""
    m = pc_linux.restore()
    done: list[int] = []

    def fail_first(probe, regs):
        if done:
            return 0
        done.append(1)
        regs["rax"] = -2 & (1 << 64) - 1
        regs.pc = int.from_bytes(m.read(regs["rsp"], 8), "little")  # the caller's return address
        regs["rsp"] += 8
        return 1

    m.kprobe("do_sys_openat2", pre=fail_first)
    return m
