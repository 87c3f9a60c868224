"""Wait for a condition by polling until a deadline: tests synchronise on outcomes, never on sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], timeout: float = 30, interval: float = 0.1) -> bool:
    """True as soon as `condition()` holds; False if it still does not at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
