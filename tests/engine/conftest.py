"""Engine tests: make the helper modules in this folder importable; the ``engine_tier`` fixture."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(params=["tiered", "compiled"])
def engine_tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: with the default tiering (a block starts in tier 0, interpreted) and
    with every block compiled before its first run (``hot_after=0``)."""
    from kprobesim.engine.pcode import engine

    for cache in (engine._CODE_CACHE, engine._LIFT_CACHE, engine._TIER0_RUNS):
        cache.clear()  # code compiled by an earlier test would run at once, whatever the tier
    if request.param == "compiled":
        monkeypatch.setattr(engine, "HOT_AFTER", 0)
    return request.param
