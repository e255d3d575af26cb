"""QEMU oracle runs of the Debian kernels with the test initramfs, and the reading of their
console transcripts.

Measured on the 2-core, heavily shared development machine (TCG, ``-m 256M``), boot to
``reboot: Power down``: x86_64 6.1 ~44 s wall / 11 s CPU; riscv64 6.12 with OpenSBI ~21 s
wall / 5 s CPU. ``panic=-1`` with ``-no-reboot`` turns a kernel panic into a prompt QEMU exit
rather than a hang.

Every oracle run goes through ``cached``: one QEMU run per distinct input (QEMU's binary, the
kernel, initramfs, firmware and command line) is kept in the test cache, so the test workers and
later runs share it instead of booting the same kernel again."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import debian
from .cache import FetchError, cache_dir, locked, publish
from .initramfs import initramfs

#: Kernel command line shared by both arches (``console=ttyS0`` is the 16550 on both machines),
#: by the QEMU oracle runs and the simulator's riscv64 boots alike. Two parameters only skip
#: busy-work before ``/init`` that no test looks at: ``cryptomgr.notests`` the crypto manager's
#: self-tests (RSA, hashes, DRBGs: a third of the riscv64 boot, 60% of x86_64's), and
#: ``initcall_blacklist=jent_mod_init`` the jitter entropy RNG's start-up health test (SHA3 over
#: memory-access timings: a sixth of the riscv64 boot; built into riscv64 6.12, a module x86_64
#: 6.1 never loads). Neither changes what the kernel does for VFS, syscalls, fork/exec, faults
#: or BPF.
APPEND = "console=ttyS0 panic=-1 nokaslr cryptomgr.notests initcall_blacklist=jent_mod_init"
INIT_PREFIXES = ("kpsim-init: ", "kpsim-child: ")
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\] ")


@dataclass(frozen=True)
class QemuRun:
    """One QEMU boot: the command, the console transcript (``\\r`` removed), QEMU's exit status
    and the wall time in seconds."""

    command: tuple[str, ...]
    transcript: str
    returncode: int
    wall: float

    @property
    def init_lines(self) -> list[str]:
        return init_lines(self.transcript)

    @property
    def powered_off(self) -> bool:
        return self.returncode == 0 and "reboot: Power down" in self.transcript


def init_lines(transcript: str) -> list[str]:
    """The lines the initramfs's programs printed, in order, without the kernel's log lines
    (``[   1.234] ...``), OpenSBI's banner or anything else on the console."""
    return [line for line in transcript.replace("\r", "").split("\n") if line.startswith(INIT_PREFIXES)]


def kernel_lines(transcript: str) -> list[str]:
    """The kernel's log lines (those with a printk timestamp), timestamps removed."""
    lines = transcript.replace("\r", "").split("\n")
    return [_TIMESTAMP.sub("", line) for line in lines if _TIMESTAMP.match(line)]


def command(arch: str, kernel: Path, initrd: Path, append: str = APPEND, bios: Path | None = None,
            memory: str = "256M") -> list[str]:
    """The QEMU command line booting ``kernel`` with ``initrd`` on ``arch``'s machine."""
    if arch == "riscv64":
        if bios is None:
            raise ValueError("riscv64 needs an M-mode firmware (bios)")
        head = ["qemu-system-riscv64", "-M", "virt", "-smp", "1", "-bios", str(bios)]
    elif arch == "x86_64":
        head = ["qemu-system-x86_64", "-smp", "1"]
    else:
        raise ValueError(f"no QEMU oracle for arch {arch!r}")
    return [*head, "-m", memory, "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
            "-nographic", "-no-reboot"]


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run_key(cmd: list[str], *extra: str) -> str:
    """What a QEMU run depends on: the QEMU binary's digest and every argument, with each file
    argument (kernel, initramfs, firmware) replaced by its contents' digest."""
    binary = shutil.which(cmd[0])
    parts = [_file_digest(binary) if binary else cmd[0]]
    parts += [_file_digest(arg) if os.path.isfile(arg) else arg for arg in cmd[1:]]
    return hashlib.sha256("\0".join([*parts, *extra]).encode()).hexdigest()[:24]


