"""The QEMU oracle: Debian's kernels boot the test initramfs to init, whose transcript is the
expected one, and power off."""

from __future__ import annotations

import sys

import pytest

from linux import cpio, oracle, qemu

#: Both modules read the QEMU oracle's boots (``oracle.boot``): one worker runs them all, so no
#: worker idles on the file lock while the other's QEMU makes the run they share.
pytestmark = pytest.mark.xdist_group(oracle.XDIST_GROUP)

EXPECTED_INIT = [
    "kpsim-init: hello from init",
    "kpsim-init: read /data/hello.txt: 35 0 = 35 bytes",
    "kpsim-init: read /data/lines.txt: 256 256 124 0 = 636 bytes",
    "kpsim-init: read /data/blob.bin: 256 256 256 256 0 = 1024 bytes",
    "kpsim-init: open /data/missing.txt: ENOENT",
    "kpsim-init: digits 7: 1",
    "kpsim-init: digits 35: 2",
    "kpsim-init: digits 636: 3",
    "kpsim-init: digits 1024: 4",
    "kpsim-init: digits 65536: 5",
    "kpsim-init: fork and exec /bin/child",
    "kpsim-init: forked child: digits 1234567: 7",
    "kpsim-child: argv /bin/child from-init /data/hello.txt env KPSIM=1",
    "kpsim-child: read /data/hello.txt: 35 bytes",
    "kpsim-init: child exited with status 7",
    "kpsim-init: read /init: its text is the file's",
    "kpsim-init: spawned 6 children: exit statuses sum to 37",
    "kpsim-init: power off",
]


@pytest.mark.parametrize("arch", ["riscv64", "x86_64"])
def test_qemu_boots_debian_kernel_to_init(arch: str) -> None:
    run = oracle.boot(arch)  # with "-- kallsyms": init also digests /proc/kallsyms before power off
    lines = [line for line in run.init_lines if not line.startswith("kpsim-init: kallsyms")]
    assert lines == EXPECTED_INIT, run.transcript[-3000:]
    assert run.init_lines.index("kpsim-init: power off") == len(run.init_lines) - 1
    assert run.powered_off, run.transcript[-2000:]
    kernel = qemu.kernel_lines(run.transcript)
    assert "Run /init as init process" in kernel
    # init's lines are not kernel lines, and every line is one or the other or firmware's
    assert not set(run.init_lines) & set(kernel)


def test_init_lines_separates_init_from_kernel_log() -> None:
    transcript = ("OpenSBI v1.6\r\n[    0.000000] Linux version 6.1\r\n[   11.04] Run /init as init process\r\n"
                  "kpsim-init: hello\r\n[   11.10] random: crng init done\r\nkpsim-child: hi\r\n")
    assert qemu.init_lines(transcript) == ["kpsim-init: hello", "kpsim-child: hi"]
    assert qemu.kernel_lines(transcript) == ["Linux version 6.1", "Run /init as init process",
                                             "random: crng init done"]


def test_newc_layout() -> None:
    archive = cpio.newc([cpio.directory("d"), cpio.regular("d/f", b"abc")])
    # each header is 110 bytes; header+name and data padded to 4
    assert archive.startswith(b"070701" + b"%08X" % 1 + b"%08X" % 0o40755)
    first = 110 + len(b"d\0")
    first += -first % 4
    second = archive[first:]
    assert second[94:102] == b"%08X" % 4  # namesize of "d/f\0"
    assert second[110:114] == b"d/f\0" and second[116:119] == b"abc"  # 110 + 4 padded to 116
    assert archive.endswith(b"TRAILER!!!\0" + b"\0" * (-(110 + 11) % 4))
    with pytest.raises(ValueError):
        cpio.newc([cpio.directory("/abs")])


def test_oracle_runs_are_kept_per_input(tmp_path, monkeypatch) -> None:
    """qemu.cached runs QEMU once per distinct input: the same command with the same file
    contents is answered from the test cache, a changed file or argument runs again, a failed
    run is not kept, and KPROBESIM_QEMU_FRESH=1 runs again."""
    monkeypatch.setenv("KPROBESIM_TEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KPROBESIM_QEMU_FRESH", raising=False)
    kernel = tmp_path / "kernel"
    kernel.write_bytes(b"one")
    runs: list[int] = []

    def make(status: int = 0):
        runs.append(status)
        return qemu.QemuRun(("x",), f"run {len(runs)}\n", status, 1.0)

    cmd = [sys.executable, "-kernel", str(kernel), "-append", "console=ttyS0"]
    assert qemu.cached(cmd, make).transcript == "run 1\n"
    assert qemu.cached(list(cmd), make).transcript == "run 1\n" and len(runs) == 1
    moved = tmp_path / "elsewhere"
    moved.write_bytes(b"one")  # the same contents under another name: the same input
    assert qemu.cached([*cmd[:2], str(moved), *cmd[3:]], make).transcript == "run 1\n"
    kernel.write_bytes(b"two")
    assert qemu.cached(cmd, make).transcript == "run 2\n"
    assert qemu.cached([*cmd[:-1], "console=hvc0"], make).transcript == "run 3\n"
    assert qemu.cached(cmd, lambda: make(1), "failing").returncode == 1
    assert qemu.cached(cmd, make, "failing").transcript == "run 5\n"  # the failed run was not kept
    monkeypatch.setenv("KPROBESIM_QEMU_FRESH", "1")
    assert qemu.cached(cmd, make).transcript == "run 6\n"
