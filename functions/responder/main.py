"""Pub/Sub entry point `respond`: one reply per message, exactly once (see common/responder/responder.py).

A nack is a bare 500 (an HTTPException, which Flask answers without logging a traceback): a
traceback holds the texts of every chained cause, URLs with document paths and Meta's own words.
"""

from __future__ import annotations

import threading

import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import InternalServerError

from common import log, startup  # startup before the SDKs: pauses the collector
from common.actions import spec
from common.ai import openai_client
from common.bus.events import BadEvent, envelope_from_event, is_dead_lettered, part_sent_from_event
from common.bus.part_sent import PartSent
from common.responder import voice_reply
from common.responder.responder import Responder, RetryLater, timing

timing()  # refuse a lease a living attempt could lose when the instance starts, not at the first message
voice_reply.settings()  # and a voice setting it could not act on
openai_client.base_url()  # and an OPENAI_BASE_URL the API key may not be sent to
spec.configured()  # and an ACTIONS_FILE it could not use: the error names the action and the problem
_responder: Responder | None = None  # clients created once per instance, on first use
_lock = threading.Lock()  # instances serve several requests at once: create them only once


def responder() -> Responder:
    global _responder
    if _responder is None:
        with _lock:
            if _responder is None:
                try:
                    _responder = Responder()
                finally:
                    startup.done()
    return _responder


@functions_framework.cloud_event
def respond(event: CloudEvent) -> None:
    """Return = ack. Raise = nack: Pub/Sub redelivers (only for what a retry can fix). The status
    subscription brings Meta's word that a part went out (common/bus/part_sent.py)."""
    try:
        part = part_sent_from_event(event.data)
        if part is not None:
            return _record(part)
        envelope = envelope_from_event(event.data)
    except BadEvent as exc:
        log.error("dropped an undecodable event", reason=str(exc), event_id=event.get("id"))
        return
    try:
        if is_dead_lettered(event.data):
            responder().give_up(envelope)
        else:
            responder().handle(envelope)
    except RetryLater as exc:
        log.warning("will be redelivered", message_id=envelope.message_id, reason=str(exc))
        raise InternalServerError() from None
    except Exception as exc:  # a fault of ours or an outage (Firestore): logged without a traceback
        log.error("failed: will be redelivered", message_id=envelope.message_id, **log.failure(exc))
        raise InternalServerError() from None


def _record(part: PartSent) -> None:
    try:
        responder().part_sent(part)
    except Exception as exc:  # Firestore: the status is pushed again
        log.warning("part's status not recorded: will be redelivered", **log.failure(exc))
        raise InternalServerError() from None
