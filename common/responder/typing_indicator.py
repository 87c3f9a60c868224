"""Keep WhatsApp's "typing…" on screen while slow work runs: it disappears after about 25 s.

`Typing(send, every, deadline)` is a context manager around the slow part of an attempt (media
download, model call): a background thread re-sends the indicator every `every` seconds
(TYPING_REFRESH_SECONDS) and stops when the block ends, whether it returned or raised, or when
the attempt's deadline is near. Leaving the block waits for a refresh in flight, so none goes out
after the reply; a refresh that fails is logged and ends the refreshing (it is only cosmetic).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from common import log

MAX_CALL_SECONDS = 5.0  # one refresh may take this long at most


class Typing:
    def __init__(self, send: Callable[[float], None], every: float, deadline: float) -> None:
        """`send(timeout)` shows the indicator once; `deadline` is a time.monotonic() value."""
        self.send, self.every, self.deadline = send, every, deadline
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="typing-indicator", daemon=True)
        self.refreshes = 0

    def __enter__(self) -> Typing:
        if self.every > 0:
            self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """No refresh after this returns."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(MAX_CALL_SECONDS + 1)

    def _run(self) -> None:
        while not self.stopped.wait(self.every):
            left = self.deadline - time.monotonic()
            if left < 1:
                return  # the attempt is over: never outlive it
            try:
                self.send(min(MAX_CALL_SECONDS, left))
            except Exception as exc:  # cosmetic: the attempt itself goes on
                log.warning("typing indicator refresh failed: stopped refreshing", error=type(exc).__name__)
                return
            self.refreshes += 1
