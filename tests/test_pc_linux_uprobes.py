"""Uprobes, uretprobes and eBPF uprobe programs on the processes of Debian's Linux 6.1 on the
x86_64 ``pc`` board: ``/init:digits`` names a function of the initramfs's ``/init``; the probes
follow init and its forked child (until it execs ``/bin/child``, a different program).

The stepped instruction runs out of line in the process's XOL page, a simulator page mapped
into that process's own page tables at the top of its user address space (USER_XOL, the one
page of the lower canonical half Linux never maps), in ring 3: a code hook on that page (the
test's, not the simulator's) sees every instruction executed there.

From the shared boot snapshot at init's first instruction (``pc_linux``, ``linux/pclinux.py``;
the boot is ~60 s of CPU once per worker, shared with the other pc Linux tests) to the
power-off: ~1.4 M instructions a run, well under a second of CPU each; the QEMU oracle run
(~11 s of CPU) is shared with test_pc_linux.py. Oracles: init's own transcript (every digits() argument and
result is printed), QEMU's transcript of the same kernel and initramfs, the unprobed run's
console byte for byte, and the kernel's own kernel_clone return value (the child's pid).
"""

from __future__ import annotations

import re
import struct
from functools import cache

import capstone
import pytest
from linux import corebuild, obtain, pclinux
from linux.initramfs import entries, fnv1a64, program
from linux.qemu import init_lines
from unicorn import UC_HOOK_CODE
from unicorn import x86_const as xc

from kprobesim.board.pc import USER_XOL
from kprobesim.board.pc.pic import Pic8259Pair
from kprobesim.ebpf.loader import load
from kprobesim.elfread import read_header, read_segments, read_symbols
from kprobesim.errors import GuestFault, ProbeError
from kprobesim.trace.tracer import Tracer

pytestmark = pytest.mark.xdist_group(pclinux.XDIST_GROUP)
PT_REGS_IP = 16 * 8  # offsetof(struct pt_regs, ip) on x86_64
PRINTED = re.compile(r"^kpsim-init: (forked child: )?digits (\d+): (\d+)$", re.M)


_UNPROBED: list[str] = []


def unprobed_console(pc: pclinux.PcLinux) -> str:
    """The console of init's run from the snapshot with no probes (once per worker)."""
    if not _UNPROBED:
        pc.restore()
        assert pc.run_to_power_off() == 0
        _UNPROBED.append(pc.machine.console)
    return _UNPROBED[0]


def _function(name: str) -> list:
    """init's function ``name`` (compiled at test time), disassembled by capstone."""
    data = program("init", "x86_64").read_bytes()
    sym = next(s for s in read_symbols(read_header(data[:64]), data) if s.name == name)
    text = next(s for s in _segments(data) if s[0] <= sym.value < s[0] + s[2])
    start = text[1] + sym.value - text[0]
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return list(md.disasm(data[start : start + sym.size], sym.value))


@cache
def digits_code() -> dict[str, int]:
    """Offsets in init's digits(): its first conditional branch, the mul of its loop, its ret."""
    insns = _function("digits")
    sym_value = insns[0].address
    found = {
        "jcc": next(i for i in insns if i.mnemonic.startswith("j") and i.mnemonic != "jmp"),
        "mul": next(i for i in insns if i.mnemonic == "mul"),
        "ret": next(i for i in insns if i.mnemonic == "ret"),
    }
    return {name: i.address - sym_value for name, i in found.items()}


