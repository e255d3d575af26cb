"""The Unicorn engine's register file: general registers and the PC read and written straight
in the CPU state agree with libunicorn's own ``uc_reg_read``/``uc_reg_write``."""

from __future__ import annotations

import random

import pytest
from unicorn import UC_ARCH_RISCV, UC_ARCH_X86, UC_MODE_64, UC_MODE_RISCV64, Uc

from kprobesim.engine.unicorn import _FILE_REGS, new_unicorn

ENGINES = {"riscv64": (UC_ARCH_RISCV, UC_MODE_RISCV64), "x86_64": (UC_ARCH_X86, UC_MODE_64)}


@pytest.mark.parametrize("arch", ENGINES)
def test_register_file_matches_the_api(arch: str) -> None:
    uc = new_unicorn(*ENGINES[arch])
    assert uc.direct_registers is not None, "the calibration found no register file on this Unicorn build"
    regs, pc = _FILE_REGS[ENGINES[arch][0]]
    api_read, api_write = Uc.reg_read.__get__(uc), Uc.reg_write.__get__(uc)  # the binding's own path
    rng = random.Random(7)
    for _ in range(3):
        values = {rid: rng.getrandbits(64) for rid in (*regs, pc)}
        for rid, value in values.items():  # written through the file, read through the API
            if rid == pc:
                uc.write_pc(value)
            else:
                uc.reg_write(rid, value)
        assert {rid: api_read(rid) for rid in values} == values
        values = {rid: rng.getrandbits(64) for rid in values}
        for rid, value in values.items():  # written through the API, read through the file
            api_write(rid, value)
        assert {rid: uc.reg_read(rid) for rid in values} == values


def test_each_engine_has_its_own_file() -> None:
    a, b = new_unicorn(*ENGINES["riscv64"]), new_unicorn(*ENGINES["riscv64"])
    rid = _FILE_REGS[UC_ARCH_RISCV][0][1]
    a.reg_write(rid, 1)
    b.reg_write(rid, 2)
    assert (a.reg_read(rid), b.reg_read(rid)) == (1, 2)
