"""The README's command-line examples are real: the probe-output excerpt is what the command
above it prints (its lines in order, ``...`` standing for lines left out)."""

from __future__ import annotations

import shlex

from fwpaths import ROOT


def _probe_example() -> tuple[list[str], list[str]]:
    """The command of "Probes from the command line" and the output excerpt that follows it."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Probes from the command line") :]
    blocks: list[list[str]] = []
    for line in section.splitlines()[1:]:
        if line.startswith("    "):
            if not blocks or blocks[-1][-1] is None:
                blocks.append([])
            blocks[-1].append(line[4:])
        elif blocks and blocks[-1][-1] is not None:
            blocks[-1].append(None)
        if len(blocks) == 2 and blocks[-1][-1] is None:
            break
    command = " ".join(part.rstrip("\\").strip() for part in blocks[0][:-1])
    return shlex.split(command), blocks[1][:-1]


def test_probe_output_excerpt_is_what_the_command_prints(run_cli):
    argv, excerpt = _probe_example()
    assert argv[0] == "kprobesim" and "..." in excerpt
    status, out, err = run_cli(*argv[1:])
    assert status == 0, err
    lines = out.decode().splitlines()
    at, gap = 0, False
    for want in excerpt:
        if want == "...":
            gap = True
            continue
        assert want in lines[at:], f"README line not printed (in this order): {want!r}"
        found = lines.index(want, at)
        assert gap or found == at, f"README shows {want!r} right after the line before it"
        at, gap = found + 1, False
    assert excerpt[0] == lines[0] and excerpt[-1] == lines[-1]  # where the output starts and ends


def test_ebpf_example_builds_and_runs_verbatim(run_cli, tmp_path, monkeypatch):
    """The eBPF section's two commands, word for word, from a folder that looks like the
    repository's top (the object lands there, not in the source tree)."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## eBPF programs") :]
    block = section[section.index("    python -m ziglang") :].split("\n\n")[0]
    build, run = (" ".join(p.strip().rstrip("\\") for p in cmd.split("\n")) for cmd in block.split("\n    kprobesim"))
    for name in ("kprobesim", "examples", "firmware"):
        (tmp_path / name).symlink_to(ROOT / name)
    words = shlex.split(build)
    assert words[:3] == ["python", "-m", "ziglang"]
    subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(*shlex.split(run))
    assert status == 0, err
    assert b'"kworker/0": ' in out and b"@calls:" in out


def test_design_pointer_names_a_file_of_the_repository():
    import re

    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\[`?([\w./-]+\.md)`?\]\(([\w./-]+)\)", text)
    assert ("DESIGN.md", "DESIGN.md") in links
    for _, target in links:
        assert (ROOT / target).is_file(), target
    assert "../" not in text.split("## Quick start")[0]  # nothing outside the checkout