def riprel(function: str) -> str:
    """``function+OFF`` of the first RIP-relative instruction of init's ``function``."""
    insns = _function(function)
    return f"{function}+{next(i.address for i in insns if 'rip' in i.op_str) - insns[0].address:#x}"


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    from kprobesim.elfread import read_segments

    hdr = read_header(data[:64])
    return [(s.vaddr, s.offset, s.filesz) for s in read_segments(hdr, data[hdr.phoff :], len(data))]


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_uprobes_count_calls_and_uretprobes_read_returns(pc_linux: pclinux.PcLinux, variant: str) -> None:
    pc = pc_linux
    reference = unprobed_console(pc)
    m = pc.restore(variant)
    at = digits_code()
    tracer = Tracer(m)
    entry = tracer.add("p:dig /init:digits n=$arg1:u64")
    ret = tracer.add("r:digr /init:digits d=$retval:s32")
    tracer.add("r:clone kernel_clone pid=$retval:s64")
    inner = {name: m.uprobe(f"/init:digits+{off:#x}") for name, off in at.items()}
    # RIP-relative: musl's store of environ (a first write to its page: the copy faults in the
    # XOL page and the kernel resumes it there) and main's first RIP-relative load (a 16-byte
    # constant, run once); from the top of the address space their targets are out of rel32
    # reach, so the copy addresses through a scratch register
    rip = {name: m.uprobe(f"/init:{riprel(name)}") for name in ("__init_libc", "main")}
    assert all(m.uprobes.sites[p.addr].scratch for p in rip.values())
    in_xol: list[tuple[int, int, int]] = []  # (rip, CPL, CR3) of every instruction run in the XOL page

    def xol_insn(uc, addr, size, ud):
        in_xol.append((addr, uc.reg_read(xc.UC_X86_REG_CS) & 3, uc.reg_read(xc.UC_X86_REG_CR3)))

    m.engine.hook_add(UC_HOOK_CODE, xol_insn, None, USER_XOL, USER_XOL + 0xFFF)
    faulted: list[int] = []  # user IPs of the page faults the kernel handled (handle_mm_fault's regs)

    def fault(probe, regs):
        if regs["rcx"]:
            faulted.append(int.from_bytes(regs.read_mem(regs["rcx"] + PT_REGS_IP, 8), "little"))

    m.kprobe("handle_mm_fault", pre=fault)
    assert pc.run_to_power_off() == 0
    assert m.console == reference  # byte for byte, kernel timestamps included (virtual time)
    assert init_lines(m.console) == init_lines(pclinux.qemu_transcript())

    printed = PRINTED.findall(m.console.replace("\r", ""))
    assert len(printed) == 6, printed
    child = next(int(e.args["pid"]) for e in tracer.events if e.event == "clone" and e.comm == "init")
    who = [("init", child if forked else 1) for forked, _, _ in printed]
    calls = [e for e in tracer.events if e.event == "dig"]
    returns = [e for e in tracer.events if e.event == "digr"]
    pairs = list(zip(who, printed, strict=True))
    assert [(e.comm, e.pid, e.args["n"]) for e in calls] == [(c, p, int(n)) for (c, p), (_, n, _) in pairs]
    assert [(e.comm, e.pid, e.args["d"]) for e in returns] == [(c, p, int(d)) for (c, p), (_, _, d) in pairs]
    assert all(e.location.endswith(f"<- {ret.addr:#x}") for e in returns)
    iterations = sum(int(d) - 1 for _, _, d in printed)  # the loop divides by 10 once per extra digit
    assert (entry.hits, ret.hits, ret.kprobe.hits) == (6, 6, 6)
    assert {name: p.hits for name, p in inner.items()} == {"jcc": 6, "mul": iterations, "ret": 6}
    assert {name: p.hits for name, p in rip.items()} == {"__init_libc": 1, "main": 1}

    # Stepped out of line at the user address, in ring 3, in both processes' address spaces:
    # the entry's push and the mul (and with TF the ret; the int3 variant simulates it),
    # branches emulated (as Linux's uprobes do); the uretprobed function returns to the
    # trampoline, the XOL page's first slot
    assert in_xol and all(USER_XOL <= rip < USER_XOL + 0x1000 and cpl == 3 for rip, cpl, _ in in_xol)
    assert len({cr3 & ~0xFFF for _, _, cr3 in in_xol}) == 2  # init's and its child's
    stepped = 6 + iterations + (6 if variant == "tf" else 0) + 2
    trampoline = sum(rip == USER_XOL for rip, _, _ in in_xol)
    assert trampoline == 6
    slot_insns = len(in_xol) - trampoline
    # a copy that faults (the first touch of environ's page, of main's table) is the process's
    # fault at the slot's address: the kernel handles it and the copy starts again there
    refaults = sum(USER_XOL <= ip < USER_XOL + 0x1000 for ip in faulted)
    assert refaults >= 1
    assert slot_insns == (stepped if variant == "tf" else 2 * stepped) + refaults  # int3: the copy, then its int3


