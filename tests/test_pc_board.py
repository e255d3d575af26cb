"""The x86_64 ``pc`` board: its devices driven by small guests the tests write, its Linux
boot-protocol loader, and bad bzImages refused in one line."""

from __future__ import annotations

import struct
from pathlib import Path

import pcguest as g
import pytest

from kprobesim.arch import get_arch
from kprobesim.board.pc import PcBoard
from kprobesim.board.pc.bzimage import BP_CMD_LINE_PTR, BP_E820_ENTRIES, BP_E820_TABLE, BP_RAMDISK_IMAGE, LAYOUT
from kprobesim.errors import ImageError, UsageError
from kprobesim.machine import Machine


def boot(path: Path, budget: int = 2_000_000, **board: object) -> tuple[Machine, int]:
    b = PcBoard(decompress="guest", **board)  # type: ignore[arg-type]
    m = Machine(get_arch("x86_64"), b.load(path), board=b)
    return m, m.run(max_insns=budget, timeout=60)


def test_serial_polled_output_and_exit_port(tmp_path: Path) -> None:
    src = g.puts("hi pc\n") + "mov dx, 0x3fd\nin al, dx\n" + g.PUT_HEX_AL + g.exit_with(5) + g.HEXDIGIT
    m, status = boot(g.write(tmp_path, "k", src))
    assert status == 5
    assert m.console == "hi pc\n60"  # LSR: THR empty and transmitter idle, no data


def test_serial_loopback_and_scratch_as_linux_probes_them(tmp_path: Path) -> None:
    """The register checks of Linux's 8250 autoconfig: scratch, loopback of the modem lines into
    MSR and of transmitted bytes into the receiver (which is why nothing reaches the console)."""
    src = """
    mov dx, 0x3ff
    mov al, 0xa5
    out dx, al
    in al, dx
    mov r8b, al
    mov dx, 0x3fc
    mov al, 0x1a
    out dx, al
    mov dx, 0x3fe
    in al, dx
    mov r9b, al
    mov dx, 0x3f8
    mov al, 0x5a
    out dx, al
    mov dx, 0x3fd
    in al, dx
    mov r10b, al
    mov dx, 0x3f8
    in al, dx
    mov r11b, al
    mov dx, 0x3fc
    mov al, 0
    out dx, al
    """ + "".join(f"mov al, r{n}b\n" + g.PUT_HEX_AL for n in (8, 9, 10, 11)) + g.exit_with(0) + g.HEXDIGIT
    m, status = boot(g.write(tmp_path, "k", src))
    # scratch a5; loopback MSR: RTS->CTS, OUT2->DCD (0x90); byte looped back: LSR DR|THRE|TEMT; the byte
    assert (status, m.console) == (0, "a5" + "90" + "61" + "5a")


def test_serial_input_through_irq4(tmp_path: Path) -> None:
    src = g.set_gate(0x24, "irq4") + g.PIC_INIT + """
    mov al, 0xef
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov dx, 0x3fc
    mov al, 0x0b
    out dx, al
    mov dx, 0x3f9
    mov al, 1
    out dx, al
    sti
wait:
    hlt
    jmp wait
irq4:
    mov dx, 0x3fd
    in al, dx
    test al, 1
    jz irq4_end
    mov dx, 0x3f8
    in al, dx
    cmp al, 10
    je done
    sub al, 32
    out dx, al
    jmp irq4
irq4_end:
    mov al, 0x20
    out 0x20, al
    iretq
done:
    """ + g.exit_with(0)
    m, status = boot(g.write(tmp_path, "k", src), input=b"kprobe\n")
    assert (status, m.console) == (0, "KPROBE")


