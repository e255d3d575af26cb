"""The arch-comparison matrix: the shared probe targets agree on every arch."""

from __future__ import annotations

import json

from fwpaths import ALL_ARCHES, UNICORN_ARCHES

from kprobesim.compare import compare, render

SHARED = [
    "p:dw do_work a=$arg1 b=$arg2",
    "r64:fr fib ret=$retval:u64",
    "p:sa sum_array n=$arg2:u64",
    "p:pl pcrel_load",
    "p:pa pcrel_addr",
    "p:cf call_first x=$arg1:s64",
    "p:bf branch_first",
    "p:jf jump_first x=$arg1:u64",
    "p:if indirect_first x=$arg2:u64",
    "p:sc handle_syscall nr=$arg1:u64",
    "r:sr handle_syscall ret=$retval:s64",
    "p:sch schedule",
    "p:us init:u_strlen",  # uprobes and a uretprobe on the user program (issue 14: compare covers them)
    "r:ur init:u_rsum ret=$retval:s64",
]


def test_shared_targets_agree_across_arches():
    result = compare(SHARED, list(ALL_ARCHES), ignore=["sch.hits"])  # preemption points differ
    table = render(result)
    assert result.agree, table
    hits = {r.probe: r.values for r in result.rows if r.what == "hits"}
    assert hits["dw"] == {a: 557 for a in ALL_ARCHES}
    assert hits["sc"] == {a: 11 for a in ALL_ARCHES}
    assert hits["us"] == {a: 1 for a in ALL_ARCHES} and hits["ur"] == {a: 41 for a in ALL_ARCHES}
    assert any(r.probe == "ur" and r.what == "ret" and r.agree for r in result.rows)
    assert table.endswith("all arches agree: yes")
    sch = next(r for r in result.rows if r.probe == "sch" and r.what == "hits")
    assert sch.ignored and f"{sch.probe:<14}" in table


def test_disagreement_is_reported(run_cli):
    """strlen measures the arch's own name once ("arch: %s"): a real difference."""
    args = ["compare", *(f"--arch={a}" for a in UNICORN_ARCHES), "-p", "p:sl strlen s=+0($arg1):string"]
    status, out, _ = run_cli(*args)
    assert status == 1
    row = next(line for line in out.decode().splitlines() if line.startswith("sl") and " s " in line)
    assert row.endswith("NO")
    status, out, _ = run_cli(*args, "--format", "json")
    doc = json.loads(out)
    assert status == 1 and doc["agree"] is False
    assert [r["agree"] for r in doc["rows"] if r["probe"] == "sl" and r["what"] == "hits"] == [True]


def test_compare_usage_errors(run_cli):
    status, _, err = run_cli("compare", "--image", "sparc=x.elf", "-p", "p:x fib")
    assert status == 64 and "--image takes ARCH=PATH" in err
