"""Steps of the handoff to a person (common/actions/handoff.py): `/human`, the messages of a chat
a person has (forwarded to the admins), and the admins' `/reply` and `/resume`.

Each message to the admins is sent once across retries: a forward counts them in the claim
(the paused chat's reply is silent, so the claim's parts are free), the notification in the
handover's record; a `/reply` goes to the user once (the claim's first part) before the admin's
answer is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from common import log
from common.actions.handoff import Handoffs, Handover, Started
from common.guard.policy import normalize
from common.meta.graph import GraphError
from common.responder.overlap import Overlap
from common.responder.steps import Draft, RetryLater, auth_failure
from common.responder.turn import Kind, Turn
from common.store.claims import Claims
from common.store.history import History

REASON = "the user asked for a person (/human)"
T = TypeVar("T")


def sending(turn: Turn, send: Callable[[], T]) -> T:
    """A message to the admins or the user: a retriable Graph failure is retried by Pub/Sub (what
    was sent is counted), a token error is the outage it is (alerted)."""
    try:
        return send()
    except GraphError as exc:
        if exc.auth:
            raise auth_failure(turn, exc) from exc
        raise RetryLater(f"handoff message not sent: {exc}") from exc


class AdminReply:
    """`/reply <user> <text>`, and `/resume <user>` of a handed-over chat (a plain /resume, of an
    admin's pause, is AdminCommand's)."""

    def __init__(self, handoffs: Handoffs, claims: Claims) -> None:
        self.handoffs, self.claims = handoffs, claims

    def __call__(self, draft: Draft) -> Draft:
        command = draft.turn.command
        if draft.turn.kind is not Kind.ADMIN or command is None:
            return draft
        if command.name == "/resume" and len(command.args) == 1:
            answer = self.handoffs.resume(normalize(command.args[0]))
            return draft if answer is None else draft.finish(answer)
        if command.name != "/reply":
            return draft
        words = (draft.turn.envelope.text or "").strip().split(maxsplit=2)
        if len(words) < 3:
            return draft.finish("Answer a handed-over chat with /reply <user> <text>.")
        claim, message_id = draft.owned, draft.turn.message_id
        sent = claim.parts_sent > 0
        answer = sending(
            draft.turn, lambda: self.handoffs.relay(normalize(words[1]), words[2], message_id, sent)
        )
        self.claims.progress(message_id, claim, 1)  # the user has it: a retry does not send it again
        return draft.finish(answer, from_start=True)


class Forward:
    """A message of a handed-over chat goes to every admin (the Paused step after it stores it and
    keeps the bot silent)."""

    def __init__(self, handoffs: Handoffs, claims: Claims) -> None:
        self.handoffs, self.claims = handoffs, claims

    def __call__(self, draft: Draft) -> Draft:
        if not draft.paused or not self.handoffs:  # no ADMIN_USERS: no handoff to forward for
            return draft
        envelope = draft.turn.envelope
        handover = self.handoffs.current(envelope.to)  # 1 read
        if handover is None:  # an admin's /pause or an echo: nobody is waiting for forwards
            return draft
        words = draft.turn.words or (envelope.text or "").strip() or f"[a {envelope.type} message]"
        claim, message_id = draft.owned, draft.turn.message_id

        def forwarded(count: int) -> None:
            self.claims.progress(message_id, claim, count)

        sending(draft.turn, lambda: self.handoffs.forward(handover, words, claim.parts_sent, forwarded))
        log.info("handed over: forwarded to the admins", message_id=message_id)
        return draft


class Human:
    """`/human`: the chat goes to a person, once; the admins learn what the user asked last."""

    def __init__(self, handoffs: Handoffs, history: History, overlap: Overlap) -> None:
        self.handoffs, self.history, self.overlap = handoffs, history, overlap

    def __call__(self, draft: Draft) -> Draft:
        turn = draft.turn
        if turn.kind is not Kind.HUMAN:
            return draft
        envelope = turn.envelope
        handover = Handover(
            turn.user, envelope.to, envelope.profile_name or "", envelope.phone_number_id, REASON
        )
        if self.handoffs.start(handover, turn.message_id, by_model=False) is not Started.STARTED:
            return draft.finish(None)  # handed over already: the admins have it
        said = [
            t["content"]
            for t in self.overlap.take(turn.user, self.history.load).turns
            if t.get("role") == "user"
        ]
        sending(turn, lambda: self.handoffs.notify_once(handover, said[-1] if said else "/human"))
        return draft.finish(self.handoffs.text)
