"""One reply per message, exactly once, within a deadline: the per-instance clients and settings.

`Responder` builds the clients once per instance and hands each envelope to the pipeline
(common/responder/pipeline.py: the order of the work; common/responder/steps/: each step).

Firestore per text turn: 1 read (the history) and 3 writes (claim create, history, claim done);
a reply of N parts costs N - 1 writes more (progress after each part but the last). The reply is
in the history before it is sent, so an attempt that takes over a crashed one resends it from
the first unsent part instead of asking the model again. The history read overlaps the claim
(a read is no side effect) and the read receipt the model call.

Every attempt has a deadline (`ATTEMPT_TIMEOUT_SECONDS`), and holds its claim under a short
lease that a heartbeat renews while it works (common/store/lease.py, heartbeat.py): a crashed
attempt's message is taken over one lease later, a living one never. The model, Graph and
Firestore timeouts (the Firestore client's retries included) are cut to what is left of the
deadline, and every store and send to what the lease lets the attempt do: past either it stores
and sends nothing more; one whose claim was taken over anyway (a frozen process) stops at its next
store, send or fenced write (`LostClaim`) and is acknowledged. A part Meta accepted counts as
sent at once: a progress or `done` write that fails after the client's retries leaves the release
to record it, so the redelivery does not send it again; a part accepted by an attempt that died
before it could record it is known by Meta's status of it (each part carries callback data:
common/store/sent_parts.py), which reaches `part_sent` on a subscription of its own.
"""

from __future__ import annotations

from datetime import timedelta

from common import config
from common.actions.setup import Actions
from common.ai.llm import ChatModel
from common.bus.envelope import Envelope
from common.bus.part_sent import PartSent
from common.knowledge.retrieval import Knowledge
from common.meta.graph import GraphClient
from common.responder import texts
from common.responder.guardrails import Guard
from common.responder.inputs import Inputs
from common.responder.overlap import Overlap
from common.responder.pipeline import Pipeline
from common.responder.steps import RetryLater
from common.responder.voice_reply import VoiceReplies
from common.store import db as store
from common.store.claims import Claims
from common.store.history import Budget, History
from common.store.lease import BadLease, Lease

__all__ = ["Responder", "RetryLater", "timing"]


def timing() -> tuple[float, Lease]:
    """(attempt seconds, the claims' lease); refuses settings under which a living attempt could
    lose its claim (common/store/lease.py)."""
    attempt = config.number("ATTEMPT_TIMEOUT_SECONDS", 120)
    if attempt <= 0:
        raise RuntimeError(f"ATTEMPT_TIMEOUT_SECONDS={attempt:g} must be positive")
    try:
        return attempt, Lease.from_env()
    except BadLease as exc:
        raise RuntimeError(str(exc)) from None


class Responder:
    """Holds the per-instance clients; `handle` is called once per delivered envelope."""

    def __init__(self) -> None:
        self.attempt_seconds, lease = timing()
        db = store.client()
        days = timedelta(days=1)
        ttl, wait = config.number("CLAIM_TTL_DAYS", 7) * days, config.number("STATUS_WAIT_SECONDS", 5)
        self.claims = Claims(db, lease, ttl, status_wait=wait)
        budget = Budget(
            int(config.number("HISTORY_MAX_TURNS", 20)), int(config.number("HISTORY_MAX_CHARS", 12000))
        )
        self.history = History(db, budget, ttl=config.number("HISTORY_TTL_DAYS", 30) * days)
        self.graph = GraphClient()
        self.model = ChatModel()
        self.texts = texts.Texts.from_env()
        self.guard = Guard(db)
        self.model.max_tokens = self.guard.policy.model_max_tokens()  # fits in MAX_REPLY_PARTS
        self.inputs = Inputs.from_env(self.graph, self.texts)
        self.typing_every = config.number("TYPING_REFRESH_SECONDS", 20)
        self.voice = VoiceReplies(self.history, self.graph)
        admins = self.guard.policy.admins
        self.actions = Actions.build(db, self.history, self.guard.pauses, self.graph, admins)
        self.knowledge = Knowledge(db)  # the business's documents: common/knowledge/retrieval.py
        # The history read runs alongside the claim, the read receipt alongside the model call (it
        # ends before anything is stored).
        self.overlap = Overlap()
        self.pipeline = Pipeline(self)

    def handle(self, envelope: Envelope) -> None:
        self.pipeline.handle(envelope)

    def give_up(self, envelope: Envelope) -> None:
        """Every retry is spent (a delivery from the dead-letter topic): tell the user, once."""
        self.pipeline.give_up(envelope)

    def part_sent(self, part: PartSent) -> None:
        """Meta reported a part of a reply sent or delivered: a takeover will not send it again."""
        self.claims.sent.record(part.claim_id, part.part)
