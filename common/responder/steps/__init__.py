"""The responder's steps: each one job, each handed the turn so far (`Draft`), each handing it on.

A step returns the draft it was given, a copy with more in it (the conversation, what the user
sent, the model's answer), or a finished one (`draft.finish(text)`: send `text`; None: stay
silent). A step that only a retry can help raises `RetryLater`. The order of the steps is in
common/responder/pipeline.py, and nowhere else.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any, Protocol

from common.knowledge.grounding import Grounding
from common.meta.graph import GraphError, alert_auth
from common.responder.inputs import Turn as UserTurn
from common.responder.turn import Kind, Turn
from common.store.claims import Claim
from common.store.history import Conversation


class RetryLater(Exception):
    """Raised out of the function so that Pub/Sub redelivers the message."""


@dataclass(frozen=True, slots=True)
class Draft:
    """The turn so far. Frozen: a step that adds something hands on a copy."""

    turn: Turn
    deadline: float  # time.monotonic() at which this attempt stops
    claim: Claim | None = None  # set once the message is claimed (the steps after the claim)
    held: ExitStack | None = None  # what a step holds for the steps after it (a media turn's memory)
    paused: bool = False  # a human has this chat (/pause, or an answer from the business app)
    last_chance: bool = False  # a delivery from the dead-letter topic: tell the user, once
    conversation: Conversation | None = None  # read by `Recall` (or the paused chat's store)
    said: UserTurn | None = None  # what the user sent, made into a model turn by `Read`
    before: tuple[dict[str, Any], ...] = ()  # for the model, between the history and the user's turn
    grounding: Grounding | None = None  # the business's documents for this turn, found by `Ground`
    reply: str | None = None  # what is sent once the draft is finished (None: nothing)
    confirm: str | None = None  # the reply is a question with yes/no buttons: its call's key
    tokens: int = 0  # what the model's answer cost
    finished: bool = False
    from_start: bool = False  # send from the first part, whatever a former attempt sent

    @property
    def owned(self) -> Claim:
        assert self.claim is not None, "a step after the claim ran without one"
        return self.claim

    @property
    def holding(self) -> ExitStack:
        """Where a step keeps what must outlive it: let go by `Release`, or when the steps end."""
        assert self.held is not None, "a step that holds ran outside the attempt"
        return self.held

    @property
    def reads(self) -> bool:
        """Blue ticks and 'typing…': not for a stranger or an over-limit voice note (at most one
        short notice follows), nor in a chat a human has, nor on the dead-letter path."""
        return self.turn.kind is not Kind.REFUSED and not self.paused and not self.last_chance

    def finish(self, reply: str | None, from_start: bool = False) -> Draft:
        return replace(self, reply=reply, finished=True, from_start=from_start)

    def answered(self, reply: str) -> Draft:
        """The model's answer (a `Completion` also says what it cost, in `tokens`)."""
        return replace(self, reply=reply, tokens=getattr(reply, "tokens", 0))


class Step(Protocol):
    def __call__(self, draft: Draft) -> Draft: ...


def run(steps: tuple[Step, ...], draft: Draft) -> Draft:
    """Each step in order until one finishes the draft."""
    for step in steps:
        draft = step(draft)
        if draft.finished:
            break
    return draft


def left(deadline: float, claim: Claim | None = None) -> float:
    """Seconds left in this attempt, and, given its claim, within what the claim's lease lets it
    do (common/store/lease.py); past either, stop (the claim is released, retried)."""
    seconds = deadline - time.monotonic()
    if seconds <= 0:
        raise RetryLater("the attempt's deadline has passed")
    return seconds if claim is None else min(seconds, claim.acting())


def auth_failure(turn: Turn, exc: GraphError) -> RetryLater:
    """A token or permission error is an outage: never done, retried until the dead-letter topic."""
    alert_auth(exc, message_id=turn.message_id)
    return RetryLater(f"Graph API token or permission error {exc.code}")
