"""One reply per message: claim → read receipt → words → model → store → send.

Firestore per text turn: 1 read (the history) and 3 writes (claim create, history, claim done).
The reply is in the history before it is sent, so an attempt that takes over a crashed one
resends it instead of asking the model again.
"""

from __future__ import annotations

from datetime import timedelta

from google.cloud import firestore

from common import config, log, texts
from common.chunks import split_text
from common.claims import Claims, Outcome
from common.envelope import Envelope
from common.graph import GraphClient, GraphError
from common.history import Budget, History, Turn
from common.llm import ChatModel, ContextTooLong, ModelRefused, ModelUnavailable

# Message types the responder never answers (the webhook does not publish them either).
SILENT_TYPES = frozenset({"reaction", "system"})


class RetryLater(Exception):
    """Raised out of the function so that Pub/Sub redelivers the message."""


class Responder:
    """Holds the per-instance clients; `handle` is called once per delivered envelope."""

    def __init__(self) -> None:
        db = firestore.Client(project=config.project())
        days = timedelta(days=1)
        self.claims = Claims(
            db,
            lease=timedelta(seconds=config.number("CLAIM_LEASE_SECONDS", 120)),
            ttl=config.number("CLAIM_TTL_DAYS", 7) * days,
        )
        budget = Budget(
            int(config.number("HISTORY_MAX_TURNS", 20)), int(config.number("HISTORY_MAX_CHARS", 12000))
        )
        self.history = History(db, budget, ttl=config.number("HISTORY_TTL_DAYS", 30) * days)
        self.graph = GraphClient()
        self.model = ChatModel()
        self.texts = texts.Texts.from_env()

    def handle(self, envelope: Envelope) -> None:
        fields = {"message_id": envelope.message_id, "type": envelope.type, "user": log.mask(envelope.user)}
        if envelope.type in SILENT_TYPES:
            log.info("not answered", **fields)
            return
        claim = self.claims.claim(envelope.message_id)
        if claim.outcome is Outcome.DONE:
            log.info("already answered: redelivery acknowledged", **fields)
            return
        if claim.outcome is Outcome.BUSY:
            raise RetryLater("another attempt holds the claim")
        if claim.outcome is Outcome.TAKEN_OVER:
            log.warning("taking over an abandoned claim", **fields, parts_sent=claim.parts_sent)
        self._mark_read(envelope)
        try:
            reply = self._answer(envelope)
        except Exception:
            self.claims.release(envelope.message_id, claim.parts_sent)  # let the retry start at once
            raise
        self._send(envelope, reply, claim.parts_sent)
        self.claims.done(envelope.message_id)

    def give_up(self, envelope: Envelope) -> None:
        """Every retry is spent (a delivery from the dead-letter topic): tell the user, once."""
        claim = self.claims.claim(envelope.message_id)
        if claim.outcome is Outcome.DONE:
            return
        if claim.outcome is Outcome.BUSY:
            raise RetryLater("an attempt is still working on it")
        stored = None
        if self._user_words(envelope) is not None:
            stored = self.history.load(envelope.user).reply_to(envelope.message_id)
        log.error("giving up after every retry: apologising", message_id=envelope.message_id)
        self._send(envelope, stored or self.texts.model_error, claim.parts_sent if stored else 0)
        self.claims.done(envelope.message_id)

    def _answer(self, envelope: Envelope) -> str:
        """Decide the reply; a model's reply is stored with the history before it is sent."""
        if texts.command(envelope) == "/reset":
            self.history.reset(envelope.user)
            return self.texts.reset
        user_words = self._user_words(envelope)
        if user_words is None:
            return self.texts.canned_reply(envelope)
        conversation = self.history.load(envelope.user)
        stored = conversation.reply_to(envelope.message_id)
        if stored is not None:  # an earlier attempt answered but did not finish sending
            return stored
        reply = self._ask_model(conversation.turns, user_words)
        new_turns: list[Turn] = [
            {"role": "user", "content": user_words, "messageId": envelope.message_id},
            {"role": "assistant", "content": reply, "messageId": envelope.message_id},
        ]
        self.history.append(envelope.user, conversation, new_turns)
        log.info("answered", message_id=envelope.message_id, chars=len(reply))
        return reply

    def _user_words(self, envelope: Envelope) -> str | None:
        """What goes to the model as the user's turn; None when a fixed reply fits better."""
        text = (envelope.text or "").strip()
        if envelope.transcription_error or texts.command(envelope) == "/help":
            return None
        if envelope.transcript:
            return self.texts.voice_turn(text) if text else None
        if envelope.type in ("text", "interactive", "button") and text:
            return text
        return None

    def _ask_model(self, turns: list[Turn], user_words: str) -> str:
        system = [{"role": "system", "content": self.texts.system_prompt}]
        history = [{"role": t["role"], "content": t["content"]} for t in turns]
        prompt = [*system, *history, {"role": "user", "content": user_words}]
        try:
            try:
                reply = self.model.complete(prompt)
            except ContextTooLong:
                log.warning("context too long: retrying with the last turns only", turns=len(history))
                reply = self.model.complete([*system, *history[-2:], {"role": "user", "content": user_words}])
        except ModelUnavailable as exc:
            raise RetryLater(f"model unavailable: {exc}") from exc
        except (ModelRefused, ContextTooLong) as exc:
            log.error("model refused the request: apologising", error=str(exc))
            return self.texts.model_error
        return reply or self.texts.empty_answer

    def _send(self, envelope: Envelope, reply: str, parts_sent: int) -> None:
        """Send the parts in order from `parts_sent`; on failure remember how far we got."""
        parts = split_text(reply or self.texts.empty_answer)
        sent = parts_sent
        try:
            for index in range(parts_sent, len(parts)):
                quote = envelope.message_id if index == 0 else None
                self.graph.send_text(envelope.phone_number_id, envelope.to, parts[index], reply_to=quote)
                sent = index + 1
        except GraphError as exc:
            fields = {"message_id": envelope.message_id, "code": exc.code, "status": exc.status}
            if not exc.retriable:
                log.error("reply not deliverable: acknowledged", **fields, title=exc.title)
                return
            self.claims.release(envelope.message_id, sent)
            log.warning("sending failed: Pub/Sub will redeliver", **fields, parts_sent=sent)
            raise RetryLater(str(exc)) from exc
        log.info("reply sent", message_id=envelope.message_id, parts=len(parts))

    def _mark_read(self, envelope: Envelope) -> None:
        """Blue ticks and 'typing…' as soon as work starts; never fatal."""
        try:
            self.graph.mark_read(envelope.phone_number_id, envelope.message_id, typing=True)
        except GraphError as exc:
            log.warning(
                "mark as read failed", message_id=envelope.message_id, code=exc.code, status=exc.status
            )
