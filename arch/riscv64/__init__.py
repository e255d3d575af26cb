"""riscv64: Unicorn engine, QEMU-virt-like board, M-mode trap delivery, kprobe rules."""

from unicorn import UC_ARCH_RISCV, UC_MODE_RISCV64
from unicorn import riscv_const as rc

from kprobesim.arch import Arch
from kprobesim.board import Clint, TestExit, Uart16550
from kprobesim.engine.unicorn import new_unicorn

from .traps import Traps

_ABI = (
    "zero ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6"
).split()

ARCH = Arch(
    name="riscv64",
    ram=(0x80000000, 0x8000000),
    sim_base=0x90000000,
    new_engine=lambda: new_unicorn(UC_ARCH_RISCV, UC_MODE_RISCV64),
    devices=lambda: [Uart16550(0x10000000), TestExit(0x100000), Clint(0x2000000)],
    traps=Traps,
    pc_reg=rc.UC_RISCV_REG_PC,
    sp_reg=rc.UC_RISCV_REG_SP,
    dump_regs=[("pc", rc.UC_RISCV_REG_PC)]
    + [(name, rc.UC_RISCV_REG_X0 + i) for i, name in enumerate(_ABI) if i]
    + [
        ("mstatus", rc.UC_RISCV_REG_MSTATUS),
        ("mepc", rc.UC_RISCV_REG_MEPC),
        ("mcause", rc.UC_RISCV_REG_MCAUSE),
    ],
    until=0xFFFF_FFFF_FFFF_FFF0,
    default_base=0x80000000,
)