def test_ebpf_uprobe_programs_pair_calls_with_returns(pc_linux: pclinux.PcLinux) -> None:
    """linux/digits.c (CO-RE against the kernel's BTF) on init's digits(): entries and returns
    paired per thread, as init printed them, with the caller's pid/tgid."""
    digits_path = obtain(corebuild.build, "digits", "x86_64")
    pc = pc_linux
    m = pc.restore()
    digits = load(m, digits_path)
    tracer = Tracer(m)
    tracer.add("r:clone kernel_clone ret=$retval:s64")
    assert pc.run_to_power_off() == 0
    printed = PRINTED.findall(m.console.replace("\r", ""))
    assert len(printed) == 6
    child = next(int(e.args["ret"]) for e in tracer.events if e.event == "clone" and e.comm == "init")
    results = {int.from_bytes(k, "little"): struct.unpack("<qQ", bytes(v)) for k, v in digits.maps["results"].items()}
    assert results == {int(n): (int(d), ((child << 32) | child) if forked else (1 << 32) | 1)
                       for forked, n, d in printed}
    assert not digits.maps["args"].items()
    assert [p.hits for p in digits.programs.values()] == [6, 6]


def test_bad_uprobe_specs_on_the_pc_guest(pc_linux: pclinux.PcLinux) -> None:
    m = pc_linux.restore()
    cases = {
        "/nope:main": r"/nope: no such file in the initramfs \(ENOENT\)",
        "/init:no_such_function": r"/init has no function 'no_such_function' \(ENOENT\)",
        "/init:digits+0x2": r"not on an instruction boundary of digits \(EILSEQ\)",
        "/init:0x7fffffff": r"file offset 0x7fffffff is not in /init's text",
        "/data/blob.bin:0x10": r"not an ELF file",
    }
    for spec, message in cases.items():
        with pytest.raises(ProbeError, match=message):
            m.uprobe(spec)
    assert not m.uprobes.placed


def test_a_process_mapping_the_xol_address_ends_the_run_with_one_line(pc_linux: pclinux.PcLinux) -> None:
    """x86 has no in-place step: where the process maps the XOL address itself (here a page put
    there before init runs), the first step is a guest fault saying so, not a wrong run."""
    m = pc_linux.restore()
    assert m.traps.map_user_page(USER_XOL, m.sim_phys_alloc(), m.sim_phys_alloc) is None
    m.uprobe("/init:digits")
    with pytest.raises(GuestFault, match=r"cannot map the XOL page of process 1: the guest maps 0x7ffffffff000 itself"):
        pc_linux.run_to_power_off()


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_process_interrupted_inside_its_xol_slot(pc_linux: pclinux.PcLinux, variant: str) -> None:
    """The first hit raises the timer's IRQ 0: the CPU takes it with the process standing in its
    XOL slot (uprobe steps run with interrupts open, as Linux's); the kernel's interrupt path
    runs and returns to the slot, the step finishes there. Same init lines as QEMU's, every
    hit and value right. The interrupt moves the simulator's slice ends: one then fell between a
    later copy-on-write #PF of init and the kernel's CR2 read, and Unicorn's end-of-run
    translation had set CR2 to 0xffffffffffffffef (init got SIGSEGV; see
    test_pc_page_fault_cr2.py). No extra boot: the shared one, ~1 s a variant."""
    m = pc_linux.restore(variant)
    pic = next(d for d in m.devices if isinstance(d, Pic8259Pair))
    raised: list[bool] = []

    def tick(probe, regs):
        if not raised:
            raised.append(True)
            pic.set_irq(0, True)  # an edge on IRQ 0, as the PIT makes
            pic.set_irq(0, False)

    entry = m.uprobe("/init:digits", tick)
    ret = m.uretprobe("/init:digits")
    in_slot: list[int] = []
    deliver = m.traps.interrupt

    def interrupt(vector: int) -> bool:
        pc = m.pc
        taken = deliver(vector)
        if taken and USER_XOL < pc < USER_XOL + 0x1000:  # a step slot (not the trampoline)
            in_slot.append(vector)
        return taken

    m.traps.interrupt = interrupt
    assert pc_linux.run_to_power_off() == 0
    assert init_lines(m.console) == init_lines(pclinux.qemu_transcript())
    assert in_slot == [0x30]  # IRQ 0 at Linux's ISA_IRQ_VECTOR(0)
    assert entry.hits == ret.hits == 6 and not m.uprobes.steps


