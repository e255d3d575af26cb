"""The P-code engine's translation cache on disk (engine/pcode/diskcache.py)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fwpaths import ROOT, firmware

from kprobesim.arch import get_arch
from kprobesim.engine.pcode import diskcache
from kprobesim.engine.pcode import engine as E
from kprobesim.image import Image
from kprobesim.machine import Machine


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory and empty in-memory caches (as in a new process)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("KPROBESIM_CACHE_DIR", str(d))
    monkeypatch.delenv("KPROBESIM_CACHE", raising=False)
    _new_process()
    yield d
    _new_process()


def _new_process() -> None:
    diskcache.reset()
    E._CODE_CACHE.clear()
    E._LIFT_CACHE.clear()
    E._CODE_INFO.clear()
    E._DISK_LOADED.clear()
    E._TIER0_RUNS.clear()


def _run_la() -> tuple[tuple[int, str, int], dict[str, int]]:
    """Run the LoongArch kernel, counting compilations and decodes."""
    calls = {"compile_block": 0, "compile_snippets": 0, "_decode": 0}
    with pytest.MonkeyPatch.context() as mp:
        for name in ("compile_block", "compile_snippets"):
            real = getattr(E, name)

            def counted(*a, _real=real, _name=name):  # noqa: ANN002, ANN202
                calls[_name] += 1
                return _real(*a)

            mp.setattr(E, name, counted)
        real_decode = E.PcodeEngine._decode

        def decode(self, *a):  # noqa: ANN001, ANN002, ANN202
            calls["_decode"] += 1
            return real_decode(self, *a)

        mp.setattr(E.PcodeEngine, "_decode", decode)
        m = Machine(get_arch("loongarch64"), Image.load(firmware("loongarch64")))
        status = m.run()
    return (status, m.console, m.instructions), calls


def test_later_processes_reuse_the_cache(cache_dir: Path) -> None:
    """A second process decodes nothing and compiles only blocks whose tier-0 runs, counted
    over both processes, reach hot_after; once every block has, a process compiles nothing."""
    first, calls1 = _run_la()
    assert first[0] == 0 and calls1["compile_block"] > 50 and calls1["_decode"] > 300
    diskcache.flush_all()
    files = list(cache_dir.glob("pcode-*-Loongarch*.bin"))
    assert len(files) == 1 and files[0].stat().st_size > 10000
    history = []
    for _ in range(E.HOT_AFTER + 1):  # a block run once per process compiles in the last
        _new_process()
        result, calls = _run_la()
        diskcache.flush_all()
        assert result == first
        history.append(calls)
    assert history[0]["_decode"] == 0
    assert 0 < history[0]["compile_block"] < calls1["compile_block"] // 2
    assert history[-1] == {"compile_block": 0, "compile_snippets": 0, "_decode": 0}


def test_corrupt_or_foreign_file_is_ignored_and_replaced(cache_dir: Path) -> None:
    _run_la()
    diskcache.flush_all()
    (path,) = cache_dir.glob("pcode-*-Loongarch*.bin")
    path.write_bytes(b"\x00garbage")
    _new_process()
    result, calls = _run_la()
    assert result[0] == 0 and calls["compile_block"] > 50
    diskcache.flush_all()
    assert path.stat().st_size > 10000


def test_stale_fingerprints_are_removed(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True)
    stale = cache_dir / "pcode-0000000000000000-Loongarch_LE_64_lp64d.bin"
    stale.write_bytes(b"old")
    other = cache_dir / "pcode-0000000000000000-RISCV_LE_64_RV64GC.bin"
    other.write_bytes(b"old")
    _run_la()
    assert not stale.exists() and other.exists()


def test_cache_off_writes_nothing(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPROBESIM_CACHE", "off")
    _new_process()
    result, _ = _run_la()
    diskcache.flush_all()
    assert result[0] == 0 and not cache_dir.exists()


def test_forgotten_stores_write_nothing(cache_dir: Path) -> None:
    """What the test suite does at its end: a process's new translations are dropped, and
    nothing is written at exit (flush_all is what exit runs)."""
    result, calls = _run_la()
    assert result[0] == 0 and calls["compile_block"] > 50
    diskcache.forget()
    diskcache.flush_all()
    assert not cache_dir.exists()


def test_unwritable_directory_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("KPROBESIM_CACHE_DIR", str(blocker / "cache"))
    _new_process()
    try:
        result, _ = _run_la()
        diskcache.flush_all()
        assert result[0] == 0
    finally:
        _new_process()


def test_cli_runs_identically_with_a_warm_cache(tmp_path: Path) -> None:
    env = dict(os.environ, KPROBESIM_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "kprobesim.cli", "--arch", "loongarch64",
           str(firmware("loongarch64", "kernel.bin")), "-p", "p do_work", "--stats"]
    runs = [subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
            for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert list((tmp_path / "cache").glob("pcode-*.bin"))
    assert runs[1].returncode == 0 and runs[1].stdout == runs[0].stdout


def test_riscv_oracle_uses_its_own_file(cache_dir: Path) -> None:
    from kprobesim.engine.pcode import PcodeEngine

    arch = dataclasses.replace(get_arch("riscv64"), new_engine=lambda: PcodeEngine("riscv64"))
    assert Machine(arch, Image.load(firmware("riscv64"))).run() == 0
    diskcache.flush_all()
    assert len(list(cache_dir.glob("pcode-*-RISCV*.bin"))) == 1


def test_budget_keeps_what_the_last_process_used(cache_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the budget, entries no process used lately are dropped (fuzzing leaves many)."""
    import struct

    from kprobesim.engine.pcode import PcodeEngine
    from kprobesim.engine.pcode import loongarch_const as K

    _run_la()
    diskcache.flush_all()
    (path,) = cache_dir.glob("pcode-*-Loongarch*.bin")
    big = len(diskcache._read(path)[1])
    assert big > 100
    monkeypatch.setattr(diskcache, "MAX_CODE", 20)
    _new_process()
    e = PcodeEngine("loongarch64", hot_after=0)
    e.mem_map(0, 0x100000)
    e.mem_write(0x10000, struct.pack("<2I", 0x02C00484, 0x4C000020))  # addi.d a0,a0,1; ret
    e.reg_write(K.LA_REG_RA, 0x20000)
    e.emu_start(0x10000, 0x20000)
    diskcache.flush_all()
    code = diskcache._read(path)[1]
    assert 1 <= len(code) <= 2


