"""Count Firestore reads and writes per text turn, at the client's generated API (bench only)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

from google.cloud.firestore_v1.services.firestore import FirestoreClient

from common.bus.envelope import Envelope
from local import emulators as emu


def _requested(request: Any, field: str) -> int:
    """How many writes (or documents) a request names, given as a dict or a message."""
    items = request.get(field) if isinstance(request, dict) else getattr(request, field, None)
    return len(items or [])


class Counter:
    """Wraps the three RPCs the store makes, for every client of this process: a read per document
    a BatchGetDocuments names (get, get_all), one per document a RunQuery returns (an empty answer
    is billed one); a write per Write a Commit carries (create, update and set commit one each),
    counted when sent (a refused create is still an operation; a retry counts once)."""

    def __init__(self) -> None:
        self.reads = self.writes = 0
        commit, batch_get, run_query = (
            FirestoreClient.commit,
            FirestoreClient.batch_get_documents,
            FirestoreClient.run_query,
        )
        counter = self

        def counted_commit(client: FirestoreClient, request: Any = None, **kwargs: Any) -> Any:
            counter.writes += _requested(request, "writes")
            return commit(client, request=request, **kwargs)

        def counted_batch_get(client: FirestoreClient, request: Any = None, **kwargs: Any) -> Any:
            counter.reads += _requested(request, "documents")
            return batch_get(client, request=request, **kwargs)

        def counted_run_query(client: FirestoreClient, request: Any = None, **kwargs: Any) -> Iterator[Any]:
            found = 0
            for response in run_query(client, request=request, **kwargs):
                found += bool(response.document)
                yield response
            counter.reads += max(1, found)

        self._originals = (commit, batch_get, run_query)
        FirestoreClient.commit = counted_commit  # type: ignore[method-assign,assignment]
        FirestoreClient.batch_get_documents = counted_batch_get  # type: ignore[method-assign,assignment]
        FirestoreClient.run_query = counted_run_query  # type: ignore[method-assign,assignment]

    def close(self) -> None:
        FirestoreClient.commit, FirestoreClient.batch_get_documents, FirestoreClient.run_query = (  # type: ignore[method-assign]
            self._originals
        )

    def take(self) -> tuple[int, int]:
        counts = (self.reads, self.writes)
        self.reads = self.writes = 0
        return counts


def per_turn(emulators: emu.Emulators, env: dict[str, str], turns: int = 5) -> dict[str, Any]:
    os.environ.update(env)
    from common.responder.responder import Responder

    responder = Responder()
    counter = Counter()
    try:
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
    finally:
        counter.close()
    reads, writes = max(c[0] for c in counts), max(c[1] for c in counts)
    return {
        "reads": reads,
        "writes": writes,
        "redelivery_reads": redelivery[0],
        "redelivery_writes": redelivery[1],
        "steady_reads": counts[-1][0],  # a turn within the guardrails' cache period
        "steady_writes": counts[-1][1],
    }