def _spawned_run(pc: pclinux.PcLinux, limit: int | None = None, uretprobe: bool = True):
    """init's run with uprobes on work() (once in each spawned child), digits() and, with
    ``uretprobe``, a uretprobe on spawn() (it forks: the parent and the child both return),
    the user page pool capped at ``limit`` pages. Returns the machine, the tracer, the probes
    by event and the pids kernel_clone gave init's children, in order."""
    m = pc.restore()
    if limit is not None:
        m.user_pages.limit = limit
    tracer = Tracer(m)
    probes = {"work": tracer.add("p:work /init:work n=$arg1:u64"), "dig": tracer.add("p:dig /init:digits")}
    if uretprobe:
        probes["spawnr"] = tracer.add("r:spawnr /init:spawn pid=$retval:s32")
    tracer.add("r:clone kernel_clone pid=$retval:s64")
    copies_at_open: list[int] = []

    def opened(probe, regs):  # init opening /init: does its address space hold a copy with a break?
        if current_task_pid(m) == 1:
            copies_at_open.append(sum(c.root == m.traps.user_root() for c in m.uprobes.spaces.copies.values()))

    m.kprobe("do_sys_openat2", pre=opened)
    assert pc.run_to_power_off() == 0
    children = [int(e.args["pid"]) for e in tracer.events if e.event == "clone" and e.comm == "init"]
    return m, tracer, probes, children, copies_at_open


def current_task_pid(m) -> int:
    from kprobesim.task import current_task

    return current_task(m).pid


