"""Exactly-once replies: a message id is claimed in Firestore before any side effect.

`create()` is atomic across instances, so one attempt owns a fresh message. The claim stays
`working` under a lease while the reply is made and sent, then becomes `done`; a redelivery of
a done message is acknowledged without acting. A `working` claim whose lease has run out was
left by a crashed (or failed) attempt and is taken over; the taker resends the reply already
stored in the history (see responder.py) from the first part that did not go out.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore

COLLECTION = "claims"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class State(enum.StrEnum):
    WORKING = "working"
    DONE = "done"


class Outcome(enum.Enum):
    OWNED = "owned"  # a fresh claim: ours
    TAKEN_OVER = "taken_over"  # an abandoned claim: ours now, maybe with parts already sent
    DONE = "done"  # answered before: acknowledge
    BUSY = "busy"  # another attempt holds a live lease: retry later


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Outcome
    parts_sent: int = 0


def doc_id(key: str) -> str:
    """Firestore ids cannot hold '/', which base64 wamids can: hash them (also keeps ids opaque)."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class Claims:
    def __init__(self, db: firestore.Client, lease: timedelta, ttl: timedelta) -> None:
        self.db, self.lease, self.ttl = db, lease, ttl

    def ref(self, message_id: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(doc_id(message_id))

    def claim(self, message_id: str) -> Claim:
        """1 write for a fresh message; a transaction (1 read, ≤ 1 write) for a redelivery."""
        now = datetime.now(UTC)
        try:
            self.ref(message_id).create(self._working(message_id, now, parts_sent=0))
            return Claim(Outcome.OWNED)
        except exceptions.Conflict:
            return self._take_over(message_id, now)

    def _working(self, message_id: str, now: datetime, parts_sent: int) -> dict[str, Any]:
        return {
            "messageId": message_id,
            "state": State.WORKING.value,
            "leaseUntil": now + self.lease,
            "partsSent": parts_sent,
            "expireAt": now + self.ttl,
        }

    def _take_over(self, message_id: str, now: datetime) -> Claim:
        ref = self.ref(message_id)

        @firestore.transactional
        def decide(transaction: firestore.Transaction) -> Claim:
            snapshot = ref.get(transaction=transaction)
            data = snapshot.to_dict() or {}
            if data.get("state") == State.DONE:
                return Claim(Outcome.DONE)
            lease_until = data.get("leaseUntil")
            if snapshot.exists and lease_until and lease_until > now:
                return Claim(Outcome.BUSY)
            parts_sent = int(data.get("partsSent") or 0)
            transaction.set(ref, self._working(message_id, now, parts_sent))
            return Claim(Outcome.TAKEN_OVER, parts_sent)

        return decide(self.db.transaction())

    def done(self, message_id: str) -> None:
        self.ref(message_id).update({"state": State.DONE.value})

    def release(self, message_id: str, parts_sent: int = 0) -> None:
        """End the lease now (a retriable failure), so the redelivery takes over at once."""
        self.ref(message_id).update({"leaseUntil": EPOCH, "partsSent": parts_sent})
