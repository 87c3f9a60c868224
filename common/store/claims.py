"""Exactly-once replies: a message id is claimed in Firestore before any side effect, fenced.

`create()` is atomic across instances, so one attempt owns a fresh message. Every attempt writes
a fresh random token into the claim and remembers the document's update time; each later write
of that attempt (progress, done, release) carries that update time as a precondition
(`write_option(last_update_time=…)`), so an attempt whose claim was taken over in the meantime
changes nothing (`LostClaim`). The claim stays `working` under a lease while the reply is made
and sent, then becomes `done`; a redelivery of a done message is acknowledged without acting. A
`working` claim whose lease has run out was left by a crashed (or failed) attempt and is taken
over, also under a precondition; the taker resends the reply already stored in the history (see
responder.py) from the first part not yet sent.

A write whose answer was lost may have landed: the client's retry of it then finds the document
changed (FAILED_PRECONDITION, or ALREADY_EXISTS for the create). Only then the claim is read back
(1 read): our token in it means nobody took over, so the write is adopted if it landed and made
again on the new update time if it did not. Retrying a fenced write is safe that way, and a lost
answer is never taken for a lost claim.

The document holds no message id: its id is a hash of it (a wamid holds a phone number).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound
from google.cloud import firestore

from common import log
from common.store.db import reading, writing

COLLECTION = "claims"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REWRITES = 3  # fenced writes made again on a read-back that shows the claim still ours


class State(enum.StrEnum):
    WORKING = "working"
    DONE = "done"


class Outcome(enum.Enum):
    OWNED = "owned"  # a fresh claim: ours
    TAKEN_OVER = "taken_over"  # an abandoned claim: ours now, maybe with parts already sent
    DONE = "done"  # answered before: acknowledge
    BUSY = "busy"  # another attempt holds a live lease: retry later


class LostClaim(Exception):
    """Another attempt took the claim over: this one must send nothing more and stop."""


@dataclass(slots=True)
class Claim:
    """One attempt's hold on a message: its token and the update time of its last write."""

    outcome: Outcome
    parts_sent: int = 0  # parts Meta accepted (a release records it, even if a progress write failed)
    token: str = ""
    version: datetime | None = None  # update time of this attempt's last write to the claim
    media_id: str | None = None  # a voice note uploaded but maybe not sent (kept by `release`)


def doc_id(key: str) -> str:
    """Firestore ids cannot hold '/', which base64 wamids can: hash them (also keeps ids opaque)."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class Claims:
    def __init__(self, db: firestore.Client, lease: timedelta, ttl: timedelta) -> None:
        self.db, self.lease, self.ttl = db, lease, ttl

    def ref(self, message_id: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(doc_id(message_id))

    def claim(self, message_id: str) -> Claim:
        """1 write for a fresh message; for a redelivery the refused create, 1 read and at most
        1 conditional write (the takeover)."""
        now, token = datetime.now(UTC), secrets.token_hex(8)
        try:
            result = self.ref(message_id).create(self._working(token, now, parts_sent=0), **writing())
            return Claim(Outcome.OWNED, 0, token, result.update_time)
        except AlreadyExists:
            return self._take_over(message_id, token, now)

    def _working(self, token: str, now: datetime, parts_sent: int) -> dict[str, Any]:
        return {
            "state": State.WORKING.value,
            "token": token,
            "leaseUntil": now + self.lease,
            "partsSent": parts_sent,
            "expireAt": now + self.ttl,
        }

    def _take_over(self, message_id: str, token: str, now: datetime) -> Claim:
        ref = self.ref(message_id)
        snapshot = ref.get(**reading())
        data = snapshot.to_dict() or {}
        if data.get("token") == token:  # our own create landed; the retry of it was refused
            _landed("claim", message_id)
            return Claim(Outcome.OWNED, 0, token, snapshot.update_time)
        if data.get("state") == State.DONE:
            return Claim(Outcome.DONE)
        lease_until = data.get("leaseUntil")
        if not snapshot.exists or (lease_until and lease_until > now):
            return Claim(Outcome.BUSY)  # live (or just deleted by its TTL): let the next try decide
        parts_sent = int(data.get("partsSent") or 0)
        media_id = data.get("mediaId") if isinstance(data.get("mediaId"), str) else None
        option = self.db.write_option(last_update_time=snapshot.update_time)
        working = self._working(token, now, parts_sent)
        try:
            update_time = ref.update(working, option=option, **writing()).update_time
        except (FailedPrecondition, NotFound):
            again = ref.get(**reading())
            if (again.to_dict() or {}).get("token") != token:
                return Claim(Outcome.BUSY)  # another attempt took it over first
            _landed("takeover", message_id)
            update_time = again.update_time
        return Claim(Outcome.TAKEN_OVER, parts_sent, token, update_time, media_id)

    def _fenced(self, message_id: str, claim: Claim, fields: dict[str, Any]) -> None:
        """Write only if nothing touched the claim since this attempt's last write. Refused, the
        claim is read back: still ours, the write is adopted (it landed) or made again."""
        ref = self.ref(message_id)
        for _ in range(REWRITES):
            option = self.db.write_option(last_update_time=claim.version)
            try:
                claim.version = ref.update(fields, option=option, **writing()).update_time
                return
            except (FailedPrecondition, NotFound) as exc:
                snapshot = ref.get(**reading())  # 1 read, only after a refused write
                data = snapshot.to_dict() or {}
                if not snapshot.exists or data.get("token") != claim.token:
                    raise LostClaim("the claim was taken over by another attempt") from exc
                claim.version = snapshot.update_time  # nobody else writes with our token
                if all(data.get(name) == value for name, value in fields.items()):
                    _landed("fenced write", message_id)
                    return
        raise LostClaim("the claim kept changing under this attempt's token")

    def progress(self, message_id: str, claim: Claim, parts_sent: int) -> None:
        """Remember that `parts_sent` parts went out (1 conditional write)."""
        claim.parts_sent = parts_sent
        self._fenced(message_id, claim, {"partsSent": parts_sent})

    def done(self, message_id: str, claim: Claim, parts_sent: int | None = None) -> None:
        """The reply is out: later deliveries are acknowledged (1 conditional write)."""
        fields: dict[str, Any] = {"state": State.DONE.value}
        if parts_sent is not None:
            claim.parts_sent = parts_sent
            fields["partsSent"] = parts_sent
        self._fenced(message_id, claim, fields)

    def release(self, message_id: str, claim: Claim, parts_sent: int | None = None) -> None:
        """End the lease now (a retriable failure), so the redelivery takes over at once, from the
        first part Meta did not accept; an uploaded voice note's media id rides along, so the retry
        sends it without a new upload."""
        sent = claim.parts_sent if parts_sent is None else parts_sent
        fields: dict[str, Any] = {"leaseUntil": EPOCH, "partsSent": sent}
        if claim.media_id:
            fields["mediaId"] = claim.media_id
        self._fenced(message_id, claim, fields)


def _landed(what: str, message_id: str) -> None:
    log.info(f"{what} had landed, its answer was lost: the claim is still ours", message_id=message_id)
