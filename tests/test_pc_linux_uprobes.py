"""Uprobes, uretprobes and eBPF uprobe programs on the processes of Debian's Linux 6.1 on the
x86_64 ``pc`` board: ``/init:digits`` names a function of the initramfs's ``/init``; the probes
follow init and its forked child (until it execs ``/bin/child``, a different program).

The stepped instruction runs out of line in the process's XOL page, a simulator page mapped
into that process's own page tables at the top of its user address space (USER_XOL, the one
page of the lower canonical half Linux never maps), in ring 3: a code hook on that page (the
test's, not the simulator's) sees every instruction executed there.

From the shared boot snapshot at init's first instruction (``pc_linux``, ``linux/pclinux.py``;
the boot is ~60 s of CPU once per worker, shared with the other pc Linux tests) to the
power-off: ~0.5 M instructions a run, well under a second of CPU each; the QEMU oracle run
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
from linux.initramfs import program
from linux.qemu import init_lines
from unicorn import UC_HOOK_CODE
from unicorn import x86_const as xc

from kprobesim.board.pc import USER_XOL
from kprobesim.board.pc.pic import Pic8259Pair
from kprobesim.ebpf.loader import load
from kprobesim.elfread import read_header, read_symbols
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
    # XOL page and the kernel resumes it there) and main's load of its numbers table (every
    # digits() argument printed comes from it); from the top of the address space their
    # targets are out of rel32 reach, so the copy addresses through a scratch register
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
    hit and value right."""
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
