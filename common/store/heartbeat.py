"""A working attempt's heartbeat: its claim's lease renewed every few seconds, until it ends.

`with Heartbeat(claims, message_id, claim, deadline):` runs the attempt's work while a thread
renews the lease (1 fenced write) whenever `renew` seconds have passed since the attempt's last
write to the claim (its own progress writes count), and never past the attempt's deadline. A
renewal that finds the claim taken over marks it lost; one that fails otherwise is tried again
at the next beat, and meanwhile the lease the attempt holds runs down. Either way the attempt's
next store or send stops it (`Claims.acting`), and its Firestore calls are cut to what its lease
lets it do (common/store/db.py, `bound_by`).

Cost: 1 write per `renew` seconds of attempt beyond the first (CLAIM_RENEW_SECONDS, 5 s by
default: 0.2 writes a second); a text turn answered within 5 s costs none, a 12 s media turn 2.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from common import log
from common.store import db
from common.store.claims import Claim, Claims, LostClaim


class Heartbeat:
    def __init__(self, claims: Claims, message_id: str, claim: Claim, deadline: float) -> None:
        self.claims, self.message_id, self.claim, self.deadline = claims, message_id, claim, deadline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        margin = self.claims.lease.margin
        self._bound = db.bound_by(lambda: self.claim.held_until - margin)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()  # a renewal in flight ends within the lease (its calls are cut to it)
        db.unbind(self._bound)

    def _beat(self) -> None:
        every, claim = self.claims.lease.renew, self.claim
        while True:
            due = claim.held_until - self.claims.lease.seconds + every  # `every` after our last write
            if self._stop.wait(max(0.0, min(due, self.deadline) - time.monotonic())):
                return
            if time.monotonic() >= self.deadline:
                return  # past its deadline the attempt only ends (fenced): nothing to hold
            if time.monotonic() < claim.held_until - self.claims.lease.seconds + every:
                continue  # the attempt wrote meanwhile
            db.set_deadline(min(self.deadline, claim.held_until))
            try:
                self.claims.renew(self.message_id, claim)
            except LostClaim:
                log.warning("lease renewal found the claim taken over", message_id=self.message_id)
                return
            except Exception as exc:  # Firestore down or slow: the lease runs down meanwhile
                log.warning("lease not renewed", message_id=self.message_id, **log.failure(exc))
                self._stop.wait(min(every, max(0.0, self.deadline - time.monotonic())))
