"""loongarch64: the P-code (SLEIGH) engine, a QEMU-virt-like board, LoongArch kprobe rules."""

from kprobesim.arch import Arch
from kprobesim.board import TestExit, Uart16550
from kprobesim.engine.pcode import loongarch_const as lc

from .traps import Traps


def _engine():  # noqa: ANN202 - imported lazily: pypcode loads SLEIGH on first use
    from kprobesim.engine.pcode.engine import PcodeEngine

    return PcodeEngine("loongarch64")


_CSRS = ("crmd", "prmd", "ecfg", "estat", "era", "badv", "eentry", "tcfg", "tval")

ARCH = Arch(
    name="loongarch64",
    ram=(0x0, 0x10000000),
    sim_base=0x3000_0000,
    new_engine=_engine,
    devices=lambda: [Uart16550(0x1FE001E0), TestExit(0x100D0000)],
    traps=Traps,
    pc_reg=lc.LA_REG_PC,
    sp_reg=lc.LA_REG_SP,
    dump_regs=[("pc", lc.LA_REG_PC)]
    + [(f"r{i}", lc.LA_REG_R0 + i) for i in range(1, 32)]
    + [(name, getattr(lc, f"LA_REG_CSR_{name.upper()}")) for name in _CSRS],
    until=0xFFFF_FFFF_FFFF_FFF0,
    default_base=0x200000,
)
