"""The guardrails the responder's steps consult: strangers, pauses, daily limits, the budget.

Each step of common/responder/steps/gate.py asks one question here (`paused`, `notice`, `limits`)
and the store step two (`counted`, `spent`). A verdict with `text` None means: stay silent (the
claim is still marked done). What each costs in Firestore operations is in counters.py and
docs/guardrails.md.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from common import config, log
from common.bus.envelope import Envelope
from common.guard.policy import Policy, ids_of
from common.store.counters import Budget, Notices, Pauses, Usage
from common.store.history import Conversation

if TYPE_CHECKING:
    from google.cloud import firestore

BUDGET_TRIES = 3  # shard writes for one turn's tokens (a random shard, then the next) at most
BUDGET_RESERVE_SECONDS = 10.0  # no second try with less of the attempt left: the reply goes first


@dataclass(frozen=True, slots=True)
class Verdict:
    """Answer with `text` instead of the model, or stay silent (`text` None)."""

    text: str | None


SILENT = Verdict(None)


def sender(envelope: Envelope) -> frozenset[str]:
    return ids_of(envelope.user, envelope.to)


class Guard:
    def __init__(self, db: firestore.Client, policy: Policy | None = None) -> None:
        self.policy = policy or Policy.from_env()
        cache = config.number("GUARDRAILS_CACHE_SECONDS", 10)
        self.notices = Notices(db)
        self.budget = Budget(db, int(config.number("BUDGET_SHARDS", 20)), cache)
        self.pauses = Pauses(db, cache)
        self.db = db

    def pause_chat(self, envelope: Envelope) -> None:
        """A coexistence echo (common/guard/echoes.py): pause the bot for that user (1 write per id)."""
        until = datetime.now(UTC) + timedelta(hours=self.policy.echo_pause_hours or 1)
        for user in sender(envelope):
            self.pauses.pause(user, until)

    def paused(self, envelope: Envelope) -> bool:
        """A human has this chat (/pause, or an echo): the bot neither reads nor answers. Admins
        are never paused. Reads the cached pause document only when pauses are possible."""
        ids = sender(envelope)
        if not (self.policy.admins or self.policy.echo_pause_hours) or self.policy.is_admin(ids):
            return False
        return self.pauses.until(ids, datetime.now(UTC)) is not None

    def usage(self, conversation: Conversation) -> Usage:
        """The user's counters today, from the conversation document (no extra read)."""
        return Usage.of(conversation.counters, self.policy.day())

    def limits(self, envelope: Envelope, usage: Usage) -> Verdict | None:
        """Between the history load and the model call: the user's limits, the bot's budget."""
        policy = self.policy
        over = (policy.max_turns and usage.turns >= policy.max_turns) or (
            policy.max_tokens and usage.tokens >= policy.max_tokens
        )
        if over:
            log.info(
                "over a daily limit", message_id=envelope.message_id, turns=usage.turns, tokens=usage.tokens
            )
            return self.notice(envelope, "limit")
        if policy.budget and self.budget.spent(usage.day) >= policy.budget:
            if self.notices.claim("budget", "bot", usage.day, envelope.message_id):
                log.error(
                    "daily token budget spent: answering BUSY_TEXT",
                    alert="token_budget",
                    budget=policy.budget,
                )
            return self.notice(envelope, "busy")
        return None

    def counted(self, conversation: Conversation, tokens: int, audio: float) -> dict[str, Any]:
        """The counter fields the history write of a model turn adds (no extra operation)."""
        return self.usage(conversation).fields(turns=1, tokens=tokens, audio=audio, messages=1)

    def spent(self, tokens: int, message_id: str, deadline: float) -> None:
        """The bot's daily total: 1 write to a shard, only when DAILY_TOKEN_BUDGET is set. It runs
        after the turn is stored, so it never fails the turn: a refused write (a contended shard)
        goes to the next shard, at most BUDGET_TRIES writes and while more than
        BUDGET_RESERVE_SECONDS of the attempt are left for the reply; then one ERROR line
        (`alert: budget_uncounted`) says how many tokens the budget missed. The user's own usage
        is in the history write: always counted."""
        if not (self.policy.budget and tokens):
            return
        day, first = self.policy.day(), random.randrange(self.budget.shards)  # noqa: S311 - spreading load
        tries = 0
        while True:
            shard, tries = (first + tries) % self.budget.shards, tries + 1
            try:
                self.budget.add(day, tokens, shard)
                return
            except Exception as exc:  # whatever the store raised: the reply must still go out
                if tries < BUDGET_TRIES and deadline - time.monotonic() > BUDGET_RESERVE_SECONDS:
                    continue
                log.error(
                    "tokens not counted in the daily budget",
                    alert="budget_uncounted",
                    message_id=message_id,
                    tokens=tokens,
                    tries=tries,
                    **log.failure(exc),
                )
                return

    def cap(self, parts: list[str], taken: int = 0) -> list[str]:
        return self.policy.cap(parts, taken)

    def notice(self, envelope: Envelope, kind: str) -> Verdict:
        """Today's one reply of this kind to this user (exactly once), then silence."""
        day = self.policy.day()
        if not self.notices.claim(kind, envelope.user, day, envelope.message_id):
            log.info(f"{kind}: already told today, silent", message_id=envelope.message_id)
            return SILENT
        names = {"limit": "LIMIT_TEXT", "busy": "BUSY_TEXT"}
        text = self.policy.texts[names.get(kind, "NOT_ALLOWED_TEXT")]
        log.info(f"{kind}: told once today", message_id=envelope.message_id)
        return Verdict(text.replace("{reset}", self.policy.resets_at()) or None)
