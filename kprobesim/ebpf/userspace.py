"""What libbpf does in user space between opening an object and loading it.

- :func:`set_global`: ``skel->rodata->targ_pid = 42`` — a ``const volatile`` (``.rodata``) or
  ``.data``/``.bss`` global given a value before load, parsed by its BTF type (integers, bools,
  enums by name or number, char arrays from a string); anything else, an unknown name or a value
  that does not fit is refused with one line;
- :func:`resize_map`: ``bpf_map__set_max_entries``;
- :func:`fill_kconfig`: ``__kconfig`` externs (see :data:`KCONFIG_DEFAULTS`);
- :func:`ksym_address`: ``__ksym`` externs, resolved against the image's symbols.

Kconfig values come from the kernel's configuration when the machine has one
(:attr:`Machine.kconfig_source`, text in ``.config`` syntax; a guest-OS module can provide a
Linux image's IKCONFIG). Without one: ``LINUX_KERNEL_VERSION`` is :data:`DEFAULT_KERNEL_VERSION`
(6.1.0, the Linux whose eBPF behaviour the simulator follows) unless the machine says otherwise,
``LINUX_HAS_BPF_COOKIE`` is 1 (``bpf_get_attach_cookie`` exists), ``LINUX_HAS_SYSCALL_WRAPPER``
0 (the bundled kernels have no ``__<arch>_sys_*`` wrappers), and a ``CONFIG_*`` extern is 0 when
it is ``__weak`` and refused otherwise, as libbpf refuses a strong extern it cannot resolve.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .btf import (
    BTF_INT_BOOL,
    BTF_INT_SIGNED,
    BTF_KIND_ARRAY,
    BTF_KIND_ENUM,
    BTF_KIND_ENUM64,
    BTF_KIND_INT,
    Btf,
    BtfType,
)
from .elf import Extern, MapSpec, ObjectFile

if TYPE_CHECKING:
    from kprobesim.machine import Machine


def kernel_version(major: int, minor: int, patch: int) -> int:
    """``KERNEL_VERSION(a, b, c)``."""
    return (major << 16) + (minor << 8) + min(patch, 255)


DEFAULT_KERNEL_VERSION = kernel_version(6, 1, 0)
KCONFIG_DEFAULTS = {"LINUX_HAS_BPF_COOKIE": "1", "LINUX_HAS_SYSCALL_WRAPPER": "0"}


class UserspaceError(ValueError):
    """A libbpf user-space step refused (one line)."""


def _globals(obj: ObjectFile) -> dict[str, tuple[MapSpec, int, int]]:
    """Global variables: name -> (data map spec, offset in its value, BTF type id)."""
    out: dict[str, tuple[MapSpec, int, int]] = {}
    if obj.btf is None:
        return out
    for spec in obj.maps:
        if not spec.is_data or spec.name == ".kconfig":
            continue
        ds = obj.btf.datasec(spec.section)
        for si in ds.secinfos if ds is not None else ():
            var = obj.btf.type(si.type_id)
            if var.name:
                out[var.name] = (spec, si.offset, var.type_id)
    return out


def _encode(btf: Btf, type_id: int, text: str, what: str) -> bytes:
    """``text`` as the bytes of a value of ``type_id`` (UserspaceError when it does not fit)."""
    t = btf.resolved(type_id)
    tname = btf.type_name(type_id)
    if t.kind == BTF_KIND_ARRAY and btf.resolved(t.elem_type).kind == BTF_KIND_INT and btf.size_of(t.elem_type) == 1:
        raw = text.encode()
        if len(raw) >= t.nelems:
            raise UserspaceError(f"{what}: {text!r} does not fit {tname} (at most {t.nelems - 1} bytes and a NUL)")
        return raw.ljust(t.nelems, b"\0")
    if t.kind == BTF_KIND_INT and t.int_encoding & BTF_INT_BOOL:
        value = {"true": 1, "1": 1, "false": 0, "0": 0}.get(text.lower())
        if value is None:
            raise UserspaceError(f"{what}: {text!r} is not a bool (true/false/1/0)")
        return bytes([value]).ljust(t.size, b"\0")
    if t.kind in (BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64):
        signed = bool(t.int_encoding & BTF_INT_SIGNED) if t.kind == BTF_KIND_INT else t.kind_flag
        value = _number(t, text)
        if value is None:
            raise UserspaceError(f"{what}: {text!r} is not a number for {tname}")
        bits = 8 * t.size
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not lo <= value <= hi:
            raise UserspaceError(f"{what}: {value} does not fit {tname} ({lo}..{hi})")
        return (value & ((1 << bits) - 1)).to_bytes(t.size, "little")
    raise UserspaceError(f"{what}: a {tname} cannot be set (integers, bools, enums and char arrays can)")


def _number(t: BtfType, text: str) -> int | None:
    if t.kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
        for name, val in t.enum_values:
            if name == text:
                return val
    try:
        return int(text, 0)
    except ValueError:
        return None


def set_global(obj: ObjectFile, name: str, text: str) -> None:
    """Give global ``name`` the value ``text`` before load (``--set NAME=VALUE``)."""
    found = _globals(obj).get(name)
    what = f"--set {name}={text}"
    if found is None:
        known = ", ".join(sorted(_globals(obj))) or "none"
        raise UserspaceError(f"{what}: {obj.path} has no global variable {name!r} (its globals: {known})")
    spec, offset, type_id = found
    assert obj.btf is not None and spec.initial_value is not None
    raw = _encode(obj.btf, type_id, text, what)
    value = bytearray(spec.initial_value)
    value[offset : offset + len(raw)] = raw
    spec.initial_value = bytes(value)


def resize_map(obj: ObjectFile, name: str, entries: int) -> None:
    """``bpf_map__set_max_entries`` (``--map-size NAME=N``)."""
    what = f"--map-size {name}={entries}"
    spec = next((m for m in obj.maps if m.name == name), None)
    if spec is None:
        known = ", ".join(m.name for m in obj.maps if not m.is_data) or "none"
        raise UserspaceError(f"{what}: {obj.path} has no map {name!r} (its maps: {known})")
    if spec.is_data:
        raise UserspaceError(f"{what}: {name} holds global variables; its size is fixed")
    if not 0 < entries < 1 << 32:
        raise UserspaceError(f"{what}: max_entries must be 1..{(1 << 32) - 1}")
    spec.max_entries = entries


_CONFIG_LINE = re.compile(r"^(CONFIG_\w+)=(.*)$")


def parse_config(text: str) -> dict[str, str]:
    """A kernel ``.config``: ``CONFIG_X=y`` lines (``# CONFIG_X is not set`` gives ``n``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _CONFIG_LINE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^# (CONFIG_\w+) is not set$", line.strip())
        if m:
            out[m.group(1)] = "n"
    return out


def _kconfig_bytes(btf: Btf, ext: Extern, value: str) -> bytes:
    """A kconfig value as libbpf stores it: tristate chars/enums, bools, numbers, strings."""
    t = btf.resolved(ext.type_id)
    what = f"extern (kcfg) '{ext.name}'"
    if t.kind == BTF_KIND_ARRAY:
        return _encode(btf, ext.type_id, value.strip('"'), what)
    tri = {"y": 1, "n": 0, "m": 2}.get(value)
    if tri is not None:
        if t.kind == BTF_KIND_INT and t.size == 1 and not t.int_encoding & BTF_INT_BOOL and t.name == "char":
            return value.encode()
        if t.kind == BTF_KIND_INT and t.int_encoding & BTF_INT_BOOL and tri == 2:
            raise UserspaceError(f"{what}: value 'm' for a bool")
        return _encode(btf, ext.type_id, str(tri), what)
    return _encode(btf, ext.type_id, value, what)


def fill_kconfig(obj: ObjectFile, machine: Machine) -> None:
    """Write every ``__kconfig`` extern's value into the ``.kconfig`` map before load."""
    kcfg = [e for e in obj.externs.values() if e.kind == "kconfig"]
    if not kcfg:
        return
    assert obj.btf is not None
    text = machine.kconfig_source()
    config = parse_config(text) if text else {}
    version = machine.kernel_version if machine.kernel_version is not None else DEFAULT_KERNEL_VERSION
    known = {**KCONFIG_DEFAULTS, "LINUX_KERNEL_VERSION": str(version), **config}
    spec = obj.map(".kconfig")
    value = bytearray(spec.initial_value or b"")
    for ext in kcfg:
        text_value = known.get(ext.name)
        if text_value is None:
            if ext.weak:
                continue  # stays 0, as libbpf leaves an unresolved __weak extern
            source = "the kernel's config" if text else "no config (the kernel has none; declare it __weak)"
            raise UserspaceError(f"extern (kcfg) '{ext.name}': not found in {source}")
        raw = _kconfig_bytes(obj.btf, ext, text_value)
        value[ext.offset : ext.offset + len(raw)] = raw[: ext.size]
    spec.initial_value = bytes(value)


def ksym_address(obj: ObjectFile, machine: Machine, name: str) -> int:
    """The address of ``__ksym`` extern ``name`` (0 for a missing ``__weak`` one)."""
    ext = obj.externs[name]
    if machine.image.has_symbol(name):
        return machine.image.symbol(name).addr
    if ext.weak:
        return 0
    raise UserspaceError(f"extern (ksym) '{name}': not found in kernel")
