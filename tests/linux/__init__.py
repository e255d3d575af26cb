"""Test support for Linux guests (not part of the runtime): Debian kernels fetched into the test
cache, a tiny initramfs the project builds, and QEMU oracle runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .cache import FetchError

T = TypeVar("T")


def obtain(make: Callable[..., T], *args: object) -> T:
    """``make(*args)``, turning a missing prerequisite (FetchError) into a test failure with its
    one-line reason: these tests never skip, on CI or elsewhere."""
    import pytest

    try:
        return make(*args)
    except FetchError as e:
        pytest.fail(str(e), pytrace=False)
