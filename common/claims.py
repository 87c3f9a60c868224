"""Exactly-once replies: a message id is claimed in Firestore before any side effect.

`create()` is atomic across instances, so only one attempt owns a fresh message. A claim moves
working → sending (with the reply stored, in the same commit as the history) and stays there:
a redelivery of a message whose reply went out is acknowledged without acting. A `working`
claim older than the lease belongs to a crashed attempt and is taken over; a failed send puts
the claim back to `answered` so the next attempt sends the stored reply, no new model call.
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


class State(enum.StrEnum):
    WORKING = "working"  # claimed; nothing sent yet
    ANSWERED = "answered"  # reply known and stored; sending it failed, send again
    SENDING = "sending"  # reply handed to the Graph API: never send again


class Outcome(enum.Enum):
    OWNED = "owned"  # ours from scratch
    RESUME = "resume"  # ours, with a stored reply still to send
    DONE = "done"  # already answered: acknowledge
    BUSY = "busy"  # another attempt holds a live lease: retry later


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Outcome
    reply: str | None = None
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
        now = datetime.now(UTC)
        try:
            self.ref(message_id).create(self._working(message_id, now))  # 1 write, no read
            return Claim(Outcome.OWNED)
        except exceptions.Conflict:
            return self._take_over(message_id, now)

    def _working(self, message_id: str, now: datetime) -> dict[str, Any]:
        return {
            "messageId": message_id,
            "state": State.WORKING.value,
            "leaseUntil": now + self.lease,
            "expireAt": now + self.ttl,
        }

    def _take_over(self, message_id: str, now: datetime) -> Claim:
        """Someone claimed it before: finished, live, crashed, or waiting for a resend."""
        ref = self.ref(message_id)

        @firestore.transactional
        def decide(transaction: firestore.Transaction) -> Claim:
            snapshot = ref.get(transaction=transaction)
            data = snapshot.to_dict() or {}
            state = data.get("state")
            if state == State.SENDING:
                return Claim(Outcome.DONE)
            if state == State.ANSWERED:
                transaction.update(ref, {"state": State.SENDING.value})
                return Claim(Outcome.RESUME, data.get("reply"), int(data.get("partsSent", 0)))
            lease_until = data.get("leaseUntil")
            if snapshot.exists and lease_until and lease_until > now:
                return Claim(Outcome.BUSY)
            transaction.set(ref, self._working(message_id, now))
            return Claim(Outcome.OWNED)

        return decide(self.db.transaction())

    def sending(self, message_id: str, reply: str) -> dict[str, Any]:
        """The claim fields that say: this reply is going out (written with the history)."""
        return {"state": State.SENDING.value, "reply": reply, "partsSent": 0}

    def send_failed(self, message_id: str, parts_sent: int) -> None:
        """The Graph API failed mid-way: the next attempt resends from part `parts_sent`."""
        self.ref(message_id).update({"state": State.ANSWERED.value, "partsSent": parts_sent})

    def release(self, message_id: str) -> None:
        """Give up a `working` claim (a retriable failure before anything was sent)."""
        self.ref(message_id).delete()
