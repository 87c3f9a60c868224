"""Daily counters in Firestore that cost (almost) no extra operation per turn.

- A user's usage lives in their conversation document (`usageDay`, `usageTurns`, `usageTokens`,
  `usageAudio`, `usageMessages`): it is read with the history (no extra read) and written as
  `Increment` fields in the same write that appends the turns (no extra write).
- The whole bot's tokens per day: a sharded counter (`budget/{day}-{n}`, SHARDS documents, each
  takes a random share of the increments), summed at most once per CACHE seconds per instance.
  One document sustains about 1 write/s, so SHARDS shards sustain about SHARDS turns/s.
- Once-a-day notices (the stranger's reply, the limit reply, the busy reply, the budget alert):
  `notices/{hash}` created atomically; the message that created it owns it, so a retry of that
  message sends it again and any other message of that day stays silent.
- Pauses set by an admin: one document (`controls/pause`), read at most once per CACHE seconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from common.store.claims import doc_id
from common.store.firestore_rest import Conflict, Firestore
from common.store.firestore_values import DELETE_FIELD, Increment

T = TypeVar("T")
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Usage:
    """One user's counters for one day."""

    turns: int = 0
    tokens: int = 0
    audio: float = 0.0
    messages: int = 0
    day: str = ""

    @classmethod
    def of(cls, document: dict[str, Any], day: str) -> Usage:
        if document.get("usageDay") != day:
            return cls(day=day)
        return cls(
            int(document.get("usageTurns") or 0),
            int(document.get("usageTokens") or 0),
            float(document.get("usageAudio") or 0),
            int(document.get("usageMessages") or 0),
            day,
        )

    def fields(
        self, *, turns: int = 0, tokens: int = 0, audio: float = 0, messages: int = 0
    ) -> dict[str, Any]:
        """The fields to add to the history write: increments today, fresh values on a new day."""
        if self == Usage(day=self.day):  # nothing counted today yet: start the day's values
            new = {"usageTurns": turns, "usageTokens": tokens, "usageAudio": audio, "usageMessages": messages}
            return {"usageDay": self.day, **new}
        values = {"usageTurns": turns, "usageTokens": tokens, "usageAudio": audio, "usageMessages": messages}
        return {name: Increment(value) for name, value in values.items() if value}


class Cached:
    """A value fetched at most once per `seconds` per instance (0 = every time)."""

    def __init__(self, seconds: float, fetch: Callable[[], T]) -> None:
        self.seconds, self.fetch = seconds, fetch
        self.value: Any = None
        self.at = float("-inf")
        self.lock = threading.Lock()

    def get(self) -> Any:
        with self.lock:
            if time.monotonic() - self.at >= self.seconds:
                self.value, self.at = self.fetch(), time.monotonic()
            return self.value

    def forget(self) -> None:
        with self.lock:
            self.at = float("-inf")


class Notices:
    """At most one notice of a kind per key and day, owned by the message that created it."""

    def __init__(self, db: Firestore) -> None:
        self.db = db

    def claim(self, kind: str, key: str, day: str, message_id: str) -> bool:
        """True for the message that sends today's notice (also on its retries): 1 write, and on a
        conflict 1 read."""
        path = f"notices/{doc_id(f'{kind}:{key}:{day}')}"
        mark = doc_id(message_id)
        expire = datetime.now(UTC) + timedelta(days=2)
        try:
            self.db.create(path, {"kind": kind, "by": mark, "expireAt": expire})
            return True
        except Conflict:
            return self.db.get(path).data.get("by") == mark


class Budget:
    """The whole bot's tokens per day as a sharded counter."""

    def __init__(self, db: Firestore, shards: int, cache_seconds: float) -> None:
        self.db, self.shards = db, max(1, shards)
        self.day = ""
        self.total = Cached(cache_seconds, lambda: self.read(self.day))

    def ref(self, day: str, shard: int) -> str:
        return f"budget/{day}-{shard}"

    def add(self, day: str, tokens: int) -> None:
        """1 write to a random shard."""
        expire = datetime.now(UTC) + timedelta(days=3)
        shard = self.ref(day, random.randrange(self.shards))  # noqa: S311 - spreading load, not secrecy
        self.db.set(shard, {"tokens": Increment(tokens), "expireAt": expire}, merge=True)

    def read(self, day: str) -> int:
        """The exact total: one read per shard that exists."""
        refs = [self.ref(day, n) for n in range(self.shards)]
        return sum(int(s.data.get("tokens") or 0) for s in self.db.get_all(refs) if s.exists)

    def spent(self, day: str) -> int:
        """Today's total, at most CACHE seconds old."""
        if day != self.day:
            self.day = day
            self.total.forget()
        return int(self.total.get() or 0)


class Pauses:
    """Which users an admin paused, and until when: one document, cached."""

    def __init__(self, db: Firestore, cache_seconds: float) -> None:
        self.db, self.ref = db, "controls/pause"
        self.cached = Cached(cache_seconds, lambda: self.db.get(self.ref).data)

    def until(self, ids: frozenset[str], now: datetime) -> datetime | None:
        """The end of the pause that covers one of these ids (or everyone), if any is running."""
        data = self.cached.get()
        users = data.get("users") if isinstance(data.get("users"), dict) else {}
        ends = [data.get("all"), *(users.get(doc_id(i)) for i in ids)]
        running = [end for end in ends if isinstance(end, datetime) and end > now]
        return max(running) if running else None

    def pause(self, user: str | None, until: datetime) -> None:
        """1 write: everyone (`user` None) or one id."""
        change = {"all": until} if user is None else {"users": {doc_id(user): until}}
        self.db.set(self.ref, change, merge=True)
        self.cached.forget()

    def resume(self, user: str | None) -> None:
        """1 write: every pause ends (`user` None), or that id's."""
        if user is None:
            self.db.set(self.ref, {})
        else:
            self.db.set(self.ref, {"users": {doc_id(user): DELETE_FIELD}}, merge=True)
        self.cached.forget()
