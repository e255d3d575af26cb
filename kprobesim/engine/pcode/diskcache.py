"""The translation cache on disk: decoded block shapes and compiled block code between processes.

Translating a block (SLEIGH decode, code generation, Python's ``compile``) costs far more than
running it a few times, and most of a short run is first-time translation. Like ``.pyc`` files,
the results are kept: one file per (engine fingerprint, language) under the cache directory,
read when the first engine of a process needs it and merged back at exit.

The fingerprint covers everything a translation depends on besides its key: the engine's own
source files, pypcode's version (the SLEIGH specifications) and the Python version (marshal
format, bytecode). Keys name the rest (address, instruction bytes, hooks, tier), so a hit is
the same code the engine would have compiled.

``KPROBESIM_CACHE_DIR`` chooses the directory (default ``$XDG_CACHE_HOME/kprobesim``, else
``~/.cache/kprobesim``); ``KPROBESIM_CACHE=off`` disables it. A directory that cannot be written
disables it silently: the cache is an optimisation, never a requirement.
"""

from __future__ import annotations

import atexit
import hashlib
import marshal
import os
import sys
import types
from pathlib import Path
from typing import Any

FORMAT = 2  # (FORMAT, digest of the payload, payload); 1 had no digest
# Budgets: past them, a flush keeps only what this process used or added (probe placements and
# patched code leave many variants nobody runs again; loading them would slow every start).
MAX_CODE = 3000
MAX_SHAPES = 5000
MAX_RUNS = 20000


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is off."""
    if os.environ.get("KPROBESIM_CACHE", "").lower() in ("0", "off", "no", "false"):
        return None
    d = os.environ.get("KPROBESIM_CACHE_DIR")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kprobesim"


def fingerprint() -> str:
    """Hash of what compiled code depends on besides its key."""
    import pypcode

    h = hashlib.sha256(f"{FORMAT} {sys.version} {pypcode.__version__}".encode())
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")):  # every module of the engine
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


class Store:
    """One language's persistent entries: ``shapes``, ``code`` and ``runs`` dictionaries.

    ``shapes``: (pc, max instructions) -> [(probe bytes, limit or None, pcs, end, the decoded
    instructions (packed on disk: codegen.pack_insns))];
    ``code``: compile key -> (code object, source, function name, instruction line marks).
    """

    def __init__(self, lang: str, path: Path | None) -> None:
        self.lang = lang
        self.path = path
        self.shapes: dict[Any, list[tuple[Any, ...]]] = {}
        self.code: dict[Any, tuple[Any, ...]] = {}
        self.new_shapes: dict[Any, list[tuple[Any, ...]]] = {}
        self.new_code: dict[Any, tuple[Any, ...]] = {}
        self.runs: dict[Any, int] = {}  # compile key -> tier-0 runs so far (all processes)
        self.runs_source: dict[Any, list[int]] | None = None  # the engine's live counts
        self.used_code: set[Any] = set()  # keys looked up by this process
        self.used_shapes: set[Any] = set()
        self.dirty = False  # the file held entries that were dropped: rewrite it at the next flush
        if path is not None:
            loaded = _read(path)
            if loaded is not None:
                self.shapes, self.code, self.runs = loaded[:3]
                self.dirty = loaded[3]

    def add_shape(self, key: Any, entry: tuple[Any, ...]) -> None:
        self.shapes.setdefault(key, []).append(entry)
        self.new_shapes.setdefault(key, []).append(entry)

    def add_code(self, key: Any, value: tuple[Any, ...]) -> None:
        self.code[key] = value
        self.new_code[key] = value

    def flush(self) -> None:
        """Merge this process's new entries into the file (atomically replaced)."""
        live = {k: v[0] for k, v in (self.runs_source or {}).items()
                if v[0] > self.runs.get(k, 0) and k[0] == self.lang}
        if self.path is None or not (self.new_code or self.new_shapes or live or self.dirty):
            return
        shapes, code, runs, _ = _read(self.path) or ({}, {}, {}, True)
        if len(code) + len(self.new_code) > MAX_CODE:
            code = {k: v for k, v in code.items() if k in self.used_code}
        if len(shapes) + len(self.new_shapes) > MAX_SHAPES:
            shapes = {k: v for k, v in shapes.items() if k in self.used_shapes}
        if len(runs) + len(live) > MAX_RUNS:
            touched = self.runs_source or {}
            runs = {k: n for k, n in runs.items() if k in touched}
        for k, n in live.items():
            runs[k] = max(runs.get(k, 0), n)
        from .codegen import pack_insns

        for k, entries in self.new_shapes.items():
            have = shapes.setdefault(k, [])
            known = {e[:4] for e in have}
            have.extend((*e[:4], pack_insns(e[4])) for e in entries if e[:4] not in known)
            del have[:-8]
        code.update(self.new_code)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(_pack(shapes, code, runs))
            os.replace(tmp, self.path)
        except (OSError, ValueError):
            try:
                tmp.unlink()
            except OSError:
                pass
            return
        self.new_shapes.clear()
        self.new_code.clear()
        self.runs.update(live)
        self.dirty = False


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def _pack(shapes: dict[Any, Any], code: dict[Any, Any], runs: dict[Any, int]) -> bytes:
    """The file's bytes: the entries, and a digest that tells any later change of them."""
    payload = marshal.dumps((shapes, code, runs))
    return marshal.dumps((FORMAT, _digest(payload), payload))


