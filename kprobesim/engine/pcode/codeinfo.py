"""A map from compiled block code objects to what the engine needs about them, by identity.

Two compilations of the same block give code objects that compare equal, and a dictionary
would file both under the first one; when that one is garbage-collected its entry must not
take the other's with it. Entries go when their code object does, never for size: a block
still running needs its entry (a trap writes back the registers held in its locals).
"""

from __future__ import annotations

import weakref
from types import CodeType
from typing import Any


class CodeInfoMap:
    """code object -> info, keyed by identity, holding the code objects weakly."""

    def __init__(self) -> None:
        self._m: dict[int, tuple[weakref.ref[CodeType], Any]] = {}

    def get(self, code: Any) -> Any:
        e = self._m.get(id(code))
        if e is None or e[0]() is not code:
            return None
        return e[1]

    def __contains__(self, code: Any) -> bool:
        return self.get(code) is not None

    def __setitem__(self, code: CodeType, info: Any) -> None:
        key = id(code)
        m = self._m

        def gone(ref: weakref.ref[CodeType], key: int = key) -> None:
            e = m.get(key)
            if e is not None and e[0] is ref:
                del m[key]

        self._m[key] = (weakref.ref(code, gone), info)

    def __len__(self) -> int:
        return len(self._m)

    def clear(self) -> None:
        self._m.clear()
