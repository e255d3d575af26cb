"""x86_64: Unicorn engine, PC-like board (COM1, PIT, debug-exit port), IDT trap delivery."""

from unicorn import UC_ARCH_X86, UC_MODE_64
from unicorn import x86_const as xc

from kprobesim.arch import Arch
from kprobesim.board import Pit, PortExit, Uart16550
from kprobesim.engine.unicorn import new_unicorn

from .traps import Traps

_DUMP = "rip rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rflags cs ss".split()

ARCH = Arch(
    name="x86_64",
    ram=(0x0, 0x8000000),
    sim_base=0x4000_0000,  # outside RAM, within rel32 reach of the kernel (RIP-relative slots)
    new_engine=lambda: new_unicorn(UC_ARCH_X86, UC_MODE_64),
    devices=lambda: [Uart16550(0x3F8, ports=True), PortExit(0xF4), Pit()],
    traps=Traps,
    pc_reg=xc.UC_X86_REG_RIP,
    sp_reg=xc.UC_X86_REG_RSP,
    dump_regs=[(name, getattr(xc, f"UC_X86_REG_{name.upper()}")) for name in _DUMP],
    until=0xFFFF_FFFF_FFFF_FFF0,
    default_base=0x100000,
)
