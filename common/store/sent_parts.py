"""Which parts of a reply Meta said it took: the `sent`/`delivered` statuses of our own sends.

Each part goes out with callback data naming its claim and index (common/bus/part_sent.py);
the responder records each status that comes back here: one document per message, under its
claim's id, {parts: [indexes], expireAt}, 1 write per status (an array union: a repeated status
changes nothing). Not on the claim itself: a write there would move the claim's update time, so
the holder's next fenced write would be refused (a read-back each time) and a dead holder's lease
would start again.

A takeover reads it (1 read) only when the attempt before may have had a part accepted that it
never recorded (it died, or released the claim with a send in flight): such a part is resent only
if no status named it, after a wait for a late status of at most `wait` seconds
(STATUS_WAIT_SECONDS, 5 by default) counted from that attempt's last write, reading twice a
second meanwhile. After a crash that wait has passed already (a whole lease did): the takeover
costs 1 read and no time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from google.cloud import firestore

from common.store.db import reading, seconds_left, writing

COLLECTION = "sent"
POLL_SECONDS = 0.5


class SentParts:
    def __init__(self, db: firestore.Client, ttl: timedelta, wait: float) -> None:
        self.db, self.ttl, self.wait = db, ttl, wait

    def ref(self, claim_id: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(claim_id)

    def record(self, claim_id: str, part: int) -> None:
        """Meta reported this part sent or delivered (1 write)."""
        fields = {"parts": firestore.ArrayUnion([part]), "expireAt": datetime.now(UTC) + self.ttl}
        self.ref(claim_id).set(fields, merge=True, **writing())

    def parts(self, claim_id: str) -> set[int]:
        """The parts Meta said it took so far (1 read)."""
        found = (self.ref(claim_id).get(**reading()).to_dict() or {}).get("parts")
        return {p for p in found if isinstance(p, int)} if isinstance(found, list) else set()

    def resume_at(self, claim_id: str, start: int, unsure: int, quiet: float) -> int:
        """The first part to send: `start`, unless Meta said it took the `unsure` part (and those
        after it, in order). A status may still be on its way until `wait` seconds after the
        last attempt's last write, `quiet` seconds ago: waited for, no longer, and for at most
        half of what is left of this attempt (the rest is for sending)."""
        until = time.monotonic() + max(0.0, min(self.wait - quiet, seconds_left() / 2))
        taken = self.parts(claim_id)
        while unsure not in taken and time.monotonic() + POLL_SECONDS <= until:
            time.sleep(POLL_SECONDS)
            taken = self.parts(claim_id)
        while start in taken:
            start += 1
        return start