def test_probed_children_forked_inside_a_uretprobed_function_and_the_file_read_back(
    pc_linux: pclinux.PcLinux,
) -> None:
    """Linux's copy-on-write of the probed page, fork and exit: init's six spawned children
    (forked inside spawn(), each calling work() once before exiting) and its forked child all
    get the break in a private copy of the page, so init's read(2) of its own /init returns
    the file's bytes (init hashes its text segment as read and compares with the hash the
    build wrote into it, and prints the verdict QEMU's run prints); each child returns from spawn() through
    the trampoline like its parent, with its own uretprobe event and pid (the return chain
    copied at fork, Linux's uprobe_copy_process); every child's pages go back to the pool when
    it exits. CPU: one run from the shared snapshot, ~1 s."""
    m, tracer, probes, children, copies_at_open = _spawned_run(pc_linux)
    assert init_lines(m.console) == init_lines(pclinux.qemu_transcript())
    assert "kpsim-init: read /init: its text is the file's" in init_lines(m.console)
    data = program("init", "x86_64").read_bytes()
    files = {e.name: e.data for e in entries("x86_64") if e.data}
    hdr = read_header(data[:64])
    (text,) = [s for s in read_segments(hdr, data[hdr.phoff :], len(data)) if s.executable]
    assert files["init"] == data  # the file init reads, holding the hash of its text it checks against
    assert fnv1a64(data[text.offset : min(text.offset + text.filesz, 32768)]).to_bytes(8, "little") in data
    assert text.offset <= m.uprobes.sites[probes["work"].addr].addr - text.vaddr + text.offset < 32768  # read back
    assert copies_at_open and all(n >= 1 for n in copies_at_open)  # init had its copy while reading

    forked, spawned = children[0], children[1:]
    work = [(e.pid, e.args["n"]) for e in tracer.events if e.event == "work"]
    assert work == [(pid, i) for i, pid in enumerate(spawned, 1)]  # once in each child, its own pid
    returns = [(e.pid, e.args["pid"]) for e in tracer.events if e.event == "spawnr"]
    assert sorted(returns) == sorted([(1, pid) for pid in spawned] + [(pid, 0) for pid in spawned])
    assert probes["spawnr"].hits == 12 and probes["spawnr"].active == 0 and not probes["spawnr"].missed
    digits = [e.pid for e in tracer.events if e.event == "dig"]
    assert digits == [1] * 5 + [forked]  # init's, then its first child's before it execs
    assert all(not p.missed for p in probes.values()) and not m.uprobes.refusals

    # every child's pages went back: only init's address space holds simulator pages now
    spaces = m.uprobes.spaces
    assert len(spaces.spaces) == 1 and m.user_pages.in_use
    assert m.user_pages.handed_out > len(m.user_pages.in_use) + 8 * 2


def test_more_processes_than_the_user_page_pool_holds(pc_linux: pclinux.PcLinux) -> None:
    """The pool capped at the most pages the run ever needs at once: far fewer than its eight
    probed processes take in all, so every page a child used must come back when it exits;
    every call is counted, none missed. Capped one page lower, the pool runs out: what needed
    the page is refused with one line and counted missed, and the guest's run is unchanged.
    Capped at init's own pages, every child is refused (its copy: one miss per probe of its
    page) and still returns from spawn() (no XOL page: the fetch fault at the trampoline
    address is taken as the return); init is still counted exactly. CPU: four runs from the
    shared snapshot, ~3 s."""
    m, _, probes, _, _ = _spawned_run(pc_linux)
    peak, total, kept = m.user_pages.peak, m.user_pages.handed_out, len(m.user_pages.in_use)
    assert total > 2 * peak

    m, tracer, probes, children, _ = _spawned_run(pc_linux, limit=peak)
    assert m.user_pages.handed_out == total and m.user_pages.peak == peak
    assert (probes["work"].hits, probes["dig"].hits, probes["spawnr"].hits) == (6, 6, 12)
    assert not any(p.missed for p in probes.values()) and not m.uprobes.refusals

    m, tracer, probes, children, _ = _spawned_run(pc_linux, limit=peak - 1)
    assert init_lines(m.console) == init_lines(pclinux.qemu_transcript()), (m.uprobes.refusals, m.console[-1500:])
    assert m.uprobes.refusals and all("\n" not in line for line in m.uprobes.refusals)
    assert all(line.endswith("the simulator's user page pool is exhausted") for line in m.uprobes.refusals)
    assert any("no XOL page for this process" in line for line in m.uprobes.refusals)  # a refused hit
    assert sum(p.missed for p in probes.values()) >= 1

    # capped at init's own pages: no child gets a copy of the page (one miss per probe of it)
    # or an XOL page; a spawned child's return to the trampoline address, which it has no page
    # for, is a fetch fault the simulator takes as the return: all twelve returns seen
    m, tracer, probes, children, _ = _spawned_run(pc_linux, limit=kept)
    assert init_lines(m.console) == init_lines(pclinux.qemu_transcript()), (m.uprobes.refusals, m.console[-1500:])
    counts = {name: (p.hits, p.missed) for name, p in probes.items()}
    assert counts == {"work": (0, 7), "dig": (5, 7), "spawnr": (12, 7)}, (counts, m.uprobes.refusals)
    spawned = children[1:]
    returns = [(e.pid, e.args["pid"]) for e in tracer.events if e.event == "spawnr"]
    assert sorted(returns) == sorted([(1, pid) for pid in spawned] + [(pid, 0) for pid in spawned])
    refused = [line for line in m.uprobes.refusals if "no private copy" in line]
    assert [line.split(": refused in ")[1].split(":")[0] for line in refused] == [
        f"init-{pid}" for pid in children
    ], m.uprobes.refusals


