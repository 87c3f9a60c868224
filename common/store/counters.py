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
- /stats: a query over the day's conversations, streamed (1 read per user active that day).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from common.store import history
from common.store.claims import doc_id
from common.store.db import reading, writing

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
        return {name: firestore.Increment(value) for name, value in values.items() if value}


USAGE_FIELDS = ["usageDay", "usageTurns", "usageTokens", "usageAudio", "usageMessages"]


def usage_on(db: firestore.Client, day: str) -> Iterator[Usage]:
    """Every user's usage of `day`, as the query streams it (1 read per user active that day;
    an empty answer is billed 1): /stats never holds every document at once."""
    query = db.collection(history.COLLECTION).where(filter=firestore.FieldFilter("usageDay", "==", day))
    for snapshot in query.select(USAGE_FIELDS).stream(**reading()):
        yield Usage.of(snapshot.to_dict() or {}, day)


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

    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def claim(self, kind: str, key: str, day: str, message_id: str) -> bool:
        """True for the message that sends today's notice (also on its retries, and when the
        answer to its create was lost): 1 write, and on a conflict 1 read."""
        ref = self.db.collection("notices").document(doc_id(f"{kind}:{key}:{day}"))
        mark = doc_id(message_id)
        expire = datetime.now(UTC) + timedelta(days=2)
        try:
            ref.create({"kind": kind, "by": mark, "expireAt": expire}, **writing())
            return True
        except AlreadyExists:
            return (ref.get(**reading()).to_dict() or {}).get("by") == mark


class Budget:
    """The whole bot's tokens per day as a sharded counter."""

    def __init__(self, db: firestore.Client, shards: int, cache_seconds: float) -> None:
        self.db, self.shards = db, max(1, shards)
        self.day = ""
        self.total = Cached(cache_seconds, lambda: self.read(self.day))

    def ref(self, day: str, shard: int) -> firestore.DocumentReference:
        return self.db.collection("budget").document(f"{day}-{shard}")

    def add(self, day: str, tokens: int, shard: int | None = None) -> None:
        """1 write to shard number `shard` (None: a random one)."""
        expire = datetime.now(UTC) + timedelta(days=3)
        if shard is None:
            shard = random.randrange(self.shards)  # noqa: S311 - spreading load, not secrecy
        ref = self.ref(day, shard)
        ref.set({"tokens": firestore.Increment(tokens), "expireAt": expire}, merge=True, **writing())

    def read(self, day: str) -> int:
        """The exact total: one read per shard (get_all: one round trip)."""
        refs = [self.ref(day, n) for n in range(self.shards)]
        snapshots = self.db.get_all(refs, **reading())
        return sum(int((s.to_dict() or {}).get("tokens") or 0) for s in snapshots if s.exists)

    def spent(self, day: str) -> int:
        """Today's total, at most CACHE seconds old."""
        if day != self.day:
            self.day = day
            self.total.forget()
        return int(self.total.get() or 0)


class Pauses:
    """Which users an admin paused, and until when: one document, cached."""

    def __init__(self, db: firestore.Client, cache_seconds: float) -> None:
        self.db, self.ref = db, db.document("controls/pause")
        self.cached = Cached(cache_seconds, lambda: self.ref.get(**reading()).to_dict() or {})

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
        self.ref.set(change, merge=True, **writing())
        self.cached.forget()

    def resume(self, user: str | None) -> None:
        """1 write: every pause ends (`user` None), or that id's."""
        if user is None:
            self.ref.set({}, **writing())
        else:
            self.ref.set({"users": {doc_id(user): firestore.DELETE_FIELD}}, merge=True, **writing())
        self.cached.forget()