def test_pit_irq0_through_the_pic_on_virtual_time(tmp_path: Path) -> None:
    """Ten IRQ 0 ticks of a 10 ms rate generator take 100 ms of virtual time: the TSC (1 GHz)
    advances by 10^8 within one tick's rounding."""
    counter = g.COUNTER
    src = g.set_gate(0x20, "irq0") + g.PIC_INIT + f"""
    mov al, 0xfe
    out 0x21, al
    mov al, 0xff
    out 0xa1, al
    mov al, 0x34
    out 0x43, al
    mov al, 0x9c
    out 0x40, al
    mov al, 0x2e
    out 0x40, al
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov r12, rax
    mov qword ptr [{counter}], 0
    sti
wait:
    hlt
    cmp qword ptr [{counter}], 10
    jb wait
    cli
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, r12
    mov rdi, {counter + 8}
    mov qword ptr [rdi], rax
    """ + g.exit_with(0) + f"""
irq0:
    push rax
    add qword ptr [{counter}], 1
    mov al, 0x20
    out 0x20, al
    pop rax
    iretq
"""
    m, status = boot(g.write(tmp_path, "k", src), budget=300_000_000)
    assert status == 0
    elapsed = struct.unpack("<Q", m.read(counter + 8, 8))[0]
    assert abs(elapsed - 100_000_000) < 10_100_000  # started anywhere within the first period
    assert elapsed > 90_000_000


def test_pit_channel2_gate_and_port61_as_tsc_calibration_reads_them(tmp_path: Path) -> None:
    """Linux's quick PIT calibration: channel 2, mode 0, gated by port 0x61 bit 0; the output
    (bit 5) rises when the count reaches zero; the count reads back as it runs down."""
    src = """
    in al, 0x61
    and al, 0xfd
    or al, 1
    out 0x61, al
    mov al, 0xb0
    out 0x43, al
    mov al, 0x00
    out 0x42, al
    mov al, 0x02
    out 0x42, al
    in al, 0x42
    in al, 0x42
    mov bl, al
    in al, 0x61
    and al, 0x20
    """ + g.PUT_HEX_AL + """
poll:
    in al, 0x61
    test al, 0x20
    jz poll
    mov al, bl
    """ + g.PUT_HEX_AL + g.exit_with(0) + g.HEXDIGIT
    m, status = boot(g.write(tmp_path, "k", src), budget=20_000_000)
    assert status == 0
    # output low while counting; high byte of the count just after loading 0x200: 0x01 or 0x02
    assert m.console in ("0001", "0002")
    # 512 PIT ticks are 429 us: the poll loop ran that long in virtual time (1 ns an instruction)
    assert 429_000 < m.instructions < 440_000


def test_cmos_rtc_date_and_memory(tmp_path: Path) -> None:
    regs = [0x09, 0x32, 0x08, 0x07, 0x0B, 0x0D, 0x17, 0x18, 0x34, 0x35]
    src = "".join(f"mov al, {r}\nout 0x70, al\nin al, 0x71\n" + g.PUT_HEX_AL for r in regs)
    src += g.exit_with(0) + g.HEXDIGIT
    m, status = boot(g.write(tmp_path, "k", src))
    # 2026-01-01 in BCD, 24-hour BCD mode, valid time; memory above 1 MiB in KiB (127 MiB,
    # capped at 0xffff as the register is 16 bits) and above 16 MiB in 64 KiB units (0x0700)
    assert (status, m.console) == (0, "2620" + "0101" + "0280" + "ffff" + "0007")


def test_cpuid_is_a_plain_x86_64_without_apic(tmp_path: Path) -> None:
    src = """
    xor eax, eax
    cpuid
    mov r8d, ebx
    mov r9d, edx
    mov r10d, ecx
    mov eax, 1
    cpuid
    mov r11d, edx
    mov eax, 0x80000001
    cpuid
    mov r12d, edx
    """ + g.exit_with(0)
    m, _ = boot(g.write(tmp_path, "k", src))
    from unicorn import x86_const as xc

    r = {n: m.engine.reg_read(getattr(xc, f"UC_X86_REG_R{n}")) for n in (8, 9, 10, 11, 12)}
    vendor = b"".join(r[n].to_bytes(4, "little") for n in (8, 9, 10))
    assert vendor == b"AuthenticAMD"
    assert not r[11] & (1 << 9)  # no local APIC: Linux runs on the 8259A
    assert r[11] & 1 and r[11] & (1 << 25) and r[11] & (1 << 26)  # FPU, SSE, SSE2
    assert r[12] & (1 << 29) and r[12] & (1 << 20)  # long mode, NX


