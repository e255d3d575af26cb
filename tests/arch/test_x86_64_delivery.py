"""x86_64 exception delivery that itself faults: the CPU's nested rules, never an internal error.

Raw guests (flat 64-bit code at the board's base, selector 0 everywhere) with hand-made IDTs.
The expected outcomes follow the Intel SDM (vol. 3, "Interrupt 8: double fault"): a fault while
entering a handler is delivered instead (#GP for an IDT entry beyond the limit or outside memory,
#NP for a gate not present, #SS for a frame that cannot be pushed) with the IDT-selector error
code (vector * 8 + IDT bit 2 + EXT bit 1); one that follows a contributory exception becomes #DF;
one while entering #DF shuts the CPU down (a triple fault).
"""

from __future__ import annotations

import struct
import subprocess
import sys

import keystone
import pytest
from fwpaths import ROOT

from kprobesim.arch import get_arch
from kprobesim.errors import GuestFault
from kprobesim.image import Image
from kprobesim.machine import Machine

BASE = get_arch("x86_64").default_base
IDT = BASE + 0x1000  # the IDT of these guests (when they have one in memory)
DESC = BASE + 0xF00  # the lidt operand
HANDLERS = BASE + 0x800  # handler for vector v at HANDLERS + 0x20 * v
STACK = BASE + 0x8000

_ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)


def _asm(text: str, addr: int) -> bytes:
    return bytes(_ks.asm(text, addr)[0])


def _gate(handler: int, present: bool = True) -> bytes:
    attr = 0x8E if present else 0x0E
    return struct.pack("<HHBBHII", handler & 0xFFFF, 0, 0, attr, (handler >> 16) & 0xFFFF, handler >> 32, 0)


def guest(code: str, gates: dict[int, bool], idt_base: int = IDT, idt_limit: int | None = None) -> bytes:
    """An image: lidt, then ``code``; vector v's gate present or not per ``gates`` (absent: not
    present); each handler exits with status v * 16 + (its error code, or 0) & 15."""
    image = bytearray(0x2000)
    body = _asm(f"lidt [{DESC:#x}]; mov rsp, {STACK:#x}; {code}", BASE)
    image[: len(body)] = body
    for v in range(32):
        with_error = v in (8, 10, 11, 12, 13, 14, 17)
        exit_ = f"{'pop rax; and al, 15;' if with_error else 'xor eax, eax;'} or al, {v * 16 & 0xFF}; out 0xf4, al; hlt"
        stub = _asm(exit_, HANDLERS + 0x20 * v)
        image[HANDLERS - BASE + 0x20 * v : HANDLERS - BASE + 0x20 * v + len(stub)] = stub
        image[IDT - BASE + 16 * v : IDT - BASE + 16 * v + 16] = _gate(HANDLERS + 0x20 * v, gates.get(v, False))
    limit = 32 * 16 - 1 if idt_limit is None else idt_limit
    image[DESC - BASE : DESC - BASE + 10] = struct.pack("<HQ", limit, idt_base)
    return bytes(image)


def run(tmp_path, image: bytes) -> Machine:
    path = tmp_path / "guest.bin"
    path.write_bytes(image)
    m = Machine(get_arch("x86_64"), Image.load(path, arch="x86_64", base=BASE))
    m.run(max_insns=10_000)
    return m


def test_not_present_gate_delivers_np_with_the_idt_selector(tmp_path):
    # #UD's gate is not present: #NP, error code 6 * 8 + 2 + 1 = 0x33 (its low nibble: 3)
    m = run(tmp_path, guest("ud2", {11: True}))
    assert m.exit_status == 11 * 16 + 3


def test_contributory_after_contributory_is_a_double_fault(tmp_path):
    # a load outside memory is #GP; #GP's gate is not present (#NP, contributory): #DF, error 0
    m = run(tmp_path, guest("mov rax, [0x90000000]", {8: True}))
    assert m.exit_status == 8 * 16


def test_benign_then_contributory_is_delivered_serially(tmp_path):
    # #UD (benign) with its gate missing: #NP runs, not #DF, even with a #DF handler there
    m = run(tmp_path, guest("ud2", {8: True, 11: True}))
    assert m.exit_status == 11 * 16 + 3


