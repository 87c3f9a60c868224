"""Decode the CloudEvent a Pub/Sub-triggered function receives into our envelope.

On Google Cloud and locally alike, our own push subscription POSTs the raw push body, which
functions-framework converts into a CloudEvent whose `data.message.data` is the base64 envelope
(or, on the responder's status subscription, Meta's word that a part went out: common/bus/part_sent.py).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from common.bus.envelope import Envelope
from common.bus.part_sent import KIND, PartSent

# Pub/Sub adds these attributes when it forwards a message to a dead-letter topic.
DEAD_LETTER_ATTRIBUTE = "CloudPubSubDeadLetterSourceSubscription"


class BadEvent(ValueError):
    """Not a Pub/Sub message holding an envelope: retrying cannot help, so it is acked."""


def envelope_from_event(data: Any) -> Envelope:
    try:
        return Envelope.from_bytes(_data(data))
    except ValueError as exc:
        raise BadEvent(str(exc)) from exc


def part_sent_from_event(data: Any) -> PartSent | None:
    """The PartSent a delivery holds; None when it holds something else (an envelope)."""
    if _attributes(data).get("type") != KIND:
        return None
    try:
        return PartSent.from_bytes(_data(data))
    except ValueError as exc:
        raise BadEvent(str(exc)) from exc


def _data(data: Any) -> bytes:
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise BadEvent("event has no message.data")
    try:
        return base64.b64decode(message["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEvent("message.data is not base64") from exc


def _attributes(data: Any) -> dict[str, Any]:
    message = data.get("message") if isinstance(data, dict) else None
    attributes = message.get("attributes") if isinstance(message, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def is_dead_lettered(data: Any) -> bool:
    """True for a delivery from the dead-letter topic: every retry has been spent."""
    return DEAD_LETTER_ATTRIBUTE in _attributes(data)


def event_for(
    envelope: Envelope | PartSent, subscription: str = "projects/p/subscriptions/s"
) -> dict[str, Any]:
    """The raw Pub/Sub push body for an envelope (what Pub/Sub POSTs to a push endpoint)."""
    return {
        "message": {
            "data": base64.b64encode(envelope.to_bytes()).decode(),
            "attributes": envelope.attributes,
            "messageId": envelope.message_id[-16:],
        },
        "subscription": subscription,
    }
