"""What goes to Meta: the read receipt, 'typing…' while the steps run, and the reply's parts.

The Graph error policy of a reply, by code (common/meta/graph.py): retriable → Pub/Sub redelivers
and the retry sends from the first part not yet sent; a token or permission error → an outage
(alerted, never done, retried until the dead-letter topic); anything else → logged and
acknowledged (a redelivery could not do better). Firestore: 1 fenced write after each part but
the last (the claim's `partsSent`), so a retry never sends a part twice. Each part is sent within
what the claim's lease lets the attempt do, and carries callback data that Meta's statuses bring
back (common/store/sent_parts.py): a takeover skips a part the attempt before it had accepted
but could not record, once Meta said it took it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common import log
from common.ai.speech import SpeechUnavailable
from common.meta.graph import GraphClient, GraphError
from common.responder.guardrails import Guard
from common.responder.steps import Draft, RetryLater, auth_failure, left
from common.responder.texts import Texts
from common.responder.typing_indicator import Typing
from common.responder.voice_reply import VoiceReplies, capped
from common.store.claims import Claims


class Receipt:
    """Blue ticks and 'typing…' as soon as work starts, alongside it; only a token error stops the
    attempt (raised where the attempt waits for it: before it stores or sends anything)."""

    def __init__(self, graph: GraphClient, every: float) -> None:
        self.graph, self.every = graph, every

    def __call__(self, draft: Draft) -> None:
        envelope = draft.turn.envelope
        try:
            self.graph.mark_read(
                envelope.phone_number_id, envelope.message_id, typing=True, timeout=left(draft.deadline)
            )
        except GraphError as exc:
            if exc.auth:
                raise auth_failure(draft.turn, exc) from exc
            log.warning(
                "mark as read failed", message_id=envelope.message_id, code=exc.code, status=exc.status
            )

    def typing(self, draft: Draft) -> Typing:
        """'typing…' re-sent every TYPING_REFRESH_SECONDS while the steps run (never after them):
        media and the model can outlast the indicator. Only where the receipt showed it."""
        envelope = draft.turn.envelope
        return Typing(
            lambda timeout: self.graph.mark_read(
                envelope.phone_number_id, envelope.message_id, typing=True, timeout=timeout
            ),
            self.every if draft.reads else 0,
            draft.deadline,
        )


class Send:
    """The reply's parts in order, from the first one not yet sent (a voice note first, when the
    reply is spoken: common/responder/voice_reply.py), saving progress after each but the last."""

    def __init__(
        self,
        graph: GraphClient,
        voice: VoiceReplies,
        guard: Guard,
        claims: Claims,
        texts: Texts,
        buttons: Callable[[str], list[tuple[str, str]]] | None = None,
    ) -> None:
        self.graph, self.voice, self.guard, self.claims, self.texts = graph, voice, guard, claims, texts
        self.buttons = buttons  # a question's yes and no buttons, from its call's key

    def __call__(self, draft: Draft) -> None:
        envelope, claim = draft.turn.envelope, draft.owned
        reply = draft.reply or self.texts.empty_answer
        if draft.confirm and self.buttons is not None:  # one message: the question and its buttons
            self._question(draft, reply, self.buttons(draft.confirm))
            return
        parts = capped(self.voice.parts(envelope, reply, draft.conversation), self.guard.cap)
        start = 0 if draft.from_start else claim.parts_sent
        if not draft.from_start:  # a part the attempt before may have had accepted: taken?
            start = self.claims.resume_at(envelope.message_id, claim, start, len(parts))
        fields = {"message_id": envelope.message_id}
        quoted = start > 0
        for index in range(start, len(parts)):
            timeout = left(draft.deadline, claim)  # the part is over before the lease could end
            quote = None if quoted else envelope.message_id
            callback = self.claims.callback(envelope.message_id, index)
            claim.sending = index
            try:
                if parts[index].kind == "voice":
                    until, last = time.monotonic() + timeout, draft.last_chance
                    quoted = self.voice.send(envelope, claim, parts[index], quote, until, last, callback)
                else:
                    self.graph.send_text(
                        envelope.phone_number_id,
                        envelope.to,
                        parts[index].text,
                        reply_to=quote,
                        timeout=timeout,
                        callback=callback,
                    )
                    quoted = True
            except SpeechUnavailable as exc:
                claim.sending = None  # nothing was sent: speech comes first
                log.warning("speech unavailable: Pub/Sub will redeliver", **fields, reason=str(exc))
                raise RetryLater(f"speech unavailable: {exc}") from exc
            except GraphError as exc:
                if exc.status:  # Meta answered, with an error: the part was not accepted
                    claim.sending = None
                _failed(draft, exc, fields, index)
                return
            claim.parts_sent, claim.sending = index + 1, None  # accepted: a release records it
            if index + 1 < len(parts):
                self.claims.progress(envelope.message_id, claim, index + 1)
        log.info("reply sent", **fields, parts=len(parts))

    def _question(self, draft: Draft, question: str, buttons: list[tuple[str, str]]) -> None:
        """The question of a `confirm: true` action, with its yes and no buttons, as one message."""
        envelope, claim = draft.turn.envelope, draft.owned
        fields = {"message_id": envelope.message_id}
        if not draft.from_start and self.claims.resume_at(envelope.message_id, claim, claim.parts_sent, 1):
            return  # an earlier attempt sent it (recorded, or Meta said it took it)
        claim.sending = 0
        try:
            self.graph.send_buttons(
                envelope.phone_number_id,
                envelope.to,
                question,
                buttons,
                reply_to=envelope.message_id,
                timeout=left(draft.deadline, claim),
                callback=self.claims.callback(envelope.message_id, 0),
            )
        except GraphError as exc:
            if exc.status:  # Meta answered, with an error: not accepted
                claim.sending = None
            _failed(draft, exc, fields, 0)
            return
        claim.parts_sent, claim.sending = 1, None
        log.info("question sent", **fields)


def _failed(draft: Draft, exc: GraphError, fields: dict[str, object], index: int) -> None:
    """The error policy of a part Meta did not take: a token error is an outage (alerted, never
    done), a retriable one is redelivered (RetryLater), anything else is logged and acknowledged."""
    fields.update(code=exc.code, status=exc.status, parts_sent=index)
    if exc.auth:
        raise auth_failure(draft.turn, exc) from exc
    if not exc.retriable:
        log.error("reply not deliverable: acknowledged", **fields, title=exc.title)
        return
    log.warning("sending failed: Pub/Sub will redeliver", **fields)
    raise RetryLater(str(exc)) from exc