@pytest.mark.parametrize(
    ("name", "image", "reasons"),
    [
        (
            "unmapped IDT",
            guest("ud2", {6: True}, idt_base=0x9000_0000),
            ["exception 6 (#UD): IDT entry at 0x90000060 outside memory",
             "exception 13 (#GP): IDT entry at 0x900000d0 outside memory",
             "exception 8 (#DF): IDT entry at 0x90000080 outside memory"],
        ),
        (
            "stack overflow",
            guest("mov rsp, 0x10; ud2", {6: True, 8: True, 12: True, 13: True}),
            ["exception 6 (#UD): exception frame push at 0xffffffffffffffe8 outside memory",
             "exception 12 (#SS): exception frame push at 0xffffffffffffffe0 outside memory",
             "exception 8 (#DF): exception frame push at 0xffffffffffffffe0 outside memory"],
        ),
        (
            "no handlers",
            guest("ud2", {}, idt_limit=0),
            ["exception 6 (#UD): vector 6 beyond the IDT limit 0x0",
             "exception 13 (#GP): vector 13 beyond the IDT limit 0x0",
             "exception 8 (#DF): vector 8 beyond the IDT limit 0x0"],
        ),
    ],
)
def test_triple_fault_shuts_the_cpu_down(tmp_path, name, image, reasons):
    with pytest.raises(GuestFault) as fault:
        run(tmp_path, image)
    assert str(fault.value) == "triple fault, CPU shut down: " + "; then ".join(reasons)


def test_memory_fault_then_triple_fault_names_the_access(tmp_path):
    with pytest.raises(GuestFault, match=r"^triple fault, CPU shut down: load access fault at 0x90000000; then "
                       r"exception 13 \(#GP\): IDT gate not present; then exception 8 \(#DF\): IDT gate not present$"):
        run(tmp_path, guest("mov rax, [0x90000000]", {}))


def test_cli_reports_a_guest_fault_not_an_internal_error(tmp_path):
    path = tmp_path / "guest.bin"
    path.write_bytes(guest("ud2", {6: True}, idt_base=0x9000_0000))
    proc = subprocess.run(
        [sys.executable, "-m", "kprobesim", "--arch", "x86_64", str(path)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == GuestFault.exit_status
    assert proc.stderr.startswith("kprobesim: guest fault: triple fault, CPU shut down: exception 6 (#UD)")
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


GDT = BASE + 0x1800
USER = BASE + 0x600
SYSCALL_ENTRY = BASE + 0x700
_GDT = [0, 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0, 0x00CFF2000000FFFF, 0x00AFFA000000FFFF]


def test_syscall_from_ring_3_enters_lstar_at_cpl_0(tmp_path):
    """Unicorn executes no ``syscall`` (it only calls hooks): the trap layer does what the CPU
    does. User code at CPL 3 (entered by iretq) sets DF and calls; the LSTAR handler must run at
    CPL 0 (``cli`` would #GP otherwise: exit 13 * 16) with RCX = the next RIP, R11 = the user's
    RFLAGS (DF set) and RFLAGS masked by SFMASK (DF clear). Exit 0x2a when all hold."""
    body = f"""
        lgdt [{DESC + 0x10:#x}]
        mov ecx, 0xC0000080; rdmsr; or eax, 1; wrmsr
        mov ecx, 0xC0000081; xor eax, eax; mov edx, 0x00200010; wrmsr
        mov ecx, 0xC0000082; mov eax, {SYSCALL_ENTRY:#x}; xor edx, edx; wrmsr
        mov ecx, 0xC0000084; mov eax, 0x400; xor edx, edx; wrmsr
        push 0x2b; push {STACK - 0x1000:#x}; push 2; push 0x33; push {USER:#x}; iretq"""
    image = bytearray(guest(body, {13: True}))
    user = _asm("std; syscall; hlt", USER)
    entry = _asm(
        f"""cli; pushfq; pop rbx
        xor eax, eax
        cmp rcx, {USER + 3:#x}; jne bad
        test r11, 0x400; jz bad
        test rbx, 0x400; jnz bad
        mov ax, cs; cmp ax, 0x10; jne bad
        mov eax, 0x2a
        bad: out 0xf4, al; hlt""",
        SYSCALL_ENTRY,
    )
    for addr, code in ((USER, user), (SYSCALL_ENTRY, entry)):
        image[addr - BASE : addr - BASE + len(code)] = code
    image[GDT - BASE : GDT - BASE + 8 * len(_GDT)] = struct.pack(f"<{len(_GDT)}Q", *_GDT)
    image[DESC + 0x10 - BASE : DESC + 0x1A - BASE] = struct.pack("<HQ", 8 * len(_GDT) - 1, GDT)
    m = run(tmp_path, bytes(image))
    assert m.exit_status == 0x2A
