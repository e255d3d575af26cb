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
from pathlib import Path
from typing import Any

FORMAT = 1
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
        if path is not None:
            loaded = _read(path)
            if loaded is not None:
                self.shapes, self.code, self.runs = loaded

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
        if self.path is None or not (self.new_code or self.new_shapes or live):
            return
        shapes, code, runs = _read(self.path) or ({}, {}, {})
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
            tmp.write_bytes(marshal.dumps((FORMAT, shapes, code, runs)))
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


def _read(path: Path) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, int]] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        fmt, shapes, code, runs = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None  # truncated or foreign: ignored (rewritten at the next flush)
    if fmt != FORMAT or not all(isinstance(d, dict) for d in (shapes, code, runs)):
        return None
    return shapes, code, runs


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
