"""Exactly-once replies: a message id is claimed in Firestore before any side effect, fenced.

`create()` is atomic across instances, so one attempt owns a fresh message. Every attempt writes
a fresh random token into the claim and remembers the document's update time; each later write
of that attempt (renewal, progress, done, release) carries that update time as a precondition
(`write_option(last_update_time=…)`), so an attempt whose claim was taken over in the meantime
changes nothing (`LostClaim`). The claim stays `working` under a short lease (common/store/
lease.py) that the attempt renews while it works (common/store/heartbeat.py), then becomes
`done`; a redelivery of a done message is acknowledged without acting. A `working` claim whose
lease has lapsed was left by a crashed (or frozen) attempt and is taken over, also under a
precondition; the taker resends the reply already stored in the history (see responder.py) from
the first part neither recorded as sent nor reported sent by Meta (common/store/sent_parts.py).
A redelivery that finds a lease about to lapse waits for it (within its own deadline) instead
of going back to Pub/Sub's growing back-off: 1 read more, and the takeover.

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
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound
from google.cloud import firestore

from common import log
from common.bus.part_sent import callback_data
from common.store.db import reading, seconds_left, writing
from common.store.lease import Lease
from common.store.sent_parts import SentParts

COLLECTION = "claims"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REWRITES = 3  # fenced writes made again on a read-back that shows the claim still ours
SETTLE = 0.25  # seconds past a lease's end before a waiting redelivery looks again


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


class LeaseLapsed(Exception):
    """This attempt's lease was not renewed in time: it stores and sends nothing more (its claim
    is released, and Pub/Sub redelivers)."""


@dataclass(slots=True)
class Claim:
    """One attempt's hold on a message: its token and the update time of its last write."""

    outcome: Outcome
    parts_sent: int = 0  # parts Meta accepted (a release records it, even if a progress write failed)
    token: str = ""
    version: datetime | None = None  # update time of this attempt's last write to the claim
    media_id: str | None = None  # a voice note uploaded but maybe not sent (kept by `release`)
    held_until: float = 0.0  # time.monotonic() before which the lease cannot lapse (our last write)
    lost: bool = False  # the heartbeat found the claim taken over
    ended: bool = False  # done or released: never renewed again
    sending: int | None = None  # the part on its way to Meta (a release records it)
    unsure: int | None = None  # taken over: a part the last attempt may have had accepted, unrecorded
    quiet: float = 0.0  # taken over: seconds since the last attempt's last write (Firestore's clock)
    lapses_in: float = 0.0  # busy: seconds until the holder's lease lapses, unless it renews it
    margin: float = 0.0  # the lease's margin: this attempt stops acting that long before its end
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one write at a time

    def acting(self) -> float:
        """Seconds this attempt may still store or send: its lease less the margin. LostClaim once
        another attempt has it; LeaseLapsed when renewals failed for too long."""
        if self.lost:
            raise LostClaim("the claim was taken over by another attempt")
        left = self.held_until - self.margin - time.monotonic()
        if left <= 0:
            raise LeaseLapsed("the claim's lease was not renewed in time")
        return left


