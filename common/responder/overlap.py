"""Round trips of one attempt that need not wait on each other, run side by side.

The responder reads the user's history while it claims the message (and, once it is read, looks
up the business's documents for the turn), and sends the read receipt while the model thinks.
An instance serves several requests at once, so each request thread keeps its own pending work
(thread-local); waiting for it raises its exception inside the attempt.
The work runs in a copy of the attempt's context, so its Firestore calls keep the attempt's
deadline (common/store/db.py).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Overlap:
    def __init__(self, workers: int = 16) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="responder-io")
        self._mine = threading.local()

    def prefetch(
        self, key: str, load: Callable[[str], Any] | None, then: Callable[[Any], Any] | None = None
    ) -> None:
        """Start `load(key)` now (None: nothing worth prefetching); `take` picks the result up.
        `then(result)` starts as soon as that result is there; `followed` picks up its own."""
        pending = self._submit(load, key) if load else None
        self._mine.prefetched = (key, pending)
        follow = then if pending is not None else None
        self._mine.followed = self._submit(lambda: follow(pending.result())) if follow else None

    def followed(self, work: Callable[[], T]) -> T:
        """What `prefetch`'s `then` started (used once), else `work()` now."""
        pending: Future[T] | None = getattr(self._mine, "followed", None)
        self._mine.followed = None
        return pending.result() if pending is not None else work()

    def take(self, key: str, load: Callable[[str], T]) -> T:
        """What `prefetch` started for `key` (used once), else `load(key)` now."""
        pending_key, pending = getattr(self._mine, "prefetched", (None, None))
        self._mine.prefetched = (None, None)
        if pending is not None and pending_key == key:
            return pending.result()
        return load(key)

    def start(self, work: Callable[[], None] | None) -> None:
        """Run `work` alongside the attempt (None: nothing); `wait` joins it."""
        self._mine.background = self._submit(work) if work else None

    def _submit(self, work: Callable[..., T], *args: Any) -> Future[T]:
        return self._pool.submit(contextvars.copy_context().run, work, *args)

    def wait(self) -> None:
        """Join what `start` began; its exception is raised here, in the attempt."""
        background: Future[None] | None = getattr(self._mine, "background", None)
        if background is not None:
            background.result()
