"""The riscv64 virt board: CPU behaviour kernels rely on (checked by small M/S/U programs built
here with zig's clang), the generated device tree (read back by dtc, which nobody here wrote),
and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from unicorn import UC_HOOK_MEM_INVALID, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE

from kprobesim.arch import get_arch
from kprobesim.board import fdt
from kprobesim.board.virt import RNG_SEED, Virt, VirtOptions
from kprobesim.image import Image
from kprobesim.machine import Machine

CHECKS = Path(__file__).parent / "virt" / "cpu_checks.S"
ZIG = [sys.executable, "-m", "ziglang"]


@pytest.fixture(scope="module")
def build_check(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("virt-checks")

    def build(scenario: int) -> Path:
        obj, elf = out / f"s{scenario}.o", out / f"s{scenario}.elf"
        subprocess.run(
            [*ZIG, "cc", "-target", "riscv64-freestanding", "-mcpu=baseline_rv64", f"-DSCENARIO={scenario}",
             "-c", "-o", str(obj), str(CHECKS)],
            check=True,
        )
        link = [*ZIG, "ld.lld", "-N", "-Ttext=0x80000000", "-e", "_start", "-o", str(elf), str(obj)]
        subprocess.run(link, check=True)
        return elf

    return build


def _run(elf: Path) -> Machine:
    m = Machine(get_arch("riscv64"), Image.load(elf), board=Virt())
    m.run(max_insns=100_000)
    return m


@pytest.mark.parametrize(
    ("scenario", "status", "what"),
    [
        (1, 9, "ecall from S-mode reaches M-mode as cause 9 (Unicorn reports 8)"),
        (2, 8, "ecall from U-mode, delegated by medeleg, reaches stvec as scause 8"),
        (3, 2, "two rdtime reads 60 instructions apart differ by two ticks of 30 instructions, no trap"),
        (4, 0x4321, "a load access fault's mtval is the address (>> 12)"),
        (5, 0x37, "Sv39 store (4- and 2-byte) and fetch page faults return to the faulting instruction"),
        (6, 0x40, "a 2-byte illegal instruction's mepc is its own address (Unicorn reports it 4 bytes on)"),
        # the edge's load is instruction 30, the deadline instruction 120: 8 set-up instructions,
        # then 81 of the addi/j loop (41 addi) before the interrupt; mtime == mtimecmp in mtrap
        (7, 0x29, "the CLINT's mtime ticks every 30 instructions; its interrupt comes at the deadline"),
        (10, 0x12, "code rewritten through a read/write-only alias runs anew (Unicorn alone ran the old)"),
    ],
)
def test_cpu_behaviour(build_check, scenario: int, status: int, what: str) -> None:
    m = _run(build_check(scenario))
    assert m.exit_status == status, what


@pytest.mark.parametrize("probe", [None, "raised", "raised+4", "raised+12"])
def test_device_raised_interrupt_comes_at_the_next_instruction(build_check, probe: str | None) -> None:
    """A store to the UART's IER raises MEIP with interrupts enabled: the hart takes it before
    the next instruction, probed or not (Unicorn alone took it at the end of the translation
    block, which a probe moves: 8, 1, 3 and 7 of the following addi ran; QEMU, at its block's
    end, runs 8)."""
    m = Machine(get_arch("riscv64"), Image.load(build_check(8)), board=Virt())
    if probe is not None:
        m.kprobe(probe)
    m.run(max_insns=100_000)
    assert (m.exit_status, m.instructions) == (11 << 8, 28)  # machine external interrupt, no addi ran


@pytest.mark.parametrize("memory", [256 << 20, 1 << 30])
def test_simulator_pages_follow_ram_of_any_size(build_check, memory: int) -> None:
    """``--memory`` above 256 MiB used to overlap the simulator's pages (a UC_ERR_MAP traceback)."""
    m = Machine(get_arch("riscv64"), Image.load(build_check(7)), board=Virt(VirtOptions(memory=memory)))
    assert m.sim_base == 0x80000000 + memory
    m.run(max_insns=100_000)
    assert m.exit_status == 0x29


