"""Printers for map contents: bpftrace-style log2 histograms and ``key: value`` dumps.

Log2 bucket convention (bcc/libbpf-tools' ``log2l(v) + 1``): bucket 0 counts the value 0 and
bucket ``k >= 1`` counts values in ``[2**(k-1), 2**k)``; so bucket 1 is ``[1]``, bucket 2 is
``[2, 4)``, bucket 11 is ``[1K, 2K)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .maps import BpfMap

BAR_WIDTH = 52
_INT_SIZES = {1, 2, 4, 8}


def _power_label(power: int) -> str:
    for shift, suffix in ((60, "E"), (50, "P"), (40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if power >= shift:
            return f"{1 << (power - shift)}{suffix}"
    return str(1 << power)


def bucket_label(bucket: int) -> str:
    """bpftrace's label of a log2 bucket: ``[0]``, ``[1]``, ``[2, 4)``, ``[1K, 2K)``."""
    if bucket <= 0:
        return "[0]"
    if bucket == 1:
        return "[1]"
    return f"[{_power_label(bucket - 1)}, {_power_label(bucket)})"


def _bar(count: int, max_count: int) -> str:
    n = count * BAR_WIDTH // max_count if max_count else 0
    return "@" * n + " " * (BAR_WIDTH - n)


def format_log2_hist(counts: Mapping[int, int] | Iterable[tuple[int, int]],
                     title: str | None = None) -> str:
    """Render ``{bucket: count}`` like bpftrace's ``hist()`` (empty string if all zero).

    Rows go from the lowest to the highest non-empty bucket, each
    ``label`` (16 columns) ``count`` (8 columns, right aligned) `` |bar|``.
    """
    items = counts.items() if isinstance(counts, Mapping) else counts
    merged: dict[int, int] = {}
    for b, c in items:
        merged[b] = merged.get(b, 0) + c
    used = [b for b, c in merged.items() if c]
    lines = [f"{title}:"] if title else []
    if used:
        top = max(merged[b] for b in used)
        for b in range(min(used), max(used) + 1):
            c = merged.get(b, 0)
            lines.append(f"{bucket_label(b):<16}{c:>8} |{_bar(c, top)}|")
    return "\n".join(lines) + ("\n" if lines else "")


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _value_count(value: bytes | list[bytes]) -> int:
    if isinstance(value, list):  # per-CPU: sum the slots
        return sum(_int(v) for v in value)
    return _int(value)


def log2_hist_counts(m: BpfMap) -> dict[int, int]:
    """Read a histogram map (u32/u64 bucket keys, u64 counts; per-CPU counts are summed)."""
    out: dict[int, int] = {}
    for k, v in m.nonzero_items():
        c = _value_count(v)
        if c:
            out[_int(k)] = out.get(_int(k), 0) + c
    return out


def format_log2_hist_map(m: BpfMap, title: str | None = None) -> str:
    """bpftrace-style histogram of a log2 bucket map."""
    return format_log2_hist(log2_hist_counts(m), title)


def format_bytes(raw: bytes, btf: object | None = None, type_id: int = 0) -> str:
    """A key or value: BTF-formatted if a type is known, else an int (1/2/4/8 bytes) or hex."""
    if btf is not None and type_id:
        fmt = getattr(btf, "format_value", None)
        if fmt is not None:
            return str(fmt(type_id, raw))
    if len(raw) in _INT_SIZES:
        return str(_int(raw))
    return "0x" + raw.hex()


def format_map(m: BpfMap, title: str | None = None, sort: str | None = "key",
               skip_zero: bool = False) -> str:
    """``key: value`` lines for a hash/array/per-CPU map (per-CPU values as ``[cpu0, cpu1]``).

    ``sort`` is ``"key"`` (numeric for integer keys), ``"value"`` or None (map order);
    ``skip_zero`` drops all-zero values (useful for arrays).
    """
    rows = m.nonzero_items() if skip_zero else m.items()
    if sort == "key":
        rows.sort(key=lambda kv: (_int(kv[0]) if len(kv[0]) in _INT_SIZES else 0, kv[0]))
    elif sort == "value":
        rows.sort(key=lambda kv: _value_count(kv[1]))
    lines = [f"{title}:"] if title else []
    for k, v in rows:
        ktext = format_bytes(k, m.btf, m.btf_key_type_id)
        if isinstance(v, list):
            vtext = "[" + ", ".join(format_bytes(x, m.btf, m.btf_value_type_id) for x in v) + "]"
        else:
            vtext = format_bytes(v, m.btf, m.btf_value_type_id)
        lines.append(f"{ktext}: {vtext}")
    return "\n".join(lines) + ("\n" if lines else "")