def cached(cmd: list[str], make: Callable[[], QemuRun], *extra: str) -> QemuRun:
    """``make()``'s run of ``cmd``, kept in the test cache under ``qemu-runs/`` keyed by
    ``run_key`` (QEMU's binary and the digests of its inputs), so that the workers of one test
    run and later runs on the same machine share one QEMU run per distinct input: the guest is
    deterministic up to its console's timestamps. Runs that did not end well (non-zero status)
    are returned but not kept. ``KPROBESIM_QEMU_FRESH=1`` runs QEMU anew (and keeps the run)."""
    key = run_key(cmd, *extra)
    target = cache_dir() / "qemu-runs" / f"{key}.json"
    with locked(f"qemu-run-{key}"):
        if os.environ.get("KPROBESIM_QEMU_FRESH") == "1" and target.exists():
            target.unlink()
        if target.exists():
            saved = json.loads(target.read_text())
            return QemuRun(tuple(cmd), saved["transcript"], saved["returncode"], saved["wall"])
        result = make()
        if result.returncode == 0:
            record = {"command": list(cmd), "transcript": result.transcript, "returncode": result.returncode,
                      "wall": result.wall}
            publish(target, lambda out: out.write_text(json.dumps(record)))
        return result


def run(cmd: list[str], timeout: float = 600) -> QemuRun:
    """Run a QEMU command line to its end (stdin closed), capturing the console."""
    if shutil.which(cmd[0]) is None:
        package = "qemu-system-misc" if cmd[0].endswith("riscv64") else "qemu-system-x86"
        raise FetchError(f"{cmd[0]} is not installed (Debian: apt-get install {package})")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or b"").decode(errors="replace").replace("\r", "").strip().splitlines()[-1:]
        raise FetchError(f"{cmd[0]} did not finish in {timeout:.0f} s; last line: {tail}") from None
    wall = time.monotonic() - start
    text = proc.stdout.decode(errors="replace").replace("\r", "")
    return QemuRun(tuple(cmd), text, proc.returncode, wall)


def run_until(cmd: list[str], marker: str, timeout: float = 600) -> QemuRun:
    """Run a QEMU command line until its console prints ``marker`` (a guest that halts for good
    never makes QEMU exit), then stop it; returncode 0 when the marker came."""
    if shutil.which(cmd[0]) is None:
        raise FetchError(f"{cmd[0]} is not installed (Debian: apt-get install qemu-system-x86)")
    start = time.monotonic()
    out = bytearray()
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        try:
            while marker.encode() not in out:
                if time.monotonic() - start > timeout or proc.poll() is not None:
                    tail = out.decode(errors="replace").replace("\r", "").strip().splitlines()[-1:]
                    raise FetchError(f"{cmd[0]} did not print {marker!r} in {timeout:.0f} s; last line: {tail}")
                chunk = proc.stdout.read()
                if chunk:
                    out += chunk
                else:
                    time.sleep(0.05)
        finally:
            proc.kill()
    text = out.decode(errors="replace").replace("\r", "")
    return QemuRun(tuple(cmd), text, 0, time.monotonic() - start)


def boot(arch: str, append: str = APPEND, timeout: float = 600) -> QemuRun:
    """Boot Debian's kernel for ``arch`` (bookworm 6.1 amd64, trixie 6.12 riscv64 under trixie's
    OpenSBI ``fw_jump.bin``) with the test initramfs under QEMU."""
    if arch == "riscv64":
        kernel, bios = debian.trixie_riscv64_kernel(), debian.trixie_opensbi()
    elif arch == "x86_64":
        kernel, bios = debian.bookworm_amd64_kernel(), None
    else:
        raise ValueError(f"no Debian kernel for arch {arch!r}")
    cmd = command(arch, kernel.image, initramfs(arch), append, bios)
    return cached(cmd, lambda: run(cmd, timeout))
