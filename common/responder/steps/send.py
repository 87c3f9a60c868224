"""What goes to Meta: the read receipt, 'typing…' while the steps run, and the reply's parts.

The Graph error policy of a reply, by code (common/meta/graph.py): retriable → Pub/Sub redelivers
and the retry sends from the first part not yet sent; a token or permission error → an outage
(alerted, never done, retried until the dead-letter topic); anything else → logged and
acknowledged (a redelivery could not do better). Firestore: 1 fenced write after each part but
the last (the claim's `partsSent`), so a retry never sends a part twice.
"""

from __future__ import annotations

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
        self, graph: GraphClient, voice: VoiceReplies, guard: Guard, claims: Claims, texts: Texts
    ) -> None:
        self.graph, self.voice, self.guard, self.claims, self.texts = graph, voice, guard, claims, texts

    def __call__(self, draft: Draft) -> None:
        envelope, claim = draft.turn.envelope, draft.owned
        reply = draft.reply or self.texts.empty_answer
        parts = capped(self.voice.parts(envelope, reply, draft.conversation), self.guard.cap)
        start = 0 if draft.from_start else claim.parts_sent
        fields = {"message_id": envelope.message_id}
        quoted = start > 0
        for index in range(start, len(parts)):
            timeout = left(draft.deadline)
            quote = None if quoted else envelope.message_id
            try:
                if parts[index].kind == "voice":
                    last = draft.last_chance
                    quoted = self.voice.send(envelope, claim, parts[index], quote, draft.deadline, last)
                else:
                    self.graph.send_text(
                        envelope.phone_number_id,
                        envelope.to,
                        parts[index].text,
                        reply_to=quote,
                        timeout=timeout,
                    )
                    quoted = True
            except SpeechUnavailable as exc:
                log.warning("speech unavailable: Pub/Sub will redeliver", **fields, reason=str(exc))
                raise RetryLater(f"speech unavailable: {exc}") from exc
            except GraphError as exc:
                fields.update(code=exc.code, status=exc.status, parts_sent=index)
                if exc.auth:
                    raise auth_failure(draft.turn, exc) from exc
                if not exc.retriable:
                    log.error("reply not deliverable: acknowledged", **fields, title=exc.title)
                    return
                log.warning("sending failed: Pub/Sub will redeliver", **fields)
                raise RetryLater(str(exc)) from exc
            claim.parts_sent = index + 1  # accepted: a release records it if the write below fails
            if index + 1 < len(parts):
                self.claims.progress(envelope.message_id, claim, index + 1)
        log.info("reply sent", **fields, parts=len(parts))
