"""Guests that retire little or nothing still end on their budget (issue 15 item 4): every trap
or interrupt the guest enters spends budget, a storm of entries that retires nothing is a guest
fault, and each such run ends with one clear line within a second of a small ``--max-insns``."""

from __future__ import annotations

import struct
import time

import pytest

from kprobesim.errors import BudgetExhausted, GuestFault

T0, T1, T2 = 5, 6, 7


def _w(*words: int) -> bytes:
    return b"".join(struct.pack("<I", v) for v in words)


def _rv_csrw(csr: int, rs1: int) -> int:
    return csr << 20 | rs1 << 15 | 1 << 12 | 0x73


def _rv_csrsi(csr: int, imm: int) -> int:
    return csr << 20 | imm << 15 | 6 << 12 | 0x73


def _rv_addi(rd: int, rs1: int, imm: int) -> int:
    return (imm & 0xFFF) << 20 | rs1 << 15 | rd << 7 | 0x13


MTVEC, MIE, MSTATUS, MRET = 0x305, 0x304, 0x300, 0x30200073
# mtimecmp set in the past with the timer interrupt enabled; the handler returns at once, so
# the interrupt is taken again after one instruction, for ever
RV_PAST = _w(
    0x00000297,  # auipc t0, 0
    _rv_addi(T0, T0, 32),  # t0 = the handler (the mret below)
    _rv_csrw(MTVEC, T0),
    _rv_addi(T1, 0, 0x80),
    _rv_csrw(MIE, T1),  # MTIE
    _rv_csrsi(MSTATUS, 8),  # MIE
    0x020043B7,  # lui t2, 0x2004 (mtimecmp)
    0x0003B023,  # sd zero, 0(t2)
    MRET,
)
# the trap vector is an illegal instruction: every trap enters it again
RV_TRAP_LOOP = _w(0x00000297, _rv_addi(T0, T0, 16), _rv_csrw(MTVEC, T0), 0xFFFFFFFF, 0)
# loongarch64: pcaddi $t0, 3; csrwr $t0, EENTRY; then an undefined word at EENTRY
LA_TRAP_LOOP = _w(0x18000000 | 3 << 5 | 12, 0x04000000 | 0xC << 10 | 1 << 5 | 12, 0x03400000, 0xFFFFFFFF)

GUESTS = {
    "riscv64-mtimecmp-in-the-past": ("riscv64", RV_PAST),
    "riscv64-trap-loop": ("riscv64", RV_TRAP_LOOP),
    "loongarch64-trap-loop": ("loongarch64", LA_TRAP_LOOP),
}


@pytest.mark.parametrize("name", GUESTS)
def test_guest_that_retires_little_ends_on_its_budget(run_cli, tmp_path, name):
    budget = 5_000
    arch, code = GUESTS[name]
    (tmp_path / "g.bin").write_bytes(code)
    t0 = time.process_time()  # CPU time: the machine may be shared
    status, _, err = run_cli("--arch", arch, "--max-insns", str(budget), str(tmp_path / "g.bin"))
    elapsed = time.process_time() - t0
    lines = err.strip().splitlines()
    assert status == BudgetExhausted.exit_status, err
    assert len(lines) == 1 and lines[0].startswith("kprobesim: instruction budget exhausted after "), err
    entries = int(lines[0].split(" and ")[1].split()[0])
    assert entries >= budget // 4, lines[0]  # the loop spent its budget entering traps
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"



def _x86_ud_loop() -> bytes:
    """x86_64: lidt, a stack, ud2; #UD's handler is itself ud2, so every entry pushes a frame
    and faults again before retiring anything."""
    import keystone

    from kprobesim.arch import get_arch

    base = get_arch("x86_64").default_base
    ks = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_64)
    image = bytearray(0x2000)
    body = bytes(ks.asm(f"lidt [{base + 0xF00:#x}]; mov rsp, {base + 0x80000:#x}; ud2", base)[0])
    image[: len(body)] = body
    handler = base + 0x800
    image[0x800:0x802] = b"\x0f\x0b"  # ud2
    gate = struct.pack("<HHBBHII", handler & 0xFFFF, 0, 0, 0x8E, handler >> 16 & 0xFFFF, handler >> 32, 0)
    image[0x1000 + 16 * 6 : 0x1000 + 16 * 7] = gate
    image[0xF00:0xF0A] = struct.pack("<HQ", 32 * 16 - 1, base + 0x1000)
    return bytes(image)


def test_trap_storm_that_retires_nothing_is_a_guest_fault(run_cli, tmp_path):
    (tmp_path / "g.bin").write_bytes(_x86_ud_loop())
    t0 = time.process_time()
    status, _, err = run_cli("--arch", "x86_64", "--max-insns", "5000", str(tmp_path / "g.bin"))
    elapsed = time.process_time() - t0
    assert status == GuestFault.exit_status, err
    first = err.splitlines()[0]
    assert first.startswith("kprobesim: guest fault: trap storm: 1000 trap and interrupt entries in a row"), err
    assert "Traceback" not in err and elapsed < 1.0
