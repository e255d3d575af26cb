"""CO-RE relocations against a target BTF, checked against libbpf and clang, and through the
bundled kernels' own BTF on every arch.

Oracles nobody here wrote: Debian's libbpf (its debug log of every relocation decision, produced
in user space before the host kernel sees the programs: ``libbpf_core_log.py``), clang (the same
programs compiled against the target layout itself read the same bytes), and the firmware's own
memory read by a Python kprobe at the layout ``firmware/kernel/task.h`` asserts.
"""

from __future__ import annotations

import random
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from fwpaths import ALL_ARCHES, ROOT, firmware

from kprobesim.ebpf import isa
from kprobesim.ebpf.btf import Btf
from kprobesim.ebpf.core import POISON_HELPER, reachable
from kprobesim.ebpf.elf import ObjectError, load_object
from kprobesim.ebpf.loader import BpfError
from kprobesim.ebpf.vm import VM
from kprobesim.machine import Machine

HERE = Path(__file__).resolve().parent
SRC = HERE / "core"
INCLUDE = ROOT / "kprobesim" / "ebpf" / "include"
TARGET = {"riscv64": "riscv", "x86_64": "x86", "loongarch64": "loongarch"}
#: libbpf log lines that are decisions (the ones kprobesim's ``core_log`` also writes).
_DECISION = re.compile(
    r"^prog '\w+': relo #\d+: (<|matching candidate|patched|substituting|field offset|relocation dec)"
)


def _cc(src: Path, out: Path, arch: str = "x86_64", *flags: str, opt: str = "-O2") -> Path:
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", opt, "-g", "-c",
           f"-I{INCLUDE}", f"-I{SRC}", "-I/usr/include", f"-D__TARGET_ARCH_{TARGET[arch]}", *flags, str(src),
           "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


def _section(elf: bytes, name: str) -> bytes:
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shnum, shstrndx = struct.unpack_from("<HH", elf, 0x3C)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + 64 * i) for i in range(shnum)]
    names = hdrs[shstrndx][4]
    for h in hdrs:
        end = elf.index(b"\0", names + h[0])
        if elf[names + h[0] : end].decode() == name:
            return elf[h[4] : h[4] + h[5]]
    raise KeyError(name)


