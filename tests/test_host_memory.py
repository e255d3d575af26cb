"""Host reads and stores of guest RAM (straight in the host buffer Unicorn runs from, while no
memory snapshot is on): stored code replaces translated code, snapshots still restore RAM
exactly, and bytes read directly equal what the engine's own memory API returns.

Each test runs the bundled kernel for a few thousand instructions: well under a second of CPU.
"""

from __future__ import annotations

import pytest
from fwpaths import firmware
from unicorn import UcError

from kprobesim.errors import BudgetExhausted, GuestFault
from kprobesim.machine import Machine
from kprobesim.task import CURRENT_SYMBOL

UNICORN_ARCHES = ("riscv64", "x86_64")
ALL_ARCHES = ("riscv64", "x86_64", "loongarch64")
#: An instruction that jumps to itself (riscv ``j .``, x86 ``jmp $``).
SPIN = {"riscv64": bytes.fromhex("6f000000"), "x86_64": bytes.fromhex("ebfe")}


def _into_fib(arch: str) -> tuple[Machine, int]:
    """A machine stopped a few thousand instructions into the recursion of ``fib`` (so the
    engine has translated fib's code), and fib's address."""
    m = Machine.load(firmware(arch))
    fib = m.image.symbol("fib").addr
    m.run_to(fib)
    with pytest.raises(BudgetExhausted):
        m.run(max_insns=3000)
    return m, fib


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
@pytest.mark.parametrize("how", ["write", "write_phys"])
def test_host_store_replaces_translated_code(arch: str, how: str) -> None:
    """A host store over code the guest has run drops its translations: the guest next runs
    the stored instruction (a jump to itself), not the old code (Unicorn 2.1.4 keeps stale
    translations after a host store unless told)."""
    m, fib = _into_fib(arch)
    assert m._ram_view is not None  # the direct path is what is tested
    getattr(m, how)(fib, SPIN[arch])
    with pytest.raises(BudgetExhausted):
        m.run(max_insns=20_000)
    assert m.pc == fib


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_store_from_a_probe_handler_replaces_translated_code(arch: str) -> None:
    """The same from inside a trap (a probe handler's ``write_mem``, the path kretprobes take):
    the instruction after the probed one, run and translated by earlier calls, becomes a
    jump to itself at the 20th hit."""
    m = Machine.load(firmware(arch))
    fib = m.image.symbol("fib").addr
    kp = m.kprobe("fib", pre=lambda p, r: 0)
    after = fib + m.probes.sites[fib].decision.length

    def pre(p, regs) -> int:
        if p.hits == 20:
            regs.write_mem(after, SPIN[arch])
        return 0

    kp.pre = pre
    with pytest.raises(BudgetExhausted):
        m.run(max_insns=200_000)
    assert kp.hits == 20
    assert m.pc == after


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_direct_reads_equal_the_engine(arch: str) -> None:
    """RAM read from the host buffer equals Unicorn's ``mem_read``, after guest stores too,
    and an address outside RAM still faults in a handler (GuestFault)."""
    m, fib = _into_fib(arch)
    lo, size = m.ram
    for addr in (lo, fib, fib + 1, lo + size - 8):
        assert m.read(addr, 8) == bytes(m.engine.mem_read(addr, 8))
    sp = m.engine.reg_read(m.arch.sp_reg)
    assert m.read(sp, 64) == bytes(m.engine.mem_read(sp, 64))  # the guest's own stores
    m.write(sp - 64, b"\x5a" * 16)
    assert bytes(m.engine.mem_read(sp - 64, 16)) == b"\x5a" * 16

    faults = []

    def pre(p, regs) -> int:
        try:
            regs.read_mem(lo + size, 8)
        except GuestFault as e:
            faults.append(str(e))
        return 0

    m.kprobe("fib", pre=pre)
    with pytest.raises(BudgetExhausted):
        m.run(max_insns=2000)
    assert faults and "not guest memory" in faults[0]


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_read_u64_equals_the_engine(arch: str) -> None:
    """``read_u64`` (the eBPF pid helper's direct RAM read; on the P-code engine its own RAM
    region's) gives the little-endian u64 the engine's ``mem_read`` returns, at RAM's ends and
    the guest's stack, and refuses a read running off RAM's end as ``read`` does."""
    m, fib = _into_fib(arch)
    assert (m._ram_view is not None) == (arch in UNICORN_ARCHES)
    assert (m._ram_u64 is not None) == (arch not in UNICORN_ARCHES)
    lo, size = m.ram
    sp = m.engine.reg_read(m.arch.sp_reg)
    for addr in (lo, fib, fib + 3, sp, lo + size - 8):
        assert m.read_u64(addr) == int.from_bytes(bytes(m.engine.mem_read(addr, 8)), "little")
    with pytest.raises(UcError):
        m.read(lo + size - 4, 8)
    with pytest.raises(UcError):
        m.read_u64(lo + size - 4)


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_read_u64_in_a_probe_hit_equals_the_engine(arch: str) -> None:
    """Inside a probe hit (x86_64: a trap while paging is off, noted at the hit's first access,
    which here is ``read_u64``'s or ``read_u64_at``'s own), ``read_u64`` gives what the engine's
    ``mem_read`` does, and ``read_u64_at`` the u64 its pointer leads to (the pid helper's read
    of the current task's ids; 0 for a null pointer)."""
    m = Machine.load(firmware(arch))
    lo, size = m.ram
    fib = m.image.symbol("fib").addr
    seen: list[tuple[int, int]] = []

    cur = m.image.symbol(CURRENT_SYMBOL).addr
    zero = lo + size - 8  # the top of RAM: zero on every board

    def engine_u64(addr: int) -> int:
        return int.from_bytes(bytes(m.engine.mem_read(addr, 8)), "little")

    hits = [0]

    def pre(probe: object, regs: object) -> int:
        hits[0] += 1
        if hits[0] > 4:
            return 0
        first = hits[0] % 2 == 1  # the hit's first access: read_u64_at (x86_64: notes paging)
        if first:
            ptr = engine_u64(cur)
            seen.append((m.read_u64_at(cur), engine_u64(ptr) if ptr else 0))
        sp = m.engine.reg_read(m.arch.sp_reg)
        for addr in (sp, lo, fib + 1, zero):
            seen.append((m.read_u64(addr), engine_u64(addr)))
        seen.append((m.read_u64_at(zero), 0))
        if not first:
            seen.append((m.read_u64_at(cur), engine_u64(engine_u64(cur))))
        return 0

    m.kprobe("fib", pre=pre)
    m.run()
    assert len(seen) == 24 and all(got == want for got, want in seen), seen
    assert any(got for got, _ in seen) and engine_u64(zero) == 0


@pytest.mark.parametrize("arch", UNICORN_ARCHES)
def test_snapshot_restores_ram_written_directly(arch: str) -> None:
    """Bytes stored through the host buffer before a snapshot are restored by it; after the
    snapshot, host stores and reads go through the engine (copy-on-write owns the pages)."""
    m, fib = _into_fib(arch)
    sp = m.engine.reg_read(m.arch.sp_reg)
    m.write(sp - 256, b"before!!")
    snap = m.snapshot()
    assert m._ram_view is None
    m.write(sp - 256, b"after!!!")
    assert m.read(sp - 256, 8) == b"after!!!"
    with pytest.raises(BudgetExhausted):
        m.run(max_insns=5000)
    m.restore(snap)
    assert m.read(sp - 256, 8) == b"before!!"
    assert bytes(m.engine.mem_read(sp - 256, 8)) == b"before!!"
    assert m.run() == Machine.load(firmware(arch)).run()  # the rest of the run as unsnapshotted
