"""The normalized message that travels through Pub/Sub: webhook -> transcriber -> responder.

JSON in the message data; `message_id` and `type` also as attributes (functions-framework
drops the ordering key and delivery attempt, so nothing we need may live only there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the webhook's parser: the responder and transcriber only decode envelopes
    from common.meta.payload import Message

# Values of Envelope.refused set by the webhook (common/guard/admission.py, common/guard/echoes.py), read by
# the responder's guardrails: here, so the responder need not import the webhook's modules.
NOT_ALLOWED = "not_allowed"  # a stranger (ALLOWED_USERS): published without words or media
ECHO = "echo"  # the business answered from the WhatsApp Business app: pause the bot for the user

VERSION = 1


@dataclass(frozen=True, slots=True)
class MediaRef:
    id: str
    mime_type: str | None = None
    sha256: str | None = None
    voice: bool = False
    filename: str | None = None  # a document's name as the sender's phone gave it
    animated: bool = False  # an animated sticker


@dataclass(frozen=True, slots=True)
class Place:
    """A shared location."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Card:
    """A shared contact card."""

    name: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str
    user: str  # stable user key: history, claims and the ordering key use it
    to: str  # the address replies go to (phone number, else the business-scoped user id)
    phone_number_id: str  # our business number that received the message
    type: str  # Meta's message type (unknown types keep their raw name)
    timestamp: int
    text: str | None = None  # the user's words, or the transcript of a voice note
    profile_name: str | None = None
    context_id: str | None = None
    reply_id: str | None = None  # the id of the reply button or list row the user tapped
    media: MediaRef | None = None
    location: Place | None = None
    contacts: tuple[Card, ...] = ()
    transcript: bool = False  # text is the transcript of a voice note
    transcription_error: str | None = None  # the voice note could not be transcribed: why
    refused: str | None = None  # a guardrail stopped it before the model: NOT_ALLOWED, ECHO, ...
    audio_seconds: float | None = None  # a voice note's length, for the daily voice limit
    v: int = field(default=VERSION)

    @classmethod
    def from_message(cls, message: Message) -> Envelope:
        media, place = message.media, message.location
        return cls(
            message_id=message.id,
            user=message.user,
            to=message.reply_to,
            phone_number_id=message.phone_number_id,
            type=message.raw_type,
            timestamp=message.timestamp,
            text=message.text,
            profile_name=message.profile_name,
            context_id=message.context_id,
            reply_id=message.reply.id if message.reply else None,
            media=MediaRef(
                media.id, media.mime_type, media.sha256, media.voice, media.filename, media.animated
            )
            if media
            else None,
            location=Place(place.latitude, place.longitude, place.name, place.address) if place else None,
            contacts=tuple(Card(c.name, c.phones, c.emails, c.organization) for c in message.contacts),
        )

    def with_transcript(self, text: str) -> Envelope:
        return replace(self, text=text, transcript=True, transcription_error=None)

    def with_transcription_error(self, reason: str) -> Envelope:
        return replace(self, text=None, transcript=True, transcription_error=reason)

    @property
    def attributes(self) -> dict[str, str]:
        return {"message_id": self.message_id, "type": self.type}

    def to_bytes(self) -> bytes:
        """Compact JSON without the unset fields (None, False, no cards); built field by field,
        since `dataclasses.asdict` deep-copies every value and the webhook encodes one per message."""
        data: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None and value is not False and value != ():
                data[name] = _plain(value)
        return _encode(data).encode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Envelope:
        """Decode; raises ValueError on anything that is not a valid envelope."""
        try:
            known = _known(cls, json.loads(data))
            media, place = known.pop("media", None), known.pop("location", None)
            cards = known.pop("contacts", None) or []
            return cls(
                **known,
                media=MediaRef(**_known(MediaRef, media)) if media else None,
                location=Place(**_known(Place, place)) if place else None,
                contacts=tuple(_card(card) for card in cards),
            )
        except (TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a message envelope: {exc}") from exc


_FIELDS = tuple(f.name for f in fields(Envelope))
_RECORDS = (MediaRef, Place, Card)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # built once, not per call


def _plain(value: Any) -> Any:
    """What `asdict` makes of a field: records as dicts of every field, tuples as lists."""
    if isinstance(value, _RECORDS):
        return {name: _plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _card(raw: Any) -> Card:
    fields = _known(Card, raw)
    for key in ("phones", "emails"):
        fields[key] = tuple(str(v) for v in fields.get(key) or ())
    return Card(**fields)


def _known(record: type, raw: Any) -> dict[str, Any]:
    """The keys this version knows; what a newer version added (at any level) is ignored."""
    if not isinstance(raw, dict):
        raise TypeError(f"expected an object, got {type(raw).__name__}")
    return {k: v for k, v in raw.items() if k in record.__dataclass_fields__}
