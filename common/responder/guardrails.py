"""The responder's gate before the model: strangers, admin commands, pauses, daily limits, the budget.

One entry point per step of a turn (see responder.py): `screen` before the history is read,
`gate` between the history load and the model call, `counted` for the fields the history write
adds, `spent` after the model answered. A verdict with `text` None means: stay silent (the claim
is still marked done). What each costs in Firestore operations is in counters.py and docs/guardrails.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from common import config, log
from common.bus.envelope import ECHO, NOT_ALLOWED, Envelope
from common.guard.policy import Policy, ids_of
from common.guard.voice_quota import OVER_AUDIO_LIMIT  # Envelope.refused: no download
from common.responder import admin, texts
from common.store.counters import Budget, Notices, Pauses, Usage
from common.store.history import Conversation, History, Turn

if TYPE_CHECKING:
    from google.cloud import firestore


@dataclass(frozen=True, slots=True)
class Verdict:
    """Answer with `text` instead of the model, or stay silent (`text` None)."""

    text: str | None


SILENT = Verdict(None)


def sender(envelope: Envelope) -> frozenset[str]:
    return ids_of(envelope.user, envelope.to)


class Guard:
    def __init__(self, db: firestore.Client, history: History, policy: Policy | None = None) -> None:
        self.policy = policy or Policy.from_env()
        self.history = history
        cache = config.number("GUARDRAILS_CACHE_SECONDS", 10)
        self.notices = Notices(db)
        self.budget = Budget(db, int(config.number("BUDGET_SHARDS", 20)), cache)
        self.pauses = Pauses(db, cache)
        self.db = db

    def stale(self, envelope: Envelope) -> bool:
        if not self.policy.stale(envelope.timestamp):
            return False
        log.info("stale message: acknowledged, not answered", message_id=envelope.message_id)
        return True

    def echo(self, envelope: Envelope) -> bool:
        """A coexistence echo (common/guard/echoes.py): pause the bot for that user; True if it was one."""
        if envelope.refused != ECHO:
            return False
        until = datetime.now(UTC) + timedelta(hours=self.policy.echo_pause_hours or 1)
        for user in sender(envelope):
            self.pauses.pause(user, until)
        log.info("the business answered from the app: paused", message_id=envelope.message_id)
        return True

    def reads(self, envelope: Envelope) -> bool:
        """Whether the bot shows blue ticks and 'typing…': not for a stranger or an over-limit
        voice note (at most one short notice follows), nor in a chat a human has taken over."""
        return not envelope.refused and not self.paused(envelope)

    def paused(self, envelope: Envelope) -> bool:
        """A human has this chat (/pause, or an echo): the bot neither reads nor answers. Admins
        are never paused. Reads the cached pause document only when pauses are possible."""
        ids = sender(envelope)
        if not (self.policy.admins or self.policy.echo_pause_hours) or self.policy.is_admin(ids):
            return False
        return self.pauses.until(ids, datetime.now(UTC)) is not None

    def screen(self, envelope: Envelope, words: str | None) -> Verdict | None:
        """Before the history is read: strangers, admin commands, paused users (no read needed but
        the cached pause document, and only when ADMIN_USERS is set)."""
        if envelope.refused:
            kind = "limit" if envelope.refused == OVER_AUDIO_LIMIT else NOT_ALLOWED
            return self._notice(envelope, kind)
        ids = sender(envelope)
        command = texts.command(envelope)
        if command and self.policy.is_admin(ids):
            answer = admin.run((envelope.text or "").strip(), self)  # as typed: ids keep their case
            if answer is not None:
                return Verdict(answer)
        if self.paused(envelope):
            if words is not None:  # stored, so that the model knows what was said when it resumes
                turn: Turn = {"role": "user", "content": words, "messageId": envelope.message_id}
                conversation = self.history.load(envelope.user)
                if not any(t.get("messageId") == envelope.message_id for t in conversation.turns):
                    usage = Usage.of(conversation.counters, self.policy.day())
                    self.history.append(envelope.user, conversation, [turn], usage.fields(messages=1))
            log.info("paused: stored, not answered", message_id=envelope.message_id)
            return SILENT
        return None

    def gate(self, envelope: Envelope, conversation: Conversation) -> Verdict | None:
        """Between the history load and the model call: /usage, the user's limits, the budget."""
        usage = Usage.of(conversation.counters, self.policy.day())
        if texts.command(envelope) == "/usage":
            return Verdict(admin.usage_text(usage, self.policy))
        policy = self.policy
        over = (policy.max_turns and usage.turns >= policy.max_turns) or (
            policy.max_tokens and usage.tokens >= policy.max_tokens
        )
        if over:
            log.info(
                "over a daily limit", message_id=envelope.message_id, turns=usage.turns, tokens=usage.tokens
            )
            return self._notice(envelope, "limit")
        if policy.budget and self.budget.spent(usage.day) >= policy.budget:
            if self.notices.claim("budget", "bot", usage.day, envelope.message_id):
                log.error(
                    "daily token budget spent: answering BUSY_TEXT",
                    alert="token_budget",
                    budget=policy.budget,
                )
            return self._notice(envelope, "busy")
        return None

    def counted(self, conversation: Conversation, tokens: int, audio: float) -> dict[str, Any]:
        """The counter fields the history write of a model turn adds (no extra operation)."""
        usage = Usage.of(conversation.counters, self.policy.day())
        return usage.fields(turns=1, tokens=tokens, audio=audio, messages=1)

    def spent(self, tokens: int) -> None:
        """The bot's daily total: 1 write to a shard, only when DAILY_TOKEN_BUDGET is set."""
        if self.policy.budget and tokens:
            self.budget.add(self.policy.day(), tokens)

    def cap(self, parts: list[str], taken: int = 0) -> list[str]:
        return self.policy.cap(parts, taken)

    def _notice(self, envelope: Envelope, kind: str) -> Verdict:
        """Today's one reply of this kind to this user (exactly once), then silence."""
        day = self.policy.day()
        if not self.notices.claim(kind, envelope.user, day, envelope.message_id):
            log.info(f"{kind}: already told today, silent", message_id=envelope.message_id)
            return SILENT
        names = {"limit": "LIMIT_TEXT", "busy": "BUSY_TEXT"}
        text = self.policy.texts[names.get(kind, "NOT_ALLOWED_TEXT")]
        log.info(f"{kind}: told once today", message_id=envelope.message_id)
        return Verdict(text.replace("{reset}", self.policy.resets_at()) or None)