def test_i8042_reset_line_ends_the_run(tmp_path: Path) -> None:
    """Linux's keyboard-controller reboot: wait for the input buffer to drain (status bit 1), then
    pulse the reset line; port 0x80 (I/O delay) takes writes."""
    src = """
    mov al, 0x42
    out 0x80, al
kb_wait:
    in al, 0x64
    test al, 2
    jnz kb_wait
    mov al, 0xfe
    out 0x64, al
    """ + g.puts("not reached") + "hlt\n"
    m, status = boot(g.write(tmp_path, "k", src))
    assert status == 0 and m.reboot_requested and m.console == ""
    assert m.instructions < 20


def test_boot_params_command_line_e820_and_initrd(tmp_path: Path) -> None:
    rd = tmp_path / "rd"
    rd.write_bytes(b"RAMDISK!" * 512)
    src = "mov r15, rsi\n" + g.exit_with(0)
    m, _ = boot(g.write(tmp_path, "k", src), append="console=ttyS0 hello", initrd=rd)
    from unicorn import x86_const as xc

    zp = m.engine.reg_read(xc.UC_X86_REG_R15)
    assert zp == LAYOUT.zero_page
    params = m.read(zp, 0x1000)
    assert params[0x202:0x206] == b"HdrS"  # the setup header copied in
    cmd = struct.unpack_from("<I", params, BP_CMD_LINE_PTR)[0]
    assert m.read(cmd, 20) == b"console=ttyS0 hello\0"
    addr, size = struct.unpack_from("<II", params, BP_RAMDISK_IMAGE)
    assert size == 4096 and addr % 4096 == 0 and m.read(addr, 8) == b"RAMDISK!"
    n = params[BP_E820_ENTRIES]
    table = [struct.unpack_from("<QQI", params, BP_E820_TABLE + 20 * i) for i in range(n)]
    usable = [(a, s) for a, s, kind in table if kind == 1]
    assert (0, 0x9FC00) in usable and any(a == 0x100000 for a, _ in usable)
    assert addr + size <= max(a + s for a, s in usable)


def test_snapshot_restores_the_boards_devices(tmp_path: Path) -> None:
    """A restore puts every device back, and its ports reach the restored state (the PIC's
    chips are replaced on restore: port handlers look them up at each access)."""
    from kprobesim.board.pc.pic import Pic8259Pair

    b = PcBoard(decompress="guest")
    m = Machine(get_arch("x86_64"), b.load(g.write(tmp_path, "k", g.puts("ok\n") + g.exit_with(3))), board=b)
    pic = next(d for d in m.devices if isinstance(d, Pic8259Pair))
    m._port_out(0x21, 1, 0x5A)  # master IMR
    snap = m.snapshot()
    m._port_out(0x21, 1, 0xA5)
    assert m.run() == 3 and m.console == "ok\n"
    m.restore(snap)
    assert m.console == "" and m._port_in(0x21, 1) == 0x5A
    m._port_out(0x21, 1, 0x0F)
    assert pic.master.imr == 0x0F
    assert m.run() == 3 and m.console == "ok\n"


# -- bad bzImages: one line, the image-error status -----------------------------------------------
def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kprobesim: ") and "Traceback" not in err, err
    return lines[0]


def test_not_a_bzimage(run_cli, tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"\x7fELF" + bytes(2000))
    status, _, err = run_cli("--board", "pc", str(tmp_path / "k"))
    assert status == ImageError.exit_status and "not a bzImage" in _one_line(err)


def test_truncated_bzimage(run_cli, tmp_path: Path) -> None:
    k = g.write(tmp_path, "k", g.exit_with(0) * 40, truncate=1024 + 0x200 + 10)
    status, _, err = run_cli("--board", "pc", str(k))
    assert status == ImageError.exit_status and "truncated bzImage" in _one_line(err)


