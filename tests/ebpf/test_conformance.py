"""The bpf_conformance suite: every file passes in the interpreter and in the translator.

The folder is ``$KPROBESIM_CONFORMANCE_DIR``, by default ``../shared/ebpf-conformance`` beside
the repository root (third-party text, kept out of the repository); see ``conformance_suite.py``.
"""

from __future__ import annotations

import pytest
from conformance_suite import SUITE_SIZE, require_suite, suite_files

from kprobesim.ebpf.asm import assemble
from kprobesim.ebpf.conformance import conformance_dir, parse, run_case, run_file, run_files
from kprobesim.ebpf.disasm import disassemble

FILES = suite_files()


def test_suite_present():
    """Fails under CI=true (skips elsewhere) when the suite is missing; else it is complete."""
    folder = require_suite()
    assert folder == conformance_dir() and len(FILES) == SUITE_SIZE


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_file(path):
    res = run_file(path)
    assert res.ok, res.line()
    assert res.interp is not None and res.translated is not None
    assert res.interp.r0 == res.translated.r0 and res.interp.mem == res.translated.mem


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_disassembly_round_trip(path):
    case = parse(path.read_text(), path.name)
    assert assemble(disassemble(case.insns)) == case.insns


def test_run_files_lines(tmp_path):
    good = tmp_path / "good.data"
    good.write_text("-- asm\nmov %r0, 3\nexit\n-- result\n0x3\n")
    bad = tmp_path / "bad.data"
    bad.write_text("-- asm\nmov %r0, 2\nexit\n-- result\n0x3\n")
    err = tmp_path / "err.data"
    err.write_text("-- asm\nldxdw %r0, [%r1+8]\nexit\n-- mem\n00 01\n-- error\nbad access\n")
    broken = tmp_path / "broken.data"
    broken.write_text("-- asm\nfrob %r0\n-- result\n0x0\n")
    lines, ok = run_files([good, bad, err, broken])
    assert not ok
    assert lines[0] == "PASS good.data"
    assert lines[1] == "FAIL bad.data: expected 0x3, interp 0x2, translator 0x2"
    assert lines[2] == "PASS err.data"
    assert lines[3].startswith("FAIL broken.data: cannot load: line 2: unknown mnemonic")
    assert run_files([good])[1] is True


def test_raw_section_checked_against_asm():
    case = parse("-- asm\nmov %r0, 1\nexit\n-- raw\n0x00000001000000b7\n0x0000000000000095\n"
                 "-- result\n0x1\n")
    assert run_case(case).ok
    case = parse("-- asm\nmov %r0, 2\nexit\n-- raw\n0x00000001000000b7\n0x0000000000000095\n"
                 "-- result\n0x2\n")
    assert "raw" in run_case(case).line()


def test_missing_suite_fails_in_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("KPROBESIM_CONFORMANCE_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not found at .*absent"):
        require_suite()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="KPROBESIM_CONFORMANCE_DIR"):
        require_suite()
    monkeypatch.setenv("KPROBESIM_CONFORMANCE_DIR", str(tmp_path))
    (tmp_path / "one.data").write_text("-- asm\nexit\n-- result\n0x0\n")
    assert require_suite() == tmp_path


def test_the_repository_holds_no_copy_of_the_suite():
    from fwpaths import ROOT

    assert not list((ROOT / "tests").rglob("*.data")), "third-party suite files belong outside the repository"