def _read(path: Path) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, int], bool] | None:
    """The file's shapes, code and runs, each entry checked (wrong-shaped ones are dropped, so
    the engine decodes and compiles those blocks again), and whether anything was dropped.
    None for a file that is not one this engine wrote whole: truncated, foreign, or changed
    since (its digest no longer matches; entries of the right shape can still be wrong)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        fmt, digest, payload = marshal.loads(data)
        if fmt != FORMAT or type(payload) is not bytes or digest != _digest(payload):
            return None
        shapes, code, runs = marshal.loads(payload)
    except Exception:  # noqa: BLE001 - truncated or foreign: ignored (rewritten at the next flush)
        return None
    if not all(isinstance(d, dict) for d in (shapes, code, runs)):
        return None
    good_shapes = {k: v for k, v in shapes.items() if _valid_shape(k, v)}
    good_code = {k: v for k, v in code.items() if _valid_code(k, v)}
    good_runs = {k: n for k, n in runs.items() if isinstance(k, tuple) and type(n) is int and n >= 0}
    dropped = (len(good_shapes), len(good_code), len(good_runs)) != (len(shapes), len(code), len(runs))
    return good_shapes, good_code, good_runs, dropped


def _is_int(x: Any) -> bool:
    return type(x) is int


def _valid_vn(vn: Any) -> bool:
    return type(vn) is tuple and len(vn) == 3 and type(vn[0]) is str and _is_int(vn[1]) and _is_int(vn[2])


def _valid_packed(packed: Any) -> bool:
    """Packed instructions as codegen.pack_insns writes them."""
    from .codegen import OpCode

    opcodes = {int(o) for o in OpCode}
    if type(packed) is not tuple or not packed:
        return False
    for insn in packed:
        if type(insn) is not tuple or len(insn) != 7:
            return False
        addr, length, raw, ops, mnem, invalid, meta = insn
        if not (_is_int(addr) and _is_int(length) and type(raw) is bytes and type(ops) is tuple):
            return False
        if not (type(mnem) is str and type(invalid) is bool and type(meta) is dict):
            return False
        for op in ops:
            if type(op) is not tuple or len(op) != 5 or op[0] not in opcodes or type(op[2]) is not tuple:
                return False
            if not (op[1] is None or _valid_vn(op[1])) or not all(_valid_vn(v) for v in op[2]):
                return False
            if not (op[3] is None or type(op[3]) is str) or not (op[4] is None or type(op[4]) is str):
                return False
    return True


def _valid_shape(key: Any, entries: Any) -> bool:
    """(pc, max instructions) -> [(probe bytes, limit or None, pcs, end, packed instructions)]."""
    if type(key) is not tuple or len(key) != 2 or not all(map(_is_int, key)) or type(entries) is not list:
        return False
    for e in entries:
        if type(e) is not tuple or len(e) != 5:
            return False
        probe, limit, pcs, end, packed = e
        if type(probe) is not bytes or not (limit is None or _is_int(limit)) or not _is_int(end):
            return False
        if type(pcs) is not tuple or not pcs or not all(map(_is_int, pcs)) or not _valid_packed(packed):
            return False
        if len(pcs) != len(packed):
            return False
    return True


def _valid_code(key: Any, value: Any) -> bool:
    """Snippets: (code, source, [function names]); blocks: (code, source, name, (marks, dirty))."""
    if type(key) is not tuple or len(key) < 3 or type(value) is not tuple or not value:
        return False
    codeobj = value[0]
    if not isinstance(codeobj, types.CodeType):
        return False
    if key[1] == "snippets":
        if len(value) != 3 or type(value[1]) is not str or type(value[2]) not in (list, tuple):
            return False
        names = value[2]
        return type(key[2]) is tuple and len(names) == len(key[2]) and all(
            type(n) is str and n in codeobj.co_names for n in names
        )
    if len(value) != 4 or type(value[1]) is not str or type(value[2]) is not str or value[2] not in codeobj.co_names:
        return False
    marks = value[3]
    return (
        type(marks) is tuple
        and len(marks) == 2
        and all(type(m) is tuple and all(map(_is_int, m)) for m in marks)
    )


_STORES: dict[str, Store] = {}


def store(lang: str) -> Store:
    """The process-wide store for ``lang`` (loaded on first use; flushed at exit)."""
    s = _STORES.get(lang)
    if s is None:
        d = cache_dir()
        path = None
        if d is not None:
            safe = "".join(c if c.isalnum() else "_" for c in lang)
            path = d / f"pcode-{fingerprint()}-{safe}.bin"
            _remove_stale(d, path)
        s = _STORES[lang] = Store(lang, path)
        global _REGISTERED
        if not _REGISTERED:
            atexit.register(flush_all)
            _REGISTERED = True
    return s


_REGISTERED = False


def _remove_stale(d: Path, keep: Path) -> None:
    """Files of other fingerprints for the same language hold code no engine can use now."""
    suffix = keep.name.split("-", 2)[2]
    try:
        for f in d.glob(f"pcode-*-{suffix}"):
            if f != keep:
                f.unlink()
    except OSError:
        pass


def flush_all() -> None:
    for s in _STORES.values():
        s.flush()


def reset() -> None:
    """Forget the loaded stores (tests: a new cache directory takes effect)."""
    flush_all()
    _STORES.clear()


def forget() -> None:
    """Drop the loaded stores without saving what this process added (nothing is written at
    exit): for a cache folder that is thrown away, such as a test run's."""
    _STORES.clear()