def doc_id(key: str) -> str:
    """Firestore ids cannot hold '/', which base64 wamids can: hash them (also keeps ids opaque)."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class Claims:
    def __init__(self, db: firestore.Client, lease: Lease, ttl: timedelta, status_wait: float = 5.0) -> None:
        self.db, self.lease, self.ttl = db, lease, ttl
        self.sent = SentParts(db, ttl, status_wait)

    def ref(self, message_id: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(doc_id(message_id))

    def claim(self, message_id: str, wait: bool = True) -> Claim:
        """1 write for a fresh message; for a redelivery the refused create, 1 read and at most
        1 conditional write (the takeover). A lease that lapses before this attempt could use
        the time is waited for (`wait`): 1 read more."""
        token, started = secrets.token_hex(8), time.monotonic()
        try:
            result = self.ref(message_id).create(self._working(token, parts_sent=0), **writing())
            return self._ours(Outcome.OWNED, token, result.update_time, started)
        except AlreadyExists:
            claim = self._take_over(message_id, token, started)
        if claim.outcome is Outcome.BUSY and wait and self._worth_waiting(claim.lapses_in):
            seconds = round(claim.lapses_in, 1)
            log.info("claim busy: waiting for its lease to lapse", message_id=message_id, seconds=seconds)
            time.sleep(claim.lapses_in + SETTLE)
            claim = self._take_over(message_id, token, time.monotonic())
        return claim

    def _worth_waiting(self, lapses_in: float) -> bool:
        """Within one lease, and leaving this attempt a lease's worth of time to answer."""
        return 0 < lapses_in <= self.lease.seconds and lapses_in + self.lease.seconds < seconds_left()

    def _working(self, token: str, parts_sent: int) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "state": State.WORKING.value,
            "token": token,
            "leaseSeconds": self.lease.seconds,  # counted from the update time (Firestore's clock)
            "leaseUntil": now + timedelta(seconds=self.lease.seconds),  # for people: the writer's clock
            "partsSent": parts_sent,
            "sending": None,
            "expireAt": now + self.ttl,
        }

    def _take_over(self, message_id: str, token: str, started: float) -> Claim:
        ref = self.ref(message_id)
        snapshot = ref.get(**reading())
        data = snapshot.to_dict() or {}
        if data.get("token") == token:  # our own create landed; the retry of it was refused
            _landed("claim", message_id)
            return self._ours(Outcome.OWNED, token, snapshot.update_time, started)
        if data.get("state") == State.DONE:
            return Claim(Outcome.DONE)
        if not snapshot.exists:
            return Claim(Outcome.BUSY)  # just deleted by its TTL: let the next try decide
        lapses_in = _lapses_in(snapshot, data)
        if lapses_in > 0:
            return Claim(Outcome.BUSY, lapses_in=lapses_in)
        parts_sent = int(data.get("partsSent") or 0)
        media_id = data.get("mediaId") if isinstance(data.get("mediaId"), str) else None
        sending = data.get("sending")
        released = data.get("leaseSeconds") == 0  # else it lapsed: the next part may have gone out
        unsure = (sending if isinstance(sending, int) else None) if released else parts_sent
        quiet = (snapshot.read_time - snapshot.update_time).total_seconds()
        option = self.db.write_option(last_update_time=snapshot.update_time)
        started = time.monotonic()
        try:
            update_time = ref.update(self._working(token, parts_sent), option=option, **writing()).update_time
        except (FailedPrecondition, NotFound):
            again = ref.get(**reading())
            if (again.to_dict() or {}).get("token") != token:
                return Claim(Outcome.BUSY)  # another attempt took it over first
            _landed("takeover", message_id)
            update_time = again.update_time
        claim = self._ours(Outcome.TAKEN_OVER, token, update_time, started, parts_sent, media_id)
        claim.unsure, claim.quiet = unsure, quiet
        return claim

    def _ours(
        self,
        outcome: Outcome,
        token: str,
        version: datetime,
        started: float,
        parts_sent: int = 0,
        media_id: str | None = None,
    ) -> Claim:
        """A claim this attempt holds, from its write begun at `started` (time.monotonic())."""
        held_until = started + self.lease.seconds
        return Claim(outcome, parts_sent, token, version, media_id, held_until, margin=self.lease.margin)

    def _fenced(self, message_id: str, claim: Claim, fields: dict[str, Any], renewal: bool = False) -> None:
        """Write only if nothing touched the claim since this attempt's last write. Refused, the
        claim is read back: still ours, the write is adopted (it landed) or made again. Every
        write of ours renews the lease."""
        ref = self.ref(message_id)
        with claim.lock:  # the heartbeat's renewals and the attempt's own writes share `version`
            if renewal and (claim.ended or claim.lost):
                return
            for _ in range(REWRITES):
                option = self.db.write_option(last_update_time=claim.version)
                started = time.monotonic()
                try:
                    claim.version = ref.update(fields, option=option, **writing()).update_time
                    claim.held_until = started + self.lease.seconds
                    return
                except (FailedPrecondition, NotFound) as exc:
                    snapshot = ref.get(**reading())  # 1 read, only after a refused write
                    data = snapshot.to_dict() or {}
                    if not snapshot.exists or data.get("token") != claim.token:
                        claim.lost = True
                        raise LostClaim("the claim was taken over by another attempt") from exc
                    claim.version = snapshot.update_time  # nobody else writes with our token
                    if all(data.get(name) == value for name, value in fields.items()):
                        _landed("fenced write", message_id)
                        claim.held_until = started + self.lease.seconds
                        return
            raise LostClaim("the claim kept changing under this attempt's token")

    def renew(self, message_id: str, claim: Claim) -> None:
        """Push the lease back (1 conditional write); nothing once the attempt has ended."""
        self._fenced(message_id, claim, {"leaseUntil": self._until()}, renewal=True)

    def resume_at(self, message_id: str, claim: Claim, start: int, parts: int) -> int:
        """The first of `parts` to send from `start`: a part the attempt before may have had
        accepted without recording it is skipped if Meta said it took it (see sent_parts.py)."""
        unsure = claim.unsure
        if claim.outcome is not Outcome.TAKEN_OVER or unsure is None or not start <= unsure < parts:
            return start
        return self.sent.resume_at(doc_id(message_id), start, unsure, claim.quiet)

    def callback(self, message_id: str, part: int) -> str:
        """The `biz_opaque_callback_data` of a part: its statuses name its claim and index."""
        return callback_data(doc_id(message_id), part)

    def progress(self, message_id: str, claim: Claim, parts_sent: int) -> None:
        """Remember that `parts_sent` parts went out (1 conditional write)."""
        claim.parts_sent = parts_sent
        self._fenced(message_id, claim, {"partsSent": parts_sent, "leaseUntil": self._until()})

    def done(self, message_id: str, claim: Claim, parts_sent: int | None = None) -> None:
        """The reply is out: later deliveries are acknowledged (1 conditional write)."""
        fields: dict[str, Any] = {"state": State.DONE.value}
        if parts_sent is not None:
            claim.parts_sent = parts_sent
            fields["partsSent"] = parts_sent
        claim.ended = True
        self._fenced(message_id, claim, fields)

    def release(self, message_id: str, claim: Claim, parts_sent: int | None = None) -> None:
        """End the lease now (a retriable failure), so the redelivery takes over at once, from the
        first part Meta did not accept (and the one on its way, unless Meta says it took it); an uploaded
        voice note's media id rides along, so the retry sends it without a new upload."""
        sent = claim.parts_sent if parts_sent is None else parts_sent
        fields: dict[str, Any] = {"leaseSeconds": 0, "leaseUntil": EPOCH, "partsSent": sent}
        fields["sending"] = claim.sending
        if claim.media_id:
            fields["mediaId"] = claim.media_id
        claim.ended = True
        self._fenced(message_id, claim, fields)

    def _until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.lease.seconds)


def _lapses_in(snapshot: firestore.DocumentSnapshot, data: dict[str, Any]) -> float:
    """Seconds until a working claim's lease lapses (<= 0: lapsed), on Firestore's clock."""
    seconds = data.get("leaseSeconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        ends = snapshot.update_time + timedelta(seconds=seconds)
        return (ends - snapshot.read_time).total_seconds()
    until = data.get("leaseUntil")  # a claim an earlier version wrote: its writer's clock
    return (until - datetime.now(UTC)).total_seconds() if isinstance(until, datetime) else 0.0


def _landed(what: str, message_id: str) -> None:
    log.info(f"{what} had landed, its answer was lost: the claim is still ours", message_id=message_id)