@cache
def calls_into_unwritable_stack() -> dict[str, int]:
    """Two calls of init's libc whose push lands in a stack page the process may not write yet:
    in _Fork(), the first call after the fork syscall (the first store of parent and child to
    the stack page they share copy-on-write), and printf_core()'s first call (below its ~7.7
    KiB frame: a page not present yet in some calls). By address."""
    insns = _function("_Fork")
    at = next(k for k, i in enumerate(insns) if i.mnemonic == "syscall")
    after_fork = next(i for i in insns[at + 1 :] if i.mnemonic == "call")
    first = next(i for i in _function("printf_core") if i.mnemonic == "call")
    return {"_Fork": after_fork.address, "printf_core": first.address}


def _executions(pc: pclinux.PcLinux, addrs: list[int]) -> tuple[dict[int, int], dict[int, int], int, str]:
    """Unprobed run: how often init's processes complete each instruction at ``addrs`` (a code
    hook on each counts every attempt; a data #PF there means the instruction runs again),
    the #PFs taken there, the virtual time at the end and the console."""
    from kprobesim.task import current_task

    m = pc.restore()
    tries = dict.fromkeys(addrs, 0)
    faults = dict.fromkeys(addrs, 0)

    def count(uc, addr, size, ud):
        if current_task(m).comm == "init":
            tries[addr] += 1

    deliver = m.traps.deliver

    def counted(vector, rip, error=None, what=""):
        if vector == 14 and rip in faults and current_task(m).comm == "init":
            cr2 = m.engine.reg_read(xc.UC_X86_REG_CR2)
            faults[rip] += not rip <= cr2 < rip + 16  # a fetch fault: the instruction never started
        return deliver(vector, rip, error, what)

    hooks = [m.engine.hook_add(UC_HOOK_CODE, count, None, a, a) for a in addrs]
    m.traps.deliver = counted
    try:
        assert pc.run_to_power_off() == 0
    finally:
        del m.traps.deliver
        for h in hooks:
            m.engine.hook_del(h)
    return {a: tries[a] - faults[a] for a in addrs}, faults, m.now(), m.console


@pytest.mark.parametrize("variant", ["tf", "int3"])
def test_simulated_calls_into_stack_pages_the_process_may_not_write(pc_linux: pclinux.PcLinux, variant: str) -> None:
    """A uprobe on a relative call simulates it (both variants: the XOL page is out of rel32
    reach), so the simulator stores the return address itself. Where the process's page tables
    refuse that store (fork's copy-on-write sharing, a page not present) the process takes the
    #PF at the call first, as unprobed; the store went straight into the shared page before,
    and fork's children then returned through the parent's return address and died of
    SIGSEGV (a page not present ended the run). The run equals the unprobed one: console byte
    for byte, virtual time, every call counted once per completed execution. ~2 s of CPU."""
    calls = calls_into_unwritable_stack()
    executions, faults, end, console = _executions(pc_linux, list(calls.values()))
    assert all(faults.values()), faults  # each call does take a page fault unprobed
    m = pc_linux.restore(variant)
    probes = {name: m.uprobe(f"/init:{name}+{addr - _function(name)[0].address:#x}") for name, addr in calls.items()}
    assert pc_linux.run_to_power_off() == 0
    assert m.console == console
    assert m.now() == end
    assert {n: p.hits for n, p in probes.items()} == {n: executions[a] for n, a in calls.items()}