def _libbpf(obj: Path, btf: Path) -> list[str]:
    res = subprocess.run([sys.executable, str(HERE / "libbpf_core_log.py"), str(obj), str(btf)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def _decisions(lines: list[str]) -> list[str]:
    return [ln for ln in lines if _DECISION.match(ln)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("core")
    out = {
        "target": _cc(SRC / "target_types.c", d / "target.o", opt="-O0"),
        "layouts": _cc(SRC / "layouts.c", d / "layouts.o"),
        "native": _cc(SRC / "layouts.c", d / "native.o", "x86_64", "-DNATIVE"),
        "ambiguous": _cc(SRC / "ambiguous.c", d / "ambiguous.o"),
    }
    (d / "target.btf").write_bytes(_section(out["target"].read_bytes(), ".BTF"))
    out["target.btf"] = d / "target.btf"
    for arch in ALL_ARCHES:
        out[f"task.{arch}"] = _cc(SRC / "task.c", d / f"task.{arch}.o", arch)
        out[f"bad.{arch}"] = _cc(SRC / "task.c", d / f"bad.{arch}.o", arch, "-DUNGUARDED")
    return out


def test_every_relocation_kind_decided_as_libbpf_decides(built: dict[str, Path]) -> None:
    target = Btf.parse(built["target.btf"].read_bytes())
    mine = load_object(built["layouts"], target).core_log
    theirs = _decisions(_libbpf(built["layouts"], built["target"]))
    assert len(theirs) > 60
    assert mine == theirs
    kinds = {m.group(1) for m in re.finditer(r"<(\w+)>", "\n".join(mine))}
    assert kinds >= {"byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64",
                     "target_type_id", "local_type_id", "type_exists", "type_matches", "enumval_exists",
                     "enumval_value"}
    assert any("substituting insn" in ln for ln in mine)  # the narrowed signed field is poisoned
    assert any("mem_sz 4 -> 2" in ln for ln in mine)  # the narrowed unsigned one is resized


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_firmware_btf_decisions_equal_libbpfs(built: dict[str, Path], arch: str) -> None:
    btf_path = firmware(arch, "kernel.btf")
    for name in (f"task.{arch}", f"bad.{arch}"):
        mine = load_object(built[name], Btf.parse(btf_path.read_bytes())).core_log
        assert mine == _decisions(_libbpf(built[name], btf_path)), name


def test_relocated_programs_read_what_clang_reads(built: dict[str, Path]) -> None:
    target = Btf.parse(built["target.btf"].read_bytes())
    core = load_object(built["layouts"], target)
    native = load_object(built["native"], target)  # its only relocations: the builtins
    rng = random.Random(7)
    fields = [p for p in core.programs if p.name.startswith("f_")]
    assert [p.name for p in fields if p.poisoned] == ["f_snarrow"]
    for prog in fields:
        if prog.poisoned:
            continue
        a = VM(isa.decode(prog.insns), {}, name=prog.name)
        b = VM(isa.decode(native.program(prog.name).insns), {}, name=prog.name)
        for _ in range(16):
            ctx = bytes(rng.getrandbits(8) for _ in range(160))
            assert a.run(ctx) == b.run(ctx), prog.name
    expected = {"t_enum": 0x100000000 ^ 1, "t_enum32": 10, "t_match": 10, "t_exists": 1, "t_gone": 1}
    poison = {POISON_HELPER: _never}
    for name, want in expected.items():
        insns = isa.decode(core.program(name).insns)
        assert not set(core.program(name).poisoned) & reachable(insns)  # t_gone's guarded read
        assert VM(insns, poison, name=name).run(bytes(64)) == want, name
    assert core.program("t_gone").poisoned


def _never(*_: int) -> int:
    raise AssertionError("a poisoned instruction ran")


def test_candidates_that_disagree_refuse_the_load(built: dict[str, Path]) -> None:
    line = "prog 'bad': relo #1: field offset ambiguity: 32 != 0"
    assert line in _libbpf(built["ambiguous"], built["target"])
    with pytest.raises(ObjectError) as e:
        load_object(built["ambiguous"], Btf.parse(built["target.btf"].read_bytes()))
    assert str(e.value) == f"{built['ambiguous']}: {line}"


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_task_read_through_a_different_layout(built: dict[str, Path], arch: str) -> None:
    m = Machine.load(firmware(arch))
    obj = m.load_bpf(built[f"task.{arch}"])
    seen = []

    def pre(probe, regs) -> int:
        cur = int.from_bytes(regs.read_mem(m.image.symbol("current_task").addr, 8), "little")
        raw = regs.read_mem(cur, 56)
        pid, _tgid = struct.unpack_from("<II", raw, 0)
        state, flags = struct.unpack_from("<II", raw, 24)
        (exit_code,) = struct.unpack_from("<q", raw, 48)
        seen.append((pid, flags, state, exit_code & (2**64 - 1), raw[8:24].split(b"\0")[0]))
        return 0

    m.kprobe("do_work", pre=pre)
    m.run(max_insns=3_000_000)
    recs = [r.data for r in obj.records]
    assert len(recs) == len(seen) > 3
    for data, want in zip(recs, seen, strict=True):
        vals = struct.unpack_from("<12Q", data)
        comm = data[96:112].split(b"\0")[0]
        assert (vals[0], vals[1], vals[2], vals[3], comm) == want
        # not_in_kernel: absent; flags: present; the kernel's TASK_BLOCKED / TASK_RUNNABLE;
        # no TASK_ZOMBIE; sizeof(struct task) and of its flags; the layouts do not "match"
        assert vals[4:] == (0, 1, 2, 1, 0, 56, 4, 0)
    assert not obj.programs["on_work"].errors


@pytest.mark.parametrize("arch", ALL_ARCHES)
def test_unresolvable_access_refuses_the_load(built: dict[str, Path], arch: str) -> None:
    m = Machine.load(firmware(arch))
    with pytest.raises(BpfError) as e:
        m.load_bpf(built[f"bad.{arch}"])
    assert re.fullmatch(
        r".*: prog 'bad_read': insn \d+: <invalid CO-RE relocation>: failed to resolve CO-RE relocation "
        r"<byte_off> \[\d+\] struct task___v2\.not_in_kernel \(0:6 @ offset 44\)", str(e.value)), str(e.value)


def test_relocations_without_kernel_btf_are_refused(built: dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "kernel.elf"
    image.write_bytes(firmware("riscv64").read_bytes())
    m = Machine.load(image)
    assert m.btf is None
    with pytest.raises(BpfError, match="CO-RE relocations need the kernel's BTF"):
        m.load_bpf(built["task.riscv64"])
    assert Machine.load(firmware("riscv64")).btf.find("task") is not None
