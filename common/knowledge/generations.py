"""Removing the versions of the knowledge base nobody reads any more, without ever touching the live one.

A generation that is not the pointer's is either the one it just replaced (responders may still
hold the old pointer for KNOWLEDGE_CACHE_SECONDS, so it waits out that much after the switch) or
left by a sync that died or lost a race (never live: removed at once). The header goes first, in
a transaction that reads the pointer, so a sync that switches to it meanwhile either wins (and
it is kept) or finds its header gone and refuses to switch; only then its passages are deleted.
Costs: 1 delete per passage and per document of the removed generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore

from common.knowledge.base import DOCUMENTS, GENERATIONS, PASSAGES, POINTER

BATCH = 400  # deletes per commit (Firestore takes 500)


def prune(db: firestore.Client, cache_seconds: float, say: Callable[[str], None]) -> int:
    """Delete every generation but the live one; returns how many were deleted."""
    pointer = db.document(POINTER).get().to_dict() or {}
    live, previous, switched = pointer.get("generation"), pointer.get("previous"), pointer.get("switchedAt")
    removed = 0
    for header in db.collection(GENERATIONS).list_documents():
        if header.id == live:
            continue
        if header.id == previous and isinstance(switched, datetime):
            wait = cache_seconds - (datetime.now(UTC) - switched).total_seconds()
            if wait > 0:
                say(f"knowledge: the replaced version goes in {wait:.0f}s (responders may still read it)")
                time.sleep(wait)
        if _unlink(db, header):
            _delete_passages(db, header.id)
            removed += 1
    return removed


def _unlink(db: firestore.Client, header: firestore.DocumentReference) -> bool:
    """Delete the header unless the pointer names it (in one transaction); False if it is live."""

    @firestore.transactional
    def attempt(transaction: firestore.Transaction) -> bool:
        data: dict[str, Any] = db.document(POINTER).get(transaction=transaction).to_dict() or {}
        if data.get("generation") == header.id:
            return False
        header.get(transaction=transaction)  # read, so that a switch to it conflicts with this
        transaction.delete(header)
        return True

    return bool(attempt(db.transaction()))


def _delete_passages(db: firestore.Client, generation: str) -> None:
    for name in (PASSAGES, DOCUMENTS):
        collection = db.collection(GENERATIONS, generation, name)
        while refs := list(collection.limit(BATCH).select([]).stream()):
            batch = db.batch()
            for snapshot in refs:
                batch.delete(snapshot.reference)
            batch.commit()
