"""One reply per message: claim → read receipt → words → model → store → send, within a deadline.

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

import functools
import time
from collections.abc import Callable
from datetime import timedelta

from common import config, log
from common.ai.llm import ChatModel, ContextTooLong, ModelRefused, ModelUnavailable
from common.ai.speech import SpeechUnavailable
from common.bus.envelope import Envelope
from common.meta.graph import GraphClient, GraphError, alert_auth
from common.responder import texts
from common.responder.guardrails import Guard
from common.responder.inputs import Inputs, Request, Unanswerable
from common.responder.inputs import Turn as UserTurn
from common.responder.media_memory import NoRoom
from common.responder.overlap import Overlap
from common.responder.typing_indicator import Typing
from common.responder.voice_reply import VoiceReplies, capped
from common.store import db as store
from common.store.claims import Claim, Claims, LostClaim, Outcome
from common.store.history import Budget, Conversation, History, Turn

# Message types the responder never answers (the webhook does not publish them either).
SILENT_TYPES = frozenset({"reaction", "system"})
Answer = tuple[str | None, Conversation | None]  # the reply (None: silent); the conversation, if read


class RetryLater(Exception):
    """Raised out of the function so that Pub/Sub redelivers the message."""


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
        self.guard = Guard(db, self.history)
        self.model.max_tokens = self.guard.policy.model_max_tokens()  # fits in MAX_REPLY_PARTS
        self.inputs = Inputs.from_env(self.graph, self.texts)
        self.typing_every = config.number("TYPING_REFRESH_SECONDS", 20)
        self.voice = VoiceReplies(self.history, self.graph)
        # The history read runs alongside the claim, the read receipt alongside the model call (it
        # ends before anything is stored).
        self.overlap = Overlap()

    def handle(self, envelope: Envelope) -> None:
        deadline = time.monotonic() + self.attempt_seconds
        store.set_deadline(deadline)
        fields = {"message_id": envelope.message_id, "type": envelope.type, "user": log.mask(envelope.user)}
        if envelope.type in SILENT_TYPES:
            log.info("not answered", **fields)
            return
        if self.guard.stale(envelope) or self.guard.echo(envelope):  # old, or the business answered
            return
        wanted = texts.command(envelope) is None and not envelope.refused  # strangers: no read
        self.overlap.prefetch(envelope.user, self.history.load if wanted else None)  # no side effect
        claim = self.claims.claim(envelope.message_id)
        if claim.outcome is Outcome.DONE:
            log.info("already answered: redelivery acknowledged", **fields)
            return
        if claim.outcome is Outcome.BUSY:
            raise RetryLater("another attempt holds the claim")
        if claim.outcome is Outcome.TAKEN_OVER:
            log.warning("taking over an abandoned claim", **fields, parts_sent=claim.parts_sent)
        self._while_owned(envelope, claim, lambda: self._reply(envelope, claim, deadline))

    def give_up(self, envelope: Envelope) -> None:
        """Every retry is spent (a delivery from the dead-letter topic): tell the user, once."""
        deadline = time.monotonic() + self.attempt_seconds
        store.set_deadline(deadline)
        claim = self.claims.claim(envelope.message_id)
        if claim.outcome is Outcome.DONE:
            return
        if claim.outcome is Outcome.BUSY:
            raise RetryLater("an attempt is still working on it")

        def finish() -> None:
            if envelope.refused:  # a guardrail's notice (or an echo): nothing to apologise for
                self.claims.done(envelope.message_id, claim)
                return
            stored, conversation = None, None
            if self._user_words(envelope) is not None:
                conversation = self.history.load(envelope.user)
                stored = conversation.reply_to(envelope.message_id)
            what = "apologising" if stored is None else "sending the stored reply"
            log.error(f"giving up after every retry: {what}", message_id=envelope.message_id)
            start = claim.parts_sent if stored else 0
            reply = stored or self.texts.model_error
            self._send(envelope, claim, reply, deadline, start, last_chance=True, conversation=conversation)
            self.claims.done(envelope.message_id, claim)

        self._while_owned(envelope, claim, finish)

    def _while_owned(self, envelope: Envelope, claim: Claim, work: Callable[[], None]) -> None:
        """Run the attempt's work: a failure ends the lease at once (if still ours) and propagates
        (redelivery); a claim lost to another attempt stops it quietly (acknowledged)."""
        try:
            try:
                work()
            except LostClaim:
                raise
            except Exception:
                self.claims.release(envelope.message_id, claim)  # the retry may start at once
                raise
        except LostClaim:
            stopped = "lost the claim to another attempt: stopped, nothing more sent"
            log.warning(stopped, message_id=envelope.message_id)

    def _reply(self, envelope: Envelope, claim: Claim, deadline: float) -> None:
        reads = self.guard.reads(envelope)  # not for strangers, nor where a human has the chat
        self.overlap.start(functools.partial(self._mark_read, envelope, deadline) if reads else None)
        with self._typing(envelope, deadline):  # media and the model can outlast the indicator
            reply, conversation = self._answer(envelope, claim, deadline)
        self.overlap.wait()
        if reply is not None:  # None: a guardrail keeps the bot silent
            self._send(envelope, claim, reply, deadline, claim.parts_sent, conversation=conversation)
        self.claims.done(envelope.message_id, claim)

    def _answer(self, envelope: Envelope, claim: Claim, deadline: float) -> Answer:
        """The reply, and the conversation if it was read; a model's reply is stored before it is sent."""
        if texts.command(envelope) == "/reset":
            self.history.reset(envelope.user, envelope.message_id, retry=claim.outcome is Outcome.TAKEN_OVER)
            return self.texts.reset, None
        request = self._user_words(envelope)
        words = (envelope.text or "").strip() or None if request is not None else None
        if verdict := self.guard.screen(envelope, words):  # strangers, admins, pauses
            return verdict.text, None
        if (switched := self.voice.command(envelope)) is not None:
            return switched, None
        if request is None:
            return self.texts.canned_reply(envelope), None
        conversation = self.overlap.take(envelope.user, self.history.load)
        stored = conversation.reply_to(envelope.message_id)
        if stored is not None:  # an earlier attempt answered but did not finish sending
            return stored, conversation
        if verdict := self.guard.gate(envelope, conversation):  # /usage, daily limits, budget
            return verdict.text, conversation
        try:
            with request.reading(deadline) as user_turn:  # media is downloaded here, and only here,
                reply = self._ask_model(conversation.turns, user_turn, deadline)  # and held till then
        except Unanswerable as exc:
            return exc.reply, conversation
        except GraphError as exc:  # media info or download: retriable, or a token error (alerted)
            raise RetryLater(f"media not fetched: {exc}") from exc
        except NoRoom as exc:  # the instance holds all the media it may: another instance, or later
            raise RetryLater(str(exc)) from exc
        tokens = getattr(reply, "tokens", 0)
        _stop_if_late(deadline)  # a late answer is not stored: the retry asks again
        self.overlap.wait()  # a token error on the receipt: nothing stored
        new_turns: list[Turn] = [
            {"role": "user", "content": user_turn.stand_in, "messageId": envelope.message_id},
            {"role": "assistant", "content": reply, "messageId": envelope.message_id},
        ]
        counters = self.guard.counted(conversation, tokens, envelope.audio_seconds or 0)
        self.history.append(envelope.user, conversation, new_turns, counters)
        self.guard.spent(tokens)
        log.info("answered", message_id=envelope.message_id, chars=len(reply))
        return reply, conversation

    def _user_words(self, envelope: Envelope) -> Request | None:
        """What goes to the model as the user's turn (words, or parts made from media: see
        common/responder/inputs.py), not yet read; None when a fixed reply fits better."""
        if envelope.transcription_error or texts.command(envelope) == "/help":
            return None
        return self.inputs.request(envelope)

    def _ask_model(self, turns: list[Turn], user_turn: UserTurn, deadline: float) -> str:
        system, model, timeout = self.texts.system_prompt, user_turn.model, user_turn.timeout
        try:
            reply = self.model.answer(system, turns, user_turn.content, deadline, model, timeout)
        except ModelUnavailable as exc:
            raise RetryLater(f"model unavailable: {exc}") from exc
        except (ModelRefused, ContextTooLong) as exc:
            log.error("model refused the request: apologising", error=str(exc))
            return user_turn.refused or self.texts.model_error
        return reply or self.texts.empty_answer

    def _send(
        self,
        envelope: Envelope,
        claim: Claim,
        reply: str,
        deadline: float,
        start: int,
        last_chance: bool = False,
        conversation: Conversation | None = None,
    ) -> None:
        """Send the parts in order from `start` (a voice note first, when the reply is spoken: see
        voice_reply.py), saving progress after each part but the last."""
        planned = self.voice.parts(envelope, reply or self.texts.empty_answer, conversation)
        parts = capped(planned, self.guard.cap)
        fields = {"message_id": envelope.message_id}
        quoted = start > 0
        for index in range(start, len(parts)):
            left = _stop_if_late(deadline)
            quote = None if quoted else envelope.message_id
            try:
                if parts[index].kind == "voice":
                    quoted = self.voice.send(envelope, claim, parts[index], quote, deadline, last_chance)
                else:
                    self.graph.send_text(
                        envelope.phone_number_id, envelope.to, parts[index].text, reply_to=quote, timeout=left
                    )
                    quoted = True
            except SpeechUnavailable as exc:
                log.warning("speech unavailable: Pub/Sub will redeliver", **fields, reason=str(exc))
                raise RetryLater(f"speech unavailable: {exc}") from exc
            except GraphError as exc:
                fields.update(code=exc.code, status=exc.status, parts_sent=index)
                if exc.auth:
                    raise _auth_failure(envelope, exc) from exc
                if not exc.retriable:
                    log.error("reply not deliverable: acknowledged", **fields, title=exc.title)
                    return
                log.warning("sending failed: Pub/Sub will redeliver", **fields)
                raise RetryLater(str(exc)) from exc
            claim.parts_sent = index + 1  # accepted: a release records it if the write below fails
            if index + 1 < len(parts):
                self.claims.progress(envelope.message_id, claim, index + 1)
        log.info("reply sent", **fields, parts=len(parts))

    def _typing(self, envelope: Envelope, deadline: float) -> Typing:
        """'typing…' re-sent every TYPING_REFRESH_SECONDS while the block runs (never after it)."""
        return Typing(
            lambda timeout: self.graph.mark_read(
                envelope.phone_number_id, envelope.message_id, typing=True, timeout=timeout
            ),
            self.typing_every,
            deadline,
        )

    def _mark_read(self, envelope: Envelope, deadline: float) -> None:
        """Blue ticks and 'typing…' as soon as work starts; only a token error stops the attempt."""
        try:
            self.graph.mark_read(
                envelope.phone_number_id, envelope.message_id, typing=True, timeout=_stop_if_late(deadline)
            )
        except GraphError as exc:
            if exc.auth:
                raise _auth_failure(envelope, exc) from exc
            log.warning(
                "mark as read failed", message_id=envelope.message_id, code=exc.code, status=exc.status
            )


def _stop_if_late(deadline: float) -> float:
    """Seconds left in this attempt; past its deadline, stop (the claim is released, retried)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise RetryLater("the attempt's deadline has passed")
    return left


def _auth_failure(envelope: Envelope, exc: GraphError) -> RetryLater:
    """A token or permission error is an outage: never done, retried until the dead-letter topic."""
    alert_auth(exc, message_id=envelope.message_id)
    return RetryLater(f"Graph API token or permission error {exc.code}")
