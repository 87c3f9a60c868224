"""Count Firestore reads and writes per text turn, with a counting wrapper (bench only)."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from common.bus.envelope import Envelope
from common.store.firestore_rest import Firestore
from local import emulators as emu


class Counter:
    """Wraps our REST client's calls: a document read per get(), one per path of get_all(), one
    per document a query returns; a write per commit() (create, update and set all commit one)."""

    def __init__(self, db: Firestore) -> None:
        self.reads = self.writes = 0
        get, get_all, where_equal, commit = db.get, db.get_all, db.where_equal, db.commit

        def counted_get(path: str) -> Any:
            self.reads += 1
            return get(path)

        def counted_get_all(paths: Any) -> Any:
            paths = list(paths)
            self.reads += len(paths)
            return get_all(paths)

        def counted_where_equal(*args: Any, **kwargs: Any) -> Any:
            found = where_equal(*args, **kwargs)
            self.reads += max(1, len(found))  # Firestore bills an empty query one read
            return found

        def counted_commit(write: dict[str, Any]) -> Any:
            self.writes += 1  # counted when sent: a refused create is still an operation
            return commit(write)

        db.get, db.get_all, db.where_equal, db.commit = (  # type: ignore[method-assign]
            counted_get,
            counted_get_all,
            counted_where_equal,
            counted_commit,
        )

    def take(self) -> tuple[int, int]:
        counts = (self.reads, self.writes)
        self.reads = self.writes = 0
        return counts


def per_turn(emulators: emu.Emulators, env: dict[str, str], turns: int = 5) -> dict[str, Any]:
    os.environ.update(env)
    from common.responder.responder import Responder

    responder = Responder()
    counter = Counter(responder.claims.db)  # the one client claims, history and guardrails share
    counts = []
    user = f"1555{uuid.uuid4().int % 10**7:07d}"
    for index in range(turns):
        envelope = Envelope(
            f"wamid.ops{uuid.uuid4().hex}", user, user, "1065", "text", int(time.time()), f"turn {index}"
        )
        responder.handle(envelope)
        counts.append(counter.take())
    responder.handle(envelope)  # a redelivery of the last one
    redelivery = counter.take()
    reads, writes = max(c[0] for c in counts), max(c[1] for c in counts)
    return {
        "reads": reads,
        "writes": writes,
        "redelivery_reads": redelivery[0],
        "redelivery_writes": redelivery[1],
        "steady_reads": counts[-1][0],  # a turn within the guardrails' cache period
        "steady_writes": counts[-1][1],
    }
