"""The verifier corpus's Linux verdicts, from Linux itself: Debian's riscv64 kernel (6.12) boots
under QEMU with an initramfs whose /init (``bpfcheck.c``) loads every corpus program with
``bpf(BPF_PROG_LOAD)`` as root and prints the kernel verifier's verdict. Each must be the one the
corpus records (and that kprobesim's verifier gives, checked in tests/ebpf/test_absint.py). The
corpus's second part (tests/ebpf/verifier_corpus_btf.py: fentry/fexit and BTF-typed pointers
against this kernel's own BTF) is loaded in the same boot, as tracing programs with the target
function's BTF id (checked against kprobesim in tests/linux/test_verifier_btf_corpus.py).

Cost: one QEMU boot (TCG) for both tests (kept in the test cache by ``qemu.cached``), ~8 s of CPU for the
first part: the verifier log asks for the verdict lines only (see bpfcheck.c), not level 1's
per-instruction trace."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest

from linux import cpio, debian, obtain, oracle, qemu
from linux.cache import cache_dir, locked, publish
from linux.initramfs import _key, program

_spec = importlib.util.spec_from_file_location(
    "verifier_corpus", Path(__file__).resolve().parents[1] / "ebpf" / "verifier_corpus.py")
assert _spec and _spec.loader
corpus = sys.modules.setdefault("verifier_corpus", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(corpus)
_spec2 = importlib.util.spec_from_file_location(
    "verifier_corpus_btf", Path(__file__).resolve().parents[1] / "ebpf" / "verifier_corpus_btf.py")
assert _spec2 and _spec2.loader
corpus_btf = sys.modules.setdefault("verifier_corpus_btf", importlib.util.module_from_spec(_spec2))
_spec2.loader.exec_module(corpus_btf)
pytestmark = pytest.mark.xdist_group("verifier-oracle")  # one boot serves both tests


def _initramfs(arch: str) -> Path:
    archive = cpio.newc([
        cpio.directory("dev"),
        cpio.char_device("dev/console", 5, 1),
        cpio.directory("proc"),
        cpio.regular("init", program("bpfcheck", arch).read_bytes(), 0o755),
        cpio.directory("data"),
        cpio.regular("data/corpus.bin", corpus.corpus_bin()),
        cpio.regular("data/corpus2.bin", corpus_btf.corpus_bin(oracle.btf(arch))),
    ])
    target = cache_dir() / "initramfs" / f"bpfcheck-{arch}-{_key(archive)}.cpio"
    with locked("initramfs"):
        return publish(target, lambda out: out.write_bytes(archive))


@functools.cache
def linux_verdicts(arch: str = "riscv64") -> dict[str, str]:
    """Program name -> ``ok`` or ``ERRNO: message`` from the kernel's verifier."""
    kernel, bios = obtain(debian.trixie_riscv64_kernel), obtain(debian.trixie_opensbi)
    initrd = obtain(_initramfs, arch)
    cmd = qemu.command(arch, kernel.image, initrd, qemu.APPEND, bios)
    run = obtain(qemu.cached, cmd, lambda: qemu.run(cmd))  # one QEMU run per corpus and kernel
    out = {}
    for line in run.transcript.split("\n"):
        if line.startswith("kpsim-bpf: "):
            name, _, verdict = line[len("kpsim-bpf: "):].partition(" ")
            out[name] = verdict
    assert out.pop("done", None) is not None, run.transcript[-3000:]
    return out


def test_corpus_verdicts_are_linuxs() -> None:
    got = linux_verdicts()
    wrong = []
    for case in corpus.CASES:
        verdict = got.get(case.name, "(missing)")
        ok = verdict == "ok" if case.linux is None else case.linux in verdict and verdict != "ok"
        if not ok:
            wrong.append(f"{case.name}: corpus says {case.linux or 'ok'!r}, Linux says {verdict!r}")
    assert not wrong, "\n".join(wrong)


def test_btf_corpus_verdicts_are_linuxs() -> None:
    got = linux_verdicts()
    wrong = []
    for case in corpus_btf.CASES:
        verdict = got.get(case.name, "(missing)")
        ok = verdict == "ok" if case.linux is None else case.linux in verdict and verdict != "ok"
        if not ok:
            wrong.append(f"{case.name}: corpus says {case.linux or 'ok'!r}, Linux says {verdict!r}")
    assert not wrong, "\n".join(wrong)
