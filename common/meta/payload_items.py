"""The small blocks a webhook message carries: media, location, replies, reactions, errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Media:
    """A reference to media on Meta's servers; the bytes are fetched later with the media id."""

    id: str
    mime_type: str | None = None
    sha256: str | None = None
    voice: bool = False  # a voice note recorded in WhatsApp, not a forwarded audio file
    caption: str | None = None
    filename: str | None = None
    animated: bool = False


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class SharedContact:
    """A contact card the user shared: what the bot may tell the model about it."""

    name: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A tap on an interactive button/list row or a template quick-reply button."""

    kind: str  # button_reply, list_reply, button, or whatever Meta sends next
    id: str | None = None
    title: str | None = None
    description: str | None = None

    @property
    def text(self) -> str | None:
        """The words the user tapped, as the bot should read them."""
        if self.title and self.description:
            return f"{self.title} ({self.description})"
        return self.title


@dataclass(frozen=True, slots=True)
class Reaction:
    message_id: str | None
    emoji: str | None  # None: the user removed their reaction

    @property
    def removed(self) -> bool:
        return not self.emoji


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    code: int
    title: str | None = None
    message: str | None = None
    details: str | None = None


def parse_media(body: dict[str, Any]) -> Media:
    media_id = as_text(body.get("id"))
    if not media_id:
        raise KeyError("media has no 'id'")
    return Media(
        id=media_id,
        mime_type=as_text(body.get("mime_type")),
        sha256=as_text(body.get("sha256")),
        voice=body.get("voice") is True,
        caption=as_text(body.get("caption")),
        filename=as_text(body.get("filename")),
        animated=body.get("animated") is True,
    )


def parse_location(body: dict[str, Any]) -> Location:
    return Location(
        latitude=_coordinate(body, "latitude"),
        longitude=_coordinate(body, "longitude"),
        name=as_text(body.get("name")),
        address=as_text(body.get("address")),
    )


def _coordinate(body: dict[str, Any], key: str) -> float:
    """float() quotes what it cannot read, and a problem's reason is logged: say only which key."""
    try:
        return float(body[key])
    except (TypeError, ValueError):
        raise ValueError(f"location {key} is not a number") from None


def parse_contacts(raw: Any) -> tuple[SharedContact, ...]:
    """contacts: [{name: {formatted_name}, phones: [{phone}], emails: [{email}], org: {company}}]."""
    cards = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        name = item.get("name") if isinstance(item.get("name"), dict) else {}
        org = item.get("org") if isinstance(item.get("org"), dict) else {}
        cards.append(
            SharedContact(
                name=as_text(name.get("formatted_name"))
                or " ".join(filter(None, (as_text(name.get(k)) for k in ("first_name", "last_name"))))
                or None,
                phones=_values(item.get("phones"), "phone"),
                emails=_values(item.get("emails"), "email"),
                organization=as_text(org.get("company")),
            )
        )
    return tuple(cards)


def _values(raw: Any, key: str) -> tuple[str, ...]:
    found = (
        (as_text(entry.get(key)) for entry in raw if isinstance(entry, dict)) if isinstance(raw, list) else ()
    )
    return tuple(value for value in found if value)


def parse_reply(message_type: str, body: dict[str, Any]) -> Reply | None:
    """Interactive: {type, button_reply|list_reply: {id, title}}; button: {payload, text}."""
    if message_type == "button":
        return Reply("button", id=as_text(body.get("payload")), title=as_text(body.get("text")))
    kind = as_text(body.get("type")) or "unknown"
    block = body.get(kind)
    if not isinstance(block, dict) or not as_text(block.get("title")):
        return Reply(kind)  # e.g. a flow reply or an empty reply: nothing the user said
    return Reply(
        kind,
        id=as_text(block.get("id")),
        title=as_text(block.get("title")),
        description=as_text(block.get("description")),
    )


def parse_reaction(body: dict[str, Any]) -> Reaction:
    return Reaction(message_id=as_text(body.get("message_id")), emoji=as_text(body.get("emoji")))


def parse_errors(raw: Any) -> tuple[ErrorDetail, ...]:
    if not isinstance(raw, list):
        return ()
    errors = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        data = item.get("error_data") if isinstance(item.get("error_data"), dict) else {}
        try:
            code = int(item.get("code"))
        except (TypeError, ValueError):
            code = 0
        errors.append(
            ErrorDetail(
                code=code,
                title=as_text(item.get("title")),
                message=as_text(item.get("message")),
                details=as_text(data.get("details")),
            )
        )
    return tuple(errors)


def as_text(value: Any) -> str | None:
    """A non-empty string (numbers become strings), else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        return None
    return str(value)