def test_setup_header_too_old(run_cli, tmp_path: Path) -> None:
    k = g.write(tmp_path, "k", g.exit_with(0), version=0x20A)
    status, _, err = run_cli("--board", "pc", str(k))
    assert status == ImageError.exit_status and "boot protocol 2.10 is too old" in _one_line(err)


def test_no_64bit_entry(run_cli, tmp_path: Path) -> None:
    k = g.write(tmp_path, "k", g.exit_with(0), xloadflags=0)
    status, _, err = run_cli("--board", "pc", str(k))
    assert status == ImageError.exit_status and "no 64-bit entry point" in _one_line(err)


def test_initrd_that_does_not_fit(run_cli, tmp_path: Path) -> None:
    k = g.write(tmp_path, "k", g.exit_with(0), init_size=100 << 20)  # the kernel needs up to 101 MiB
    rd = tmp_path / "rd"
    with rd.open("wb") as f:
        f.truncate(30 << 20)  # sparse: 30 MiB more of the board's 128
    status, _, err = run_cli("--board", "pc", "--decompress", "guest", "--initrd", str(rd), str(k))
    assert status == ImageError.exit_status and "does not fit" in _one_line(err)


def test_kernel_larger_than_ram(run_cli, tmp_path: Path) -> None:
    k = g.write(tmp_path, "k", g.exit_with(0), init_size=200 << 20)
    status, _, err = run_cli("--board", "pc", "--decompress", "guest", str(k))
    assert status == ImageError.exit_status and "needs RAM up to" in _one_line(err)


def test_host_decompression_needs_a_known_payload(run_cli, tmp_path: Path) -> None:
    k = g.write(tmp_path, "k", g.exit_with(0))  # no compressed payload at all
    status, _, err = run_cli("--board", "pc", str(k))
    assert status == ImageError.exit_status and "unknown compression format" in _one_line(err)


def test_pc_options_need_the_pc_board(run_cli, tmp_path: Path) -> None:
    status, _, err = run_cli("--arch", "x86_64", "--initrd", "x", str(tmp_path / "k"))
    assert status == UsageError.exit_status and "--initrd needs --board virt or pc" in _one_line(err)
    status, _, err = run_cli("--board", "pc", "--arch", "riscv64", str(tmp_path / "k"))
    assert status == UsageError.exit_status and "x86_64 machine" in _one_line(err)
    status, _, err = run_cli("--board", "pc", "--drive", "x", str(tmp_path / "k"))
    assert status == UsageError.exit_status and "--drive needs --board virt" in _one_line(err)
    status, _, err = run_cli("--board", "virt", "--decompress", "host", str(tmp_path / "k"))
    assert status == UsageError.exit_status and "--decompress needs --board pc" in _one_line(err)


def test_probes_on_a_pc_guest_under_the_loaders_page_tables(run_cli, tmp_path: Path) -> None:
    """The boot page tables map the simulator's slot window too: a kernel still running on them
    steps its probed instruction out of line there (both step variants)."""
    k = g.write(tmp_path, "k", g.puts("ok\n") + g.exit_with(3))
    for step in ("tf", "int3"):
        status, out, _ = run_cli("--board", "pc", "--decompress", "guest", "--step", step, "-p", "p:x 0x100200", str(k))
        assert status == 3 and b"ok\n" in out and out.count(b" x: (0x100200)") == 1, out


def test_cli_runs_a_pc_guest_with_input_and_append(run_cli, tmp_path: Path) -> None:
    k = g.write(tmp_path, "k", g.puts("ok\n") + g.exit_with(3))
    status, out, _ = run_cli("--board", "pc", "--decompress", "guest", "--append", "quiet", "--input", "x\\n", str(k))
    assert (status, out) == (3, b"ok\n")


@pytest.mark.parametrize("decompress", ["guest"])
def test_loader_places_the_protected_mode_kernel_at_its_preferred_address(tmp_path: Path, decompress: str) -> None:
    k = g.write(tmp_path, "k", g.exit_with(0), pref=0x400000)
    b = PcBoard(decompress=decompress)
    image = b.load(k)
    assert b.loaded is not None and b.loaded.entry == 0x400200 and image.entry == 0x400200
