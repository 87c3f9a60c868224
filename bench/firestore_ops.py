"""Count Firestore reads and writes per text turn, with a counting wrapper (bench only)."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from common.envelope import Envelope
from local import emulators as emu


class Counter:
    """Wraps the client's API object: documents read by get(), writes in each commit."""

    def __init__(self, api: Any) -> None:
        self.reads = self.writes = 0
        batch_get, commit = api.batch_get_documents, api.commit

        def counted_batch_get(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or (args[0] if args else {})
            self.reads += len(
                request.get("documents", []) if isinstance(request, dict) else request.documents
            )
            return batch_get(*args, **kwargs)

        def counted_commit(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.get("request") or (args[0] if args else {})
            self.writes += len(request.get("writes", []) if isinstance(request, dict) else request.writes)
            return commit(*args, **kwargs)

        api.batch_get_documents, api.commit = counted_batch_get, counted_commit

    def take(self) -> tuple[int, int]:
        counts = (self.reads, self.writes)
        self.reads = self.writes = 0
        return counts


def per_turn(emulators: emu.Emulators, env: dict[str, str], turns: int = 5) -> dict[str, Any]:
    os.environ.update(env)
    from common.responder import Responder

    responder = Responder()
    counter = Counter(responder.claims.db._firestore_api)  # the one client claims and history share
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
