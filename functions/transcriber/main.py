"""Pub/Sub entry point `transcribe`: a voice note from the audio topic becomes text on the text topic.

Every other message of a user comes this way too, so that it keeps its place behind the user's
voice notes (common/webhook/handler.py): it is handed on to the text topic unchanged (one publish;
the Graph client and the speech backend are not even built for it).

Returning acks the message; a 500 makes Pub/Sub redeliver — done only for what a retry can fix
(Graph or speech service timeouts, 429, 5xx; an unconfirmed publish). It is a bare 500 (an
HTTPException, which Flask logs no traceback for: a traceback's chained causes hold URLs and
Meta's words). A redelivered note may publish its transcript twice: the responder claims each
message id once in Firestore, so the duplicate is dropped there.
"""

from __future__ import annotations

import threading

import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import InternalServerError

from common import config, log, startup  # startup before the SDKs: pauses the collector
from common.ai.transcription import Unavailable, backends
from common.bus.events import BadEvent, envelope_from_event
from common.bus.publisher import Publisher, PublishError
from common.meta.graph import GraphError
from common.transcriber.handler import Transcriber, transcribes

backends.settings()  # refuse a backend setting when the instance starts, not at the first note
_transcriber: Transcriber | None = None  # one Graph client and speech backend per instance
_publisher: Publisher | None = None  # one Pub/Sub client per instance
# An instance serves several events at once, in threads; two locks, so that a text never waits
# while the first voice note builds the speech backend (sphinx loads its models for seconds).
_transcriber_lock, _publisher_lock = threading.Lock(), threading.Lock()


def _transcriber_client() -> Transcriber:
    """Created once, on the first voice note (not at import, so a cold start stays short), then
    frozen with the modules (common/startup.py)."""
    global _transcriber
    with _transcriber_lock:
        if _transcriber is None:
            try:
                _transcriber = Transcriber.from_env()
            finally:
                startup.done()
        return _transcriber


def _publisher_client() -> Publisher:
    """Created once, on the first event, then frozen with the modules."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            try:
                _publisher = Publisher()
            finally:
                startup.done()
        return _publisher


@functions_framework.cloud_event
def transcribe(event: CloudEvent) -> None:
    try:
        envelope = envelope_from_event(event.data)
    except BadEvent as exc:
        log.error("transcriber: not an envelope, dropped", reason=str(exc))
        return
    try:
        result = _transcriber_client().run(envelope) if transcribes(envelope) else envelope
        _publisher_client().publish_all([(config.get("TOPIC_TEXT") or "", result)])
    except (GraphError, Unavailable) as exc:
        log.warning(
            "transcription will be retried",
            message_id=envelope.message_id,
            user=log.mask(envelope.user),
            error=str(exc),
        )
        raise InternalServerError() from None
    except PublishError:  # each failed publish is logged where it failed
        log.warning("not handed on to the text topic: will be redelivered", message_id=envelope.message_id)
        raise InternalServerError() from None
    except Exception as exc:  # a fault of ours: logged without a traceback
        log.error("failed: will be redelivered", message_id=envelope.message_id, **log.failure(exc))
        raise InternalServerError() from None
