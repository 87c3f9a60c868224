"""Pub/Sub entry point `transcribe`: a voice note from the audio topic becomes text on the text topic.

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

from common import config, log
from common.ai.transcription import Unavailable, backends
from common.bus.events import BadEvent, envelope_from_event
from common.bus.publisher import Publisher, PublishError
from common.meta.graph import GraphError
from common.transcriber.handler import Transcriber

backends.settings()  # refuse a backend setting when the instance starts, not at the first note
_transcriber: Transcriber | None = None  # one Graph client and speech backend per instance
_publisher: Publisher | None = None  # one Pub/Sub client per instance
_clients_lock = threading.Lock()  # an instance serves several events at once, in threads


def _clients() -> tuple[Transcriber, Publisher]:
    """Created once, on the first event (not at import, so a cold start stays short)."""
    global _transcriber, _publisher
    with _clients_lock:
        if _transcriber is None:
            _transcriber = Transcriber.from_env()
        if _publisher is None:
            _publisher = Publisher()
        return _transcriber, _publisher


@functions_framework.cloud_event
def transcribe(event: CloudEvent) -> None:
    try:
        envelope = envelope_from_event(event.data)
    except BadEvent as exc:
        log.error("transcriber: not an envelope, dropped", reason=str(exc))
        return
    try:
        transcriber, publisher = _clients()
        result = transcriber.run(envelope)
        publisher.publish_all([(config.get("TOPIC_TEXT") or "", result)])
    except (GraphError, Unavailable) as exc:
        log.warning(
            "transcription will be retried",
            message_id=envelope.message_id,
            user=log.mask(envelope.user),
            error=str(exc),
        )
        raise InternalServerError() from None
    except PublishError:  # each failed publish is logged where it failed
        log.warning("transcript not published: will be redelivered", message_id=envelope.message_id)
        raise InternalServerError() from None
    except Exception as exc:  # a fault of ours: logged without a traceback
        log.error("failed: will be redelivered", message_id=envelope.message_id, **log.failure(exc))
        raise InternalServerError() from None