def test_no_access_hook_and_ram_under_the_fault_hook(build_check) -> None:
    """Linux's boot speed rests on the first: any ``UC_HOOK_MEM_READ``/``WRITE`` hook sends every
    guest load and store down TCG's slow path. Correct code rests on the second: only a memory
    hook over a RAM page keeps Unicorn 2.1.4 checking each store to it for translated code
    (scenario 10; without it xv6's ``stressfs`` ran another process's code). Faults outside RAM
    still reach the guest (scenario 4's mtval)."""
    arch = get_arch("riscv64")
    seen: list[tuple[int, int, int]] = []

    def engine():  # noqa: ANN202
        uc = arch.new_engine()
        add = uc.hook_add

        def hook_add(htype, callback, user_data=None, begin=1, end=0, *rest):  # noqa: ANN001, ANN202
            seen.append((htype, begin, end))
            return add(htype, callback, user_data, begin, end, *rest)

        uc.hook_add = hook_add
        return uc

    m = Machine(dataclasses.replace(arch, new_engine=engine), Image.load(build_check(4)), board=Virt())
    m.run(max_insns=100_000)
    assert m.exit_status == 0x4321
    ram, size = m.ram
    faults = [(begin, end) for htype, begin, end in seen if htype & UC_HOOK_MEM_INVALID]
    assert not any(htype & (UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE) for htype, _, _ in seen)
    assert any(begin > end or begin <= ram and ram + size - 1 <= end for begin, end in faults), faults


def test_host_store_over_translated_code_is_seen(build_check) -> None:
    """A store the simulator makes into RAM (a device's DMA, ``write_phys``) over code already
    translated drops that translation, even with paging on: Unicorn's ``uc_mem_write`` does
    not (scenario 11: the host rewrites ``patched`` between its two calls)."""
    image = Image.load(build_check(11))
    m = Machine(get_arch("riscv64"), image, board=Virt())
    m.run_to(image.symbol("host_patch").addr, max_insns=100_000)
    m.write_phys(image.symbol("patched").addr, (0x00200513).to_bytes(4, "little"))  # addi a0, zero, 2
    m.run(max_insns=100_000)
    assert m.exit_status == 0x12


def test_device_tree_read_back_by_dtc(tmp_path: Path) -> None:
    dtc = shutil.which("dtc")
    assert dtc, "dtc (Debian device-tree-compiler) is the oracle for the generated tree"
    board = Virt(VirtOptions(memory=128 << 20, append="console=ttyS0 earlycon", drives=[__file__]))
    blob = board.device_tree((0x87000000, 0x87100000))
    path = tmp_path / "virt.dtb"
    path.write_bytes(blob)
    done = subprocess.run([dtc, "-I", "dtb", "-O", "dts", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    dts = done.stdout
    assert 'bootargs = "console=ttyS0 earlycon";' in dts
    assert "reg = <0x00 0x80000000 0x00 0x8000000>;" in dts
    assert "linux,initrd-start = <0x00 0x87000000>;" in dts
    assert 'riscv,isa = "rv64imafdc";' in dts and "timebase-frequency = <0x989680>;" in dts
    assert dts.count('compatible = "virtio,mmio";') == 8 and "interrupts = <0x0a>;" in dts
    root = fdt.parse(blob)  # our reader agrees with our writer
    assert root.children[0].name == "chosen" and root.children[0].props["bootargs"] == b"console=ttyS0 earlycon\0"
    # 32 bytes of seed for Linux's RNG in /chosen, as QEMU's virt gives, the same in every run
    assert root.children[0].props["rng-seed"] == RNG_SEED and len(RNG_SEED) == 32
    assert "rng-seed = <0x" in dts and Virt(VirtOptions()).device_tree().count(RNG_SEED) == 1


def test_boot_registers_and_dtb_in_memory() -> None:
    elf = Path(__file__).resolve().parents[1] / "firmware/riscv64/kernel.elf"
    board = Virt()
    m = Machine(get_arch("riscv64"), Image.load(elf), board=board)
    from unicorn.riscv_const import UC_RISCV_REG_A0, UC_RISCV_REG_A1

    assert m.engine.reg_read(UC_RISCV_REG_A0) == 0
    assert m.engine.reg_read(UC_RISCV_REG_A1) == board.dtb_addr
    assert m.read(board.dtb_addr, 4) == b"\xd0\x0d\xfe\xed"
    assert board.dtb_addr + 0x200000 <= 0x80000000 + (256 << 20)


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["--board", "virt", "firmware/x86_64/kernel.elf"], 65, "ELF is for x86_64, not riscv64"),
        (["--board", "virt", "--dtb", "README.md", "firmware/riscv64/kernel.elf"], 65, "not a device tree"),
        (["--drive", "README.md", "firmware/riscv64/kernel.elf"], 64, "--drive needs --board virt"),
        (["--board", "virt", "--memory", "3", "firmware/riscv64/kernel.elf"], 64, "--memory must be"),
        (["--board", "virt", "--bios", "/nonexistent", "firmware/riscv64/kernel.elf"], 65, "no such file"),
        (["--board", "virt", "--bios", "/dev/zero", "firmware/riscv64/kernel.bin"], 65, "not a regular file"),
        (["--board", "virt", "--bios", "/dev/null", "firmware/riscv64/kernel.bin"], 65, "not a regular file"),
    ],
)
def test_bad_input_one_line(run_cli, args: list[str], status: int, needle: str) -> None:
    got, _, err = run_cli(*args)
    assert got == status and needle in err and len(err.strip().splitlines()) == 1, err


