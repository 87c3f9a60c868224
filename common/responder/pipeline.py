"""The order of one reply's work: classify → (claim) → the steps → send → done, exactly once.

The message is classified once (common/responder/turn.py). Steps that need no claim come first
(reactions, stale messages, echoes); then the message is claimed in Firestore, with the history
read alongside; then the steps run in the order listed here, under 'typing…', with the read
receipt alongside, until one finishes the turn; then the reply is sent and the claim marked done.
A new capability is a new step in `Pipeline.steps`, not a branch in an old one.

Claims: a failure ends the lease at once (if still ours) and propagates (Pub/Sub redelivers, and
the retry takes over at once); a claim lost to another attempt (`LostClaim`, a frozen process)
stops quietly and is acknowledged. Every attempt has a deadline, and a heartbeat renews its
claim's short lease while the steps run (common/store/heartbeat.py).
"""

from __future__ import annotations

import functools
import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Protocol

from common import log
from common.actions.setup import Actions
from common.ai.llm import ChatModel
from common.bus.envelope import Envelope
from common.knowledge.retrieval import Knowledge
from common.meta.graph import GraphClient
from common.responder.guardrails import Guard
from common.responder.inputs import Inputs
from common.responder.overlap import Overlap
from common.responder.steps import (
    Draft,
    RetryLater,
    Step,
    actions,
    ask,
    commands,
    gate,
    ground,
    handoff,
    read,
    run,
    send,
    store,
)
from common.responder.texts import Texts
from common.responder.turn import Kind, classify
from common.responder.voice_reply import VoiceReplies
from common.store.claims import Claims, LostClaim, Outcome
from common.store.db import set_deadline
from common.store.heartbeat import Heartbeat
from common.store.history import History


class Clients(Protocol):
    """What the steps are built from: the per-instance clients (common/responder/responder.py)."""

    attempt_seconds: float
    actions: Actions
    claims: Claims
    history: History
    guard: Guard
    graph: GraphClient
    model: ChatModel
    texts: Texts
    inputs: Inputs
    voice: VoiceReplies
    overlap: Overlap
    typing_every: float
    knowledge: Knowledge


class Pipeline:
    def __init__(self, c: Clients) -> None:
        self.c, a = c, c.actions
        self.ground = ground.Ground(c.knowledge, c.overlap)
        self.unclaimed: tuple[Step, ...] = (gate.Ignore(), gate.Echo(c.guard))
        model: Step = ask.Ask(c.model, c.texts)
        if a.catalog:  # the business's actions (or the handoff) as the model's tools
            model = actions.Act(c.model, c.texts, a.loop, a.confirmations, a.handoffs)
        self.steps: tuple[Step, ...] = (
            gate.Notice(c.guard),  # a stranger, a voice note over the limit: today's one notice
            handoff.AdminReply(a.handoffs, c.claims),  # /reply, /resume of a handed-over chat
            gate.AdminCommand(c.guard),  # /pause, /resume, /stats from an admin
            handoff.Forward(a.handoffs, c.claims),  # a person has the chat: the admins get the message
            gate.Paused(c.guard, c.history, c.overlap),  # a human has the chat: keep the words, silent
            handoff.Human(a.handoffs, c.history, c.overlap),  # /human: hand the chat to a person
            commands.Reset(c.history, c.texts),  # /reset
            commands.VoiceSwitch(c.voice),  # /voice on|off
            commands.FixedReply(c.texts),  # /help, a failed transcription, what cannot be read
            read.Recall(c.history, c.overlap),  # the conversation; a stored reply is resent
            gate.Limits(c.guard),  # /usage, the user's daily limits, the whole bot's budget
            actions.Confirmed(a.confirmations, a.catalog, a.caller),  # the answer to a yes/no question
            read.Read(),  # what the user sent, as the model's turn (media downloaded, and held)
            self.ground,  # the business's documents for it (looked up alongside the claim)
            model,  # the model (with the documents; with the actions, each call made once, stored first)
            read.Release(),  # the media's memory back to the instance
            store.Store(c.history, c.guard, c.overlap),  # both turns, before anything is sent
        )
        self.last_chance: tuple[Step, ...] = (read.LastWord(c.history, c.overlap, c.texts),)
        self.receipt = send.Receipt(c.graph, c.typing_every)
        self.send = send.Send(c.graph, c.voice, c.guard, c.claims, c.texts, a.confirmations.buttons)

    def handle(self, envelope: Envelope) -> None:
        draft = self._draft(envelope, last_chance=False)
        set_deadline(draft.deadline)  # this thread's Firestore calls: within the attempt
        draft = run(self.unclaimed, draft)
        if not draft.finished:
            self._claimed(draft, self.steps)

    def give_up(self, envelope: Envelope) -> None:
        """Every retry is spent (a delivery from the dead-letter topic): tell the user, once."""
        draft = self._draft(envelope, last_chance=True)
        set_deadline(draft.deadline)
        self._claimed(draft, self.last_chance)

    def _draft(self, envelope: Envelope, last_chance: bool) -> Draft:
        turn = classify(envelope, self.c.guard.policy, self.c.inputs, age_limit=not last_chance)
        return Draft(turn, time.monotonic() + self.c.attempt_seconds, last_chance=last_chance)

    def _claimed(self, draft: Draft, steps: tuple[Step, ...]) -> None:
        turn, claims = draft.turn, self.c.claims
        fields = {"message_id": turn.message_id, "type": turn.envelope.type, "user": log.mask(turn.user)}
        load = self.c.history.load if turn.wants_history else None
        self.c.overlap.prefetch(turn.user, load, then=self.ground.early(draft))  # both beside the claim
        claim = claims.claim(turn.message_id)
        if claim.outcome is Outcome.DONE:
            log.info("already answered: redelivery acknowledged", **fields)
            return
        if claim.outcome is Outcome.BUSY:
            raise RetryLater("another attempt holds the claim")
        if claim.outcome is Outcome.TAKEN_OVER:
            log.warning("taking over an abandoned claim", **fields, parts_sent=claim.parts_sent)
        try:
            try:
                with Heartbeat(claims, turn.message_id, claim, draft.deadline):
                    self._answer(replace(draft, claim=claim), steps)
            except LostClaim:
                raise
            except Exception:
                claims.release(turn.message_id, claim)  # the retry may start at once
                raise
        except LostClaim:  # also from the release: someone else has the message now
            stopped = "lost the claim to another attempt: stopped, nothing more sent"
            log.warning(stopped, message_id=turn.message_id)

    def _answer(self, draft: Draft, steps: tuple[Step, ...]) -> None:
        asks = draft.turn.kind is not Kind.REFUSED and not draft.last_chance  # whether a pause matters
        draft = replace(draft, paused=asks and self.c.guard.paused(draft.turn.envelope))  # read once
        self.c.overlap.start(functools.partial(self.receipt, draft) if draft.reads else None)
        with ExitStack() as held, self.receipt.typing(draft):  # nothing held outlives the steps
            draft = run(steps, replace(draft, held=held))
        self.c.overlap.wait()
        if draft.reply is not None:  # None: silent
            self.send(draft)
        self.c.claims.done(draft.turn.message_id, draft.owned)
