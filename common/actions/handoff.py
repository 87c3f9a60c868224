"""Handoff: a person at the business takes the chat over (`/human`, or the model's `handoff`).

Starting one pauses the bot for the user (the admins' own pause: common/store/counters.py
Pauses, until /resume), and records the handover in `handoffs/{doc_id(address)}` (1 write, a
create: of two starts only one wins, so a handed-over chat is never handed over again, and a
redelivery of the message that won finds its own mark). Each admin (ADMIN_USERS) gets one
message naming the user and what they asked; while the chat is handed over, every message of
the user is stored (the pause does that) and forwarded to the admins. An admin answers with
`/reply <user> <text>` (sent to the user as the business and stored in the history as a human's
turn) and gives the chat back with `/resume <user>`: the pause ends and the record says
`resumed`. The model may not hand a chat over again within HANDOFF_COOLDOWN_MINUTES [60] of a
resume (the user's own /human may): no loops.

Meta refuses a free-form message to an admin who has not written to the business number in 24
hours (131047): that, or any other refusal a retry cannot fix, writes one ERROR line with
alert="handoff", so the business still learns of it. A retriable failure raises GraphError (the
message is redelivered; `progress` says how many admins were already told, so none is told twice).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
from google.cloud import firestore

from common import config, log
from common.guard.policy import ids_of, normalize
from common.meta.graph import GraphClient, GraphError
from common.store.claims import doc_id
from common.store.counters import FOREVER, Pauses
from common.store.db import reading, writing
from common.store.history import History

COLLECTION = "handoffs"
OUTSIDE_WINDOW = 131047  # Meta: more than 24 hours since the recipient last wrote
DEFAULT_TEXT = "I have asked a person from our team to take over; they will answer you here."
ALERT = "handoff notification not delivered"


class Started(enum.StrEnum):
    STARTED = "started"  # this message handed the chat over (also on its redelivery)
    ALREADY = "already"  # the chat is handed over already: nothing is sent again
    COOLING = "cooling"  # the model asked again too soon after a /resume: refused


@dataclass(frozen=True, slots=True)
class Handover:
    """A chat a person has: whom to answer (`to`, through `phone_number_id`) and who they are."""

    user: str  # the user key (history, pauses)
    to: str  # the address replies go to: the phone number, else the business-scoped id
    name: str  # the profile name, or "" when WhatsApp gave none
    phone_number_id: str
    reason: str

    @property
    def who(self) -> str:
        return f"{self.name} ({self.to})" if self.name else self.to


class Handoffs:
    def __init__(
        self,
        db: firestore.Client,
        pauses: Pauses,
        history: History,
        graph: GraphClient,
        admins: frozenset[str],
    ) -> None:
        self.db, self.pauses, self.history, self.graph = db, pauses, history, graph
        self.admins = tuple(sorted(admins))  # one order, so `progress` means the same on a retry
        self.text = (config.get("HANDOFF_TEXT") or DEFAULT_TEXT).replace("\\n", "\n")
        self.cooldown = timedelta(minutes=config.number("HANDOFF_COOLDOWN_MINUTES", 60))

    def __bool__(self) -> bool:
        return bool(self.admins)  # ADMIN_USERS set: someone to hand over to

    def ref(self, address: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(doc_id(normalize(address)))

    def start(self, handover: Handover, message_id: str, by_model: bool) -> Started:
        """Hand the chat over, once (1 write, and pauses of 1 write per id of the user); a chat
        already handed over stays as it is. On a conflict 1 read and at most 1 conditional write."""
        ref, mark, now = self.ref(handover.to), doc_id(message_id), datetime.now(UTC)
        record = {
            "state": "active",
            "user": handover.user,
            "to": handover.to,
            "name": handover.name,
            "phoneNumberId": handover.phone_number_id,
            "reason": handover.reason[:500],
            "since": now,
            "by": mark,
        }
        try:
            ref.create(record, **writing())
        except AlreadyExists:
            snapshot = ref.get(**reading())
            data = snapshot.to_dict() or {}
            if data.get("by") != mark:
                if data.get("state") == "active":
                    return Started.ALREADY
                resumed = data.get("resumedAt")
                if by_model and isinstance(resumed, datetime) and now - resumed < self.cooldown:
                    return Started.COOLING
                try:
                    ref.update(
                        record,
                        option=self.db.write_option(last_update_time=snapshot.update_time),
                        **writing(),
                    )
                except FailedPrecondition:
                    again = ref.get(**reading()).to_dict() or {}
                    if again.get("by") != mark:
                        return Started.ALREADY
        for user in ids_of(handover.user, handover.to):
            self.pauses.pause(user, FOREVER)
        log.info("handed over to a person", user=handover.user, by_model=by_model, message_id=message_id)
        return Started.STARTED

    def may_hand_over(self, address: str) -> bool:
        """Whether the model may hand this chat over now: not within HANDOFF_COOLDOWN_MINUTES of
        a /resume (1 read, only when the model asks)."""
        resumed = (self.ref(address).get(**reading()).to_dict() or {}).get("resumedAt")
        return not (isinstance(resumed, datetime) and datetime.now(UTC) - resumed < self.cooldown)

    def notify_once(self, handover: Handover, asked: str) -> int:
        """`notify` for the message that started the handover, from the first admin not yet told:
        the record counts them (1 read, and 1 write after each admin but the last)."""
        ref = self.ref(handover.to)
        start = int((ref.get(**reading()).to_dict() or {}).get("notified") or 0)

        def told(count: int) -> None:
            ref.update({"notified": count}, **writing())

        return self.notify(handover, asked, start, told)

    def current(self, address: str) -> Handover | None:
        """The active handover of this address (the user's phone number or id), if any (1 read)."""
        data = self.ref(address).get(**reading()).to_dict() or {}
        if data.get("state") != "active":
            return None
        return Handover(
            str(data.get("user") or ""),
            str(data.get("to") or ""),
            str(data.get("name") or ""),
            str(data.get("phoneNumberId") or ""),
            str(data.get("reason") or ""),
        )

    def notify(
        self, handover: Handover, asked: str, start: int = 0, progress: Callable[[int], None] | None = None
    ) -> int:
        """Tell each admin (from the `start`-th) whom to answer and what they asked."""
        text = (
            f"{handover.who} asks for a person: {asked or '(no words)'}"
            + (f"\nWhy: {handover.reason}" if handover.reason and handover.reason != asked else "")
            + f"\nAnswer with /reply {handover.to} <text>; give the chat back with /resume {handover.to}."
        )
        return self._to_admins(handover, text, "notification", start, progress)

    def forward(
        self, handover: Handover, words: str, start: int = 0, progress: Callable[[int], None] | None = None
    ) -> int:
        """A message the user sent while handed over, to each admin (from the `start`-th)."""
        text = f"{handover.who}: {words}\n(/reply {handover.to} <text> answers)"
        return self._to_admins(handover, text, "forward", start, progress)

    def _to_admins(
        self, handover: Handover, text: str, what: str, start: int, progress: Callable[[int], None] | None
    ) -> int:
        """One message per admin; returns how many admins now have it (refused ones count: they
        are alerted, not retried)."""
        for index in range(start, len(self.admins)):
            admin = self.admins[index]
            try:
                self.graph.send_text(handover.phone_number_id, admin, text[:4096])
            except GraphError as exc:
                if exc.retriable or exc.auth:
                    raise
                log.error(ALERT, alert="handoff", what=what, admin=admin, code=exc.code, status=exc.status)
            if progress is not None and index + 1 < len(self.admins):
                progress(index + 1)
        return len(self.admins)

    def relay(self, who: str, text: str, admin_message_id: str, sent: bool = False) -> str:
        """`/reply <who> <text>`: sent to the user as the business (unless an earlier attempt of
        this /reply did: `sent`), stored in their history as a human's turn (once: a redelivery
        finds the turn); the admin's answer says what happened."""
        handover = self.current(who)
        if handover is None:
            return f"No chat with {who} is handed over (see /resume, or the notification's /reply line)."
        conversation = self.history.load(handover.user)
        if not any(t.get("messageId") == admin_message_id for t in conversation.turns):
            turn: dict[str, Any] = {
                "role": "assistant",
                "content": text,
                "messageId": admin_message_id,
                "author": "human",
            }
            self.history.append(handover.user, conversation, [turn])
        try:
            if not sent:
                self.graph.send_text(handover.phone_number_id, handover.to, text)
        except GraphError as exc:
            if exc.retriable or exc.auth:
                raise
            log.error(ALERT, alert="handoff", what="reply", code=exc.code, status=exc.status)
            late = " (more than 24 hours since they last wrote)" if exc.code == OUTSIDE_WINDOW else ""
            return f"Not delivered to {handover.who}{late}: WhatsApp refused it (code {exc.code})."
        return f"Sent to {handover.who}."

    def resume(self, who: str) -> str | None:
        """`/resume <who>` of a handed-over chat: the bot answers again (1 write per id, 1 write
        for the record); None when the chat was not handed over (the plain /resume applies)."""
        handover = self.current(who)
        if handover is None:
            return None
        for user in ids_of(handover.user, handover.to):
            self.pauses.resume(user)
        self.ref(handover.to).update({"state": "resumed", "resumedAt": datetime.now(UTC)}, **writing())
        log.info("handover ended: the bot answers again", user=handover.user)
        return f"Resumed: the bot answers {handover.who} again."