def test_firmware_that_never_reaches_the_kernel(run_cli, tmp_path: Path) -> None:
    bios = tmp_path / "spin.bin"
    bios.write_bytes(bytes.fromhex("6f000000"))  # j . : spins in M-mode forever
    got, _, err = run_cli(
        "--board", "virt", "--bios", str(bios), "--max-insns", "200000", "firmware/riscv64/kernel.bin",
        "--arch", "riscv64",
    )
    assert got == 124 and "instruction budget exhausted" in err


def test_empty_firmware_one_line(run_cli, tmp_path: Path) -> None:
    bios = tmp_path / "empty.bin"
    bios.write_bytes(b"")
    got, _, err = run_cli("--board", "virt", "--bios", str(bios), "firmware/riscv64/kernel.bin", "--arch", "riscv64")
    assert got == 65 and "the firmware is empty" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("scenario", "status"), [(5, 0x37), (6, 0x40), (9, 0), (10, 0x12)])
def test_scenarios_match_qemu(build_check, scenario: int, status: int) -> None:
    """The exception-PC scenarios, the SiFive test device's FINISHER_FAIL with code 0 (QEMU exits
    0) and the rewritten code under qemu-system-riscv64's virt machine end with the same status."""
    qemu = shutil.which("qemu-system-riscv64")
    assert qemu, "qemu-system-riscv64 (Debian qemu-system-misc) is the oracle"
    elf = build_check(scenario)
    done = subprocess.run([qemu, "-M", "virt", "-m", "128M", "-bios", "none", "-kernel", str(elf), "-nographic",
                           "-monitor", "none", "-serial", "none"], capture_output=True, timeout=60)
    assert done.returncode == _run(elf).exit_status == status, done.stderr


@pytest.mark.parametrize(("scenario", "ends"), [(20, "its end line"), (21, "the grace after the panic line")])
def test_kernel_panic_on_the_console_ends_the_run(run_cli, build_check, scenario: int, ends: str) -> None:
    """Linux's panic lines on the console (printed by a small program; the real kernel's panics
    are in test_virt_linux_panic.py) end the run at once, or once the grace is spent when the
    kernel would wait (panic=N): one line naming the reason, then the last console lines, 125."""
    from kprobesim.guest.panic import GRACE

    got, out, err = run_cli("--board", "virt", "--bios", "none", "--max-insns", str(4 * GRACE),
                            str(build_check(scenario)))
    lines = err.splitlines()
    assert got == 125 and lines[0].startswith(
        "kprobesim: guest kernel panic: Kernel panic - not syncing: checked reason (after "
    ), (ends, err)
    spent = int(lines[0].rsplit("(after ", 1)[1].split()[0])
    assert (spent < 1000) if scenario == 20 else (GRACE <= spent < GRACE + 1_000_000), (ends, spent)
    shown = ["booting", "[    0.250000] Kernel panic - not syncing: checked reason",
             "[    0.250010] CPU: 0 UID: 0 PID: 1 Comm: init"]
    if scenario == 20:
        shown.append("[    0.250100] ---[ end Kernel panic - not syncing: checked reason ]---")
    assert lines[1:] == ["last console lines:", *(f"  {line}" for line in shown)], err
    assert out.decode().replace("\r\n", "\n") == "\n".join(shown) + "\n"  # the console went to stdout
