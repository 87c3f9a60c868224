"""One reply per message, exactly once, within a deadline: the per-instance clients and settings.

`Responder` builds the clients once per instance and hands each envelope to the pipeline
(common/responder/pipeline.py: the order of the work; common/responder/steps/: each step).

Firestore per text turn: 1 read (the history) and 3 writes (claim create, history, claim done);
a reply of N parts costs N - 1 writes more (progress after each part but the last). The reply is
in the history before it is sent, so an attempt that takes over a crashed one resends it from
the first unsent part instead of asking the model again. The history read overlaps the claim
(a read is no side effect) and the read receipt the model call.

Every attempt has a deadline (`ATTEMPT_TIMEOUT_SECONDS`) shorter than the claim's lease by at
least `CLAIM_LEASE_MARGIN_SECONDS`: while it runs, nobody can take the claim over, and the model,
Graph and Firestore timeouts (the Firestore client's retries included) are cut to what is left of
it. An attempt past its deadline stores and sends nothing more; one whose claim was taken over
anyway (a frozen process) stops at its next fenced write (`LostClaim`) and is acknowledged. A
part Meta accepted counts as sent at once: a progress or `done` write that fails after the
client's retries leaves the release to record it, so the redelivery does not send it again.
"""

from __future__ import annotations

from datetime import timedelta

from common import config
from common.actions.setup import Actions
from common.ai.llm import ChatModel
from common.bus.envelope import Envelope
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

__all__ = ["Responder", "RetryLater", "timing"]


def timing() -> tuple[float, float]:
    """(attempt seconds, lease seconds); refuses a lease that an attempt could outlive."""
    attempt = config.number("ATTEMPT_TIMEOUT_SECONDS", 120)
    lease = config.number("CLAIM_LEASE_SECONDS", 180)
    margin = config.number("CLAIM_LEASE_MARGIN_SECONDS", 30)
    if attempt <= 0 or lease < attempt + margin:
        raise RuntimeError(
            f"CLAIM_LEASE_SECONDS={lease:g} must be at least ATTEMPT_TIMEOUT_SECONDS={attempt:g}"
            f" + {margin:g} (CLAIM_LEASE_MARGIN_SECONDS), and the attempt timeout positive"
        )
    return attempt, lease


class Responder:
    """Holds the per-instance clients; `handle` is called once per delivered envelope."""

    def __init__(self) -> None:
        self.attempt_seconds, lease = timing()
        db = store.client()
        days = timedelta(days=1)
        self.claims = Claims(
            db, lease=timedelta(seconds=lease), ttl=config.number("CLAIM_TTL_DAYS", 7) * days
        )
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
