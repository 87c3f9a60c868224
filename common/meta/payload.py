"""Typed, immutable records for what Meta's webhook POSTs: messages, statuses, value-level errors.

Parsing is tolerant: optional blocks may be missing, unknown types and statuses parse as
UNKNOWN, and one malformed item becomes a `Problem` without dropping its neighbours.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from common.meta.payload_items import (
    ErrorDetail,
    Location,
    Media,
    Reaction,
    Reply,
    SharedContact,
    as_text,
    parse_contacts,
    parse_errors,
    parse_location,
    parse_media,
    parse_reaction,
    parse_reply,
)

__all__ = [
    "ChangeError",
    "ErrorDetail",
    "Location",
    "Media",
    "Message",
    "MessageType",
    "Notification",
    "Problem",
    "Reaction",
    "Reply",
    "SharedContact",
    "Status",
    "StatusType",
    "parse_notification",
]

BUSINESS_OBJECT = "whatsapp_business_account"


class MessageType(enum.StrEnum):
    TEXT = "text"
    AUDIO = "audio"
    IMAGE = "image"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    REACTION = "reaction"
    ORDER = "order"
    SYSTEM = "system"
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> MessageType:
        return cls.UNKNOWN


class StatusType(enum.StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> StatusType:
        return cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class Message:
    """One inbound message. `user` is the stable key: the business-scoped user id, else the phone."""

    id: str
    type: MessageType
    raw_type: str
    user: str
    phone: str | None  # wa_id / from, absent for users who only come with a user id
    user_id: str | None  # business-scoped user id (BSUID)
    timestamp: int
    phone_number_id: str
    profile_name: str | None = None
    context_id: str | None = None  # the message this one replies to
    text: str | None = None  # the user's words: body, caption, reply title, button text
    media: Media | None = None
    location: Location | None = None
    reply: Reply | None = None
    reaction: Reaction | None = None
    contacts: tuple[SharedContact, ...] = ()  # contact cards the user shared (type contacts)
    errors: tuple[ErrorDetail, ...] = ()

    @property
    def reply_to(self) -> str:
        """The address a reply is sent to."""
        return self.phone or self.user


@dataclass(frozen=True, slots=True)
class Status:
    """A delivery report for a message the bot sent."""

    message_id: str
    status: StatusType
    raw_status: str
    recipient: str
    timestamp: int
    phone_number_id: str
    conversation_id: str | None = None
    pricing_category: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    callback: str | None = None  # the `biz_opaque_callback_data` the message was sent with


@dataclass(frozen=True, slots=True)
class ChangeError:
    """An error Meta reports for the whole change (not tied to one message)."""

    phone_number_id: str
    errors: tuple[ErrorDetail, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """An item we could not parse: where it was and why, so it can be logged and skipped."""

    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class Notification:
    messages: tuple[Message, ...] = ()
    statuses: tuple[Status, ...] = ()
    errors: tuple[ChangeError, ...] = ()
    problems: tuple[Problem, ...] = ()


class NotWhatsApp(ValueError):
    """The body is JSON but not a WhatsApp Business Account notification."""


def parse_notification(body: Any) -> Notification:
    """Walk every entry, change and item; collect what parses and a Problem for what does not."""
    if not isinstance(body, dict) or body.get("object") != BUSINESS_OBJECT:
        raise NotWhatsApp("object is not 'whatsapp_business_account'")
    messages: list[Message] = []
    statuses: list[Status] = []
    errors: list[ChangeError] = []
    problems: list[Problem] = []
    if not isinstance(body.get("entry"), list):
        problems.append(Problem("entry", "entry is not a list"))
    for e, entry in enumerate(_list(body.get("entry"))):
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            problems.append(Problem(f"entry[{e}]", "entry has no changes list"))
            continue
        for c, change in enumerate(entry["changes"]):
            where = f"entry[{e}].changes[{c}]"
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                problems.append(Problem(where, "change has no value object"))
                continue
            _parse_value(value, where, messages, statuses, errors, problems)
    return Notification(tuple(messages), tuple(statuses), tuple(errors), tuple(problems))


def _parse_value(
    value: dict[str, Any],
    where: str,
    messages: list[Message],
    statuses: list[Status],
    errors: list[ChangeError],
    problems: list[Problem],
) -> None:
    metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    phone_number_id = str(metadata.get("phone_number_id") or "")
    contacts = [c for c in _list(value.get("contacts")) if isinstance(c, dict)]
    for key in ("messages", "statuses"):
        if key in value and not isinstance(value[key], list):
            problems.append(Problem(f"{where}.{key}", f"{key} is not a list"))
    if not any(value.get(key) for key in ("messages", "statuses", "errors", "message_echoes")):
        problems.append(Problem(where, "change holds no messages, statuses or errors"))
    for i, item in enumerate(_list(value.get("messages"))):
        if not phone_number_id.isdigit():  # no business number: a reply could go nowhere
            problems.append(Problem(f"{where}.messages[{i}]", "no metadata.phone_number_id"))
            continue
        try:
            messages.append(_parse_message(item, phone_number_id, contacts))
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(Problem(f"{where}.messages[{i}]", _reason(exc)))
    for i, item in enumerate(_list(value.get("statuses"))):
        try:
            statuses.append(_parse_status(item, phone_number_id))
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(Problem(f"{where}.statuses[{i}]", _reason(exc)))
    if value.get("errors"):
        errors.append(ChangeError(phone_number_id, parse_errors(value["errors"])))


def _parse_message(item: Any, phone_number_id: str, contacts: list[dict[str, Any]]) -> Message:
    if not isinstance(item, dict):
        raise TypeError(f"message is a {type(item).__name__}, not an object")
    message_id, raw_type = _required_str(item, "id"), _required_str(item, "type")
    _check_shape(item, message_id, raw_type)
    phone = as_text(item.get("from"))
    user_id = as_text(item.get("from_user_id")) or as_text(item.get("user_id"))
    contact = _contact_for(contacts, phone, user_id)
    if contact:
        phone = phone or as_text(contact.get("wa_id"))
        user_id = user_id or as_text(contact.get("user_id"))
    user = user_id or phone
    if not user:
        raise ValueError("message has no sender (from, from_user_id)")
    kind = MessageType(raw_type)
    body = item.get(raw_type) if isinstance(item.get(raw_type), dict) else {}
    media = parse_media(body) if kind in _MEDIA_TYPES else None
    reply = parse_reply(kind.value, body) if kind in (MessageType.INTERACTIVE, MessageType.BUTTON) else None
    context = item.get("context") if isinstance(item.get("context"), dict) else {}
    profile = contact.get("profile") if contact and isinstance(contact.get("profile"), dict) else {}
    return Message(
        id=message_id,
        type=kind,
        raw_type=raw_type,
        user=user,
        phone=phone,
        user_id=user_id,
        timestamp=_int(item.get("timestamp")),
        phone_number_id=phone_number_id,
        profile_name=as_text(profile.get("name")),
        context_id=as_text(context.get("id")),
        text=_words(kind, body, media, reply),
        media=media,
        location=parse_location(body) if kind is MessageType.LOCATION else None,
        reply=reply,
        reaction=parse_reaction(body) if kind is MessageType.REACTION else None,
        contacts=parse_contacts(item.get("contacts")) if kind is MessageType.CONTACTS else (),
        errors=parse_errors(item.get("errors")),
    )


_MESSAGE_ID = re.compile(r"wamid\.[A-Za-z0-9+/=_-]{1,250}")
_TYPE = re.compile(r"[a-z_]{1,40}")
_PHONE = re.compile(r"\d{5,20}")
_USER_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_EARLIEST = 1_000_000_000  # 2001: before any WhatsApp message


def _check_shape(item: dict[str, Any], message_id: str, raw_type: str) -> None:
    """Refuse an item whose ids, sender, time or text are not what Meta sends: nobody may be answered
    on the strength of a malformed item (a type we do not know yet is fine)."""
    if not isinstance(item["id"], str) or not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError("id is not a WhatsApp message id")
    if not isinstance(item["type"], str) or not _TYPE.fullmatch(raw_type):
        raise ValueError("type is not a message type name")
    sender = item.get("from")
    if sender not in (None, "") and not (isinstance(sender, str) and _PHONE.fullmatch(sender)):
        raise ValueError("from is not a phone number")
    for key in ("from_user_id", "user_id"):
        user_id = item.get(key)
        if user_id not in (None, "") and not (isinstance(user_id, str) and _USER_ID.fullmatch(user_id)):
            raise ValueError(f"{key} is not a user id")
    stamp = item.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, str | int) or not str(stamp).isdigit():
        raise ValueError("timestamp is not a number of seconds")
    if int(stamp) < _EARLIEST:
        raise ValueError("timestamp is too early")
    if raw_type == "text":
        body = item.get("text")
        words = body.get("body") if isinstance(body, dict) else None
        if not isinstance(words, str) or not words.strip():
            raise ValueError("text message without a body")


_MEDIA_TYPES = frozenset(
    {
        MessageType.AUDIO,
        MessageType.IMAGE,
        MessageType.VIDEO,
        MessageType.DOCUMENT,
        MessageType.STICKER,
    }
)


def _words(kind: MessageType, body: dict[str, Any], media: Media | None, reply: Reply | None) -> str | None:
    """What the user wrote, whatever the message type carries it in."""
    if kind is MessageType.TEXT:
        return as_text(body.get("body"))
    if reply is not None:
        return reply.text
    if media is not None:
        return media.caption
    if kind in (MessageType.SYSTEM, MessageType.ORDER):
        return as_text(body.get("body") or body.get("text"))
    return None


def _parse_status(item: Any, phone_number_id: str) -> Status:
    if not isinstance(item, dict):
        raise TypeError(f"status is a {type(item).__name__}, not an object")
    raw_status = _required_str(item, "status")
    conversation = item.get("conversation") if isinstance(item.get("conversation"), dict) else {}
    pricing = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
    return Status(
        message_id=_required_str(item, "id"),
        status=StatusType(raw_status),
        raw_status=raw_status,
        recipient=as_text(item.get("recipient_id")) or as_text(item.get("recipient_user_id")) or "",
        timestamp=_int(item.get("timestamp")),
        phone_number_id=phone_number_id,
        conversation_id=as_text(conversation.get("id")),
        pricing_category=as_text(pricing.get("category")),
        errors=parse_errors(item.get("errors")),
        callback=as_text(item.get("biz_opaque_callback_data")),
    )


def _contact_for(
    contacts: list[dict[str, Any]], phone: str | None, user_id: str | None
) -> dict[str, Any] | None:
    """The contacts[] entry of this sender; the only one when there is just one."""
    for contact in contacts:
        if (phone and contact.get("wa_id") == phone) or (user_id and contact.get("user_id") == user_id):
            return contact
    return contacts[0] if len(contacts) == 1 else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _required_str(item: dict[str, Any], key: str) -> str:
    value = as_text(item.get(key))
    if not value:
        raise KeyError(f"missing '{key}'")
    return value


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _reason(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__
