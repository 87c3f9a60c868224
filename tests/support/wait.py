"""Polling with a deadline: how the tests wait for something to happen (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def poll(condition: Callable[[], T], timeout: float = 60, what: str = "") -> T:
    """condition() until it is truthy (its value is returned) or the deadline passes (fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    pytest.fail(f"not within {timeout:g}s: {what}", pytrace=False)


def wait_for(condition: Callable[[], bool], timeout: float = 30, every: float = 0.1) -> bool:
    """Poll `condition` until it holds or the deadline passes; the last check decides."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()
