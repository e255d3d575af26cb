"""The bundled firmware: reproducible builds, image contents, and transcripts under real QEMU.

The QEMU tests fail (they do not skip) when QEMU is missing: CI installs qemu-system-misc.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
ARCHES = ("riscv64", "loongarch64", "x86_64")
OUTPUTS = ("kernel.elf", "kernel.bin", "System.map", "kernel.btf")
BASES = {"riscv64": 0x80000000, "loongarch64": 0x200000, "x86_64": 0x100000}

C_TARGETS = (
    "do_work",
    "fib",
    "sum_array",
    "memcpy",
    "strlen",
    "schedule",
    "handle_syscall",
    "timer_interrupt",
)
ASM_TARGETS = (
    "pcrel_load",
    "pcrel_addr",
    "call_first",
    "branch_first",
    "jump_first",
    "indirect_first",
)
EXTRA_TARGET = {
    "riscv64": "c_addi16sp_first",
    "loongarch64": "pcaddu18i_first",
    "x86_64": "pushf_first",
}


def _w32(code: bytes) -> int:
    return int.from_bytes(code[:4], "little")


def _rv_first_ok(name: str, code: bytes) -> bool:
    w, hw = _w32(code), int.from_bytes(code[:2], "little")
    rd, rs2, funct3 = (w >> 7) & 0x1F, (w >> 20) & 0x1F, (w >> 12) & 7
    return {
        "pcrel_load": w & 0x7F == 0x17,  # auipc
        "pcrel_addr": w & 0x7F == 0x17,  # auipc
        "call_first": w & 0x7F == 0x6F and rd != 0,  # jal rd != zero
        "branch_first": w & 0x7F == 0x63 and funct3 == 0 and rs2 == 0,  # beqz
        "jump_first": w & 0x7F == 0x6F and rd == 0,  # j
        "indirect_first": w & 0x7F == 0x67,  # jalr / jr
        # c.addi16sp: quadrant 1, funct3 011, rd = sp
        "c_addi16sp_first": hw & 3 == 1 and hw >> 13 == 3 and (hw >> 7) & 0x1F == 2,
    }[name]


def _la_first_ok(name: str, code: bytes) -> bool:
    w = _w32(code)
    return {
        "pcrel_load": w >> 25 == 0x0D,  # pcalau12i
        "pcrel_addr": w >> 25 == 0x0E,  # pcaddu12i
        "pcaddu18i_first": w >> 25 == 0x0F,  # pcaddu18i
        "call_first": w >> 26 == 0x15,  # bl
        "branch_first": w >> 26 == 0x16,  # beq
        "jump_first": w >> 26 == 0x14,  # b
        "indirect_first": w >> 26 == 0x13,  # jirl
    }[name]


def _x86_first_ok(name: str, code: bytes) -> bool:
    rex = 1 if 0x40 <= code[0] <= 0x4F else 0
    op, modrm = code[rex], code[rex + 1]
    return {
        "pcrel_load": rex == 1 and op == 0x8B and modrm & 0xC7 == 0x05,  # mov X(%rip), %r
        "pcrel_addr": rex == 1 and op == 0x8D and modrm & 0xC7 == 0x05,  # lea X(%rip), %r
        "call_first": code[0] == 0xE8,  # call rel32
        "branch_first": code[0] == 0x74 or code[:2] == b"\x0f\x84",  # je
        "jump_first": code[0] in (0xE9, 0xEB),  # jmp rel
        "indirect_first": op == 0xFF and modrm >> 6 == 3 and (modrm >> 3) & 7 in (2, 4),
        "pushf_first": code[0] == 0x9C,  # pushf
    }[name]


FIRST_OK = {"riscv64": _rv_first_ok, "loongarch64": _la_first_ok, "x86_64": _x86_first_ok}


def _system_map(arch: str) -> dict[str, int]:
    symbols = {}
    for line in (FIRMWARE / arch / "System.map").read_text().splitlines():
        addr, _kind, name = line.split()
        symbols[name] = int(addr, 16)
    return symbols


#: One worker runs the module: the rebuild (~9 s of CPU) is done once, not once per worker.
pytestmark = pytest.mark.xdist_group("firmware-rebuild")


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("firmware")
    proc = subprocess.run(
        [sys.executable, str(FIRMWARE / "build.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("name", OUTPUTS)
@pytest.mark.parametrize("arch", ARCHES)
def test_rebuild_is_byte_identical(rebuilt: Path, arch: str, name: str) -> None:
    fresh, committed = rebuilt / arch / name, FIRMWARE / arch / name
    assert fresh.read_bytes() == committed.read_bytes(), (
        f"{arch}/{name} differs from a rebuild: run 'python firmware/build.py' and commit"
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_image_contents(arch: str) -> None:
    import lief  # here, not at collection: importing it costs ~1 s of CPU in every worker

    symbols = _system_map(arch)
    image = (FIRMWARE / arch / "kernel.bin").read_bytes()
    base = BASES[arch]
    assert symbols["_start"] == base
    elf = lief.parse(str(FIRMWARE / arch / "kernel.elf"))
    assert elf.entrypoint == base
    funcs = {s.name: s for s in elf.symbols if s.type == lief.ELF.Symbol.TYPE.FUNC}
    assert not [n for n, s in funcs.items() if s.size == 0], "functions without .size"
    for name in (*C_TARGETS, *ASM_TARGETS, EXTRA_TARGET[arch]):
        assert name in funcs, name
        assert symbols[name] == funcs[name].value
    for name in ("current_task", "kernel_checksum", "syscall_count", "tasks"):
        assert name in symbols, name
    for name in (*ASM_TARGETS, EXTRA_TARGET[arch]):
        off = symbols[name] - base
        assert FIRST_OK[arch](name, image[off : off + 8]), f"{name}: first instruction"
    start, stop = symbols["__start_kprobe_blacklist"], symbols["__stop_kprobe_blacklist"]
    table = image[start - base : stop - base]
    listed = {int.from_bytes(table[i : i + 8], "little") for i in range(0, len(table), 8)}
    entry = "trap_stubs" if arch == "x86_64" else "trap_entry"
    for name in (entry, "ret_from_trap", "switch_to", "kthread_trampoline", "trap_handler"):
        assert symbols[name] in listed, f"{name} not blacklisted"


def test_transcripts_differ_only_in_arch_lines() -> None:
    texts = {a: (FIRMWARE / a / "transcript.txt").read_text().splitlines() for a in ARCHES}
    ref = texts["riscv64"]
    assert ref[-1].startswith("checksum: ") and "checks: 23 run, all passed" in ref
    for arch, lines in texts.items():
        assert len(lines) == len(ref), arch
        for mine, theirs in zip(lines, ref, strict=True):
            assert mine == theirs or (mine.startswith("arch:") and theirs.startswith("arch:"))
        assert f"arch: {arch}" in lines


def _qemu(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian: apt-get install qemu-system-misc)"
    return path


def test_riscv64_transcript_under_qemu() -> None:
    cmd = [
        _qemu("qemu-system-riscv64"),
        "-M",
        "virt",
        "-bios",
        "none",
        "-nographic",
        "-kernel",
        str(FIRMWARE / "riscv64" / "kernel.elf"),
    ]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert proc.stdout == (FIRMWARE / "riscv64" / "transcript.txt").read_bytes()
    assert proc.returncode == 0  # the sifive_test device's "pass"


def _read_until(cmd: list[str], last_prefix: bytes, timeout: float) -> bytes:
    """Run cmd until its output has a complete line starting with last_prefix (or timeout)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                out += chunk
            if any(ln.startswith(last_prefix) for ln in out.split(b"\n")[:-1]):
                break
    finally:
        proc.kill()
        proc.wait()
    return bytes(out)


def test_loongarch64_transcript_under_qemu() -> None:
    """QEMU's virt board has no exit device at the board's address, so the run is stopped once
    the last line is out (the exit write faults and the kernel halts quietly)."""
    cmd = [
        _qemu("qemu-system-loongarch64"),
        "-M",
        "virt",
        "-nographic",
        "-kernel",
        str(FIRMWARE / "loongarch64" / "kernel.elf"),
    ]
    out = _read_until(cmd, b"checksum: ", timeout=60)
    assert out == (FIRMWARE / "loongarch64" / "transcript.txt").read_bytes()