def test_wrong_shaped_entries_are_recompiled_and_the_file_rewritten(cache_dir: Path) -> None:
    """A well-formed file (its digest right: as a buggy writer would leave it) whose entries
    have the wrong shape: those blocks are decoded and compiled again, the run is the same,
    and the next flush rewrites the file without them."""
    first, _ = _run_la()
    diskcache.flush_all()
    (path,) = cache_dir.glob("pcode-*-Loongarch*.bin")
    assert diskcache._read(path)[3] is False  # what the engine writes passes the checks whole
    shapes, code, runs, _ = diskcache._read(path)
    block = next(k for k in code if k[1] != "snippets")
    snip = next(k for k in code if k[1] == "snippets")
    code[block] = (code[block][0], "source only")  # too short: was a TypeError in every run
    code[snip] = (code[snip][0], code[snip][1], ["not_a_name"])
    shape = next(iter(shapes))
    shapes[shape] = [(b"\x00", None, (1, 2), 2, ((1, 2, b"", (), "", False, {}),))]
    runs[next(iter(runs))] = "many"
    code[("junk",)] = 5
    path.write_bytes(diskcache._pack(shapes, code, runs))
    _new_process()
    result, calls = _run_la()
    assert result == first and calls["compile_block"] >= 1 and calls["_decode"] >= 1
    diskcache.flush_all()
    shapes2, code2, runs2, dropped = diskcache._read(path)
    assert not dropped and block in code2 and ("junk",) not in code2
    assert code2[snip][2] != ["not_a_name"] and shapes2[shape] != shapes[shape]


def test_entries_changed_behind_the_digest_are_all_dropped(cache_dir: Path) -> None:
    """Entries of the right shape but wrong content (an instruction's decoded fields, as a
    damaged or edited file has them) cannot be checked one by one: the file's digest no longer
    matches, so nothing of it is used, the run is the same, and the next flush rewrites it."""
    import marshal

    first, _ = _run_la()
    diskcache.flush_all()
    (path,) = cache_dir.glob("pcode-*-Loongarch*.bin")
    fmt, digest, payload = marshal.loads(path.read_bytes())
    shapes, code, runs = marshal.loads(payload)
    for key, entries in shapes.items():  # every decoded instruction loses its fields: was a KeyError
        shapes[key] = [(*e[:4], tuple((*i[:6], {}) for i in e[4])) for e in entries]
    path.write_bytes(marshal.dumps((fmt, digest, marshal.dumps((shapes, code, runs)))))
    assert diskcache._read(path) is None
    _new_process()
    result, calls = _run_la()
    assert result == first and calls["_decode"] > 50
    diskcache.flush_all()
    assert diskcache._read(path) is not None
