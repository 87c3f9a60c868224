"""What the user's turn is for the model: their words, or content parts made from what they sent.

One entry point for the responder: `Inputs.request(envelope)` says, without any download, whether
the message becomes a model turn; `Request.reading()` then makes it: text as it is, a location or a
contact card as words, an image as an `image_url` part, a PDF as a `file` part, a text document as
text. Each turn also gets a short text stand-in, which is what the history keeps: media bytes are
never stored, and a redelivery fetches them again (with a fresh url) only if it needs them.
Media that cannot be read for good raises `Unanswerable` with the reply that says why: whatever
the user sent is answered at the first attempt (a file no parser can read is unsupported, never
retried). Retriable Graph failures propagate (Pub/Sub redelivers), and so does NoRoom: a media
turn holds its share of the instance's memory (media_memory.py) from before its download until
`Request.reading` ends, after the model has answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from common import config, log
from common.bus.envelope import Card, Envelope, Place
from common.meta import filefacts, media
from common.meta.graph import GraphClient
from common.responder.media_memory import MediaMemory, data_url
from common.responder.texts import Texts

WORD_TYPES = frozenset({"text", "interactive", "button"})
IMAGE_TYPES = frozenset({"image", "sticker"})
IMAGE_FORMATS = {media.JPEG: "JPEG", media.PNG: "PNG", media.WEBP: "WebP", media.GIF: "GIF"}
TEXT_FILES = {"txt": "text/plain", "csv": "text/csv", "md": "text/markdown", "json": "application/json"}
TEXT_MIME_TYPES = frozenset({*TEXT_FILES.values(), "text/x-markdown", "application/x-ndjson"})
TEXT_DOCUMENT_CHARS = 60_000  # of a text document, sent to the model (~15,000 tokens)
MB = 1024 * 1024

Content = str | list[dict[str, Any]]
Reserve = Callable[[int], None]  # called with a media's size before it is downloaded


@dataclass(frozen=True, slots=True)
class Limits:
    image_bytes: int  # WhatsApp's own limit for images is 5 MB
    document_bytes: int
    document_pages: int

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            image_bytes=int(config.number("MAX_IMAGE_BYTES", 5 * MB)),
            document_bytes=int(config.number("MAX_DOCUMENT_BYTES", 20 * MB)),
            document_pages=int(config.number("MAX_DOCUMENT_PAGES", 100)),
        )


@dataclass(frozen=True, slots=True)
class Turn:
    content: Content  # the user's turn as the model gets it
    stand_in: str  # what the history keeps of it (never media bytes)
    model: str | None = None  # a vision-capable model for image and file parts; None: the chat model
    timeout: float | None = None  # seconds one model call may take (images and PDFs are slower)
    refused: str | None = None  # the reply when the model refuses this turn (400), if not the usual


class Unanswerable(Exception):
    """The media cannot be read and a retry cannot help; `reply` tells the user why."""

    def __init__(self, reason: str, reply: str) -> None:
        super().__init__(reason)
        self.reason, self.reply = reason, reply


class Inputs:
    def __init__(
        self,
        graph: GraphClient,
        texts: Texts,
        limits: Limits,
        vision_model: str | None,
        vision_timeout: float,
        memory: MediaMemory,
    ) -> None:
        self.graph, self.texts, self.limits = graph, texts, limits
        self.vision_model, self.vision_timeout = vision_model, vision_timeout
        self.memory = memory  # shared by the instance's threads

    @classmethod
    def from_env(cls, graph: GraphClient, texts: Texts) -> Inputs:
        vision = config.get("VISION_MODEL") or config.get("OPENAI_MODEL")
        timeout = config.number("VISION_TIMEOUT_SECONDS", 90)
        return cls(graph, texts, Limits.from_env(), vision, timeout, MediaMemory.from_env())

    def request(self, envelope: Envelope) -> Request | None:
        """The turn to make for the model, not yet read; None when a fixed reply fits better."""
        text = (envelope.text or "").strip()
        if envelope.transcript:
            return Request(self, envelope) if text else None
        if envelope.type in WORD_TYPES:
            return Request(self, envelope) if text else None
        if envelope.type == "location" and envelope.location:
            return Request(self, envelope)
        if envelope.type == "contacts" and envelope.contacts:
            return Request(self, envelope)
        if envelope.type in (*IMAGE_TYPES, "document") and envelope.media:
            return Request(self, envelope)
        return None

    def read(self, envelope: Envelope, reserve: Reserve | None = None) -> Turn:
        """The turn; `reserve(size)` is called before a media download (Request.reading's share)."""
        text = (envelope.text or "").strip()
        if envelope.transcript:
            words = self.texts.voice_turn(text)
            return Turn(words, words)
        if envelope.type == "location" and envelope.location:
            words = place_words(envelope.location)
            return Turn(words, words)
        if envelope.type == "contacts":
            words = contact_words(envelope.contacts)
            return Turn(words, words)
        if envelope.type in IMAGE_TYPES:
            return self._image(envelope, text, reserve)
        if envelope.type == "document":
            return self._document(envelope, text, reserve)
        return Turn(text, text)

    def _image(self, envelope: Envelope, caption: str, reserve: Reserve | None) -> Turn:
        ref = envelope.media
        assert ref is not None
        if envelope.type == "sticker" and ref.animated:  # a mood, not a picture to describe
            return Turn("[The user sent an animated sticker.]", "[animated sticker]")
        fetched = self._fetch(envelope, self.limits.image_bytes, reserve)
        kind = media.sniff(fetched.data)
        if kind not in IMAGE_FORMATS:
            raise self._unsupported(envelope, kind)
        what = "sticker" if envelope.type == "sticker" else "image"
        if filefacts.animated(fetched.data):  # the model takes still images only
            return Turn(f"[The user sent an animated {what}.]", f"[animated {what}]")
        size = filefacts.image_size(fetched.data)
        if size is None:  # a header no reader understands (a cut-off file): the model could not see it
            raise self._unsupported(envelope, f"unreadable {kind}")
        stand_in = f"[{what}: {IMAGE_FORMATS[kind]}, {size[0]}x{size[1]}, {human(len(fetched.data))}]"
        log.info("media read", message_id=envelope.message_id, format=kind, bytes=len(fetched.data))
        parts = [
            {"type": "text", "text": caption or self.texts.image_prompt},
            {"type": "image_url", "image_url": {"url": data_url(kind, fetched.data)}},
        ]
        return self._for_vision(parts, _with_caption(stand_in, caption))

    def _for_vision(self, parts: Content, stand_in: str) -> Turn:
        """Image and PDF parts go to VISION_MODEL, with its longer timeout and refusal reply."""
        return Turn(parts, stand_in, self.vision_model, self.vision_timeout, self.texts.media_refused)

    def _document(self, envelope: Envelope, caption: str, reserve: Reserve | None) -> Turn:
        ref = envelope.media
        assert ref is not None
        name = (ref.filename or "document").strip()[:120]
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        declared = (ref.mime_type or "").split(";")[0].strip().lower()
        if (
            declared != media.PDF
            and declared not in TEXT_MIME_TYPES
            and extension not in ("pdf", *TEXT_FILES)
        ):
            raise self._unsupported(envelope, declared or None)  # refused before any download
        fetched = self._fetch(envelope, self.limits.document_bytes, reserve)
        kind, size = media.sniff(fetched.data), human(len(fetched.data))
        instruction = caption or self.texts.document_prompt
        if kind == media.PDF:
            pages = filefacts.pdf_pages(fetched.data)
            if pages is None:
                raise self._unsupported(envelope, "unreadable pdf")
            if pages > self.limits.document_pages:
                log.warning("document refused", message_id=envelope.message_id, reason="pages", pages=pages)
                raise Unanswerable("too_many_pages", self._too_large())
            read = {"format": kind, "bytes": len(fetched.data), "pages": pages}
            log.info("media read", message_id=envelope.message_id, **read)
            parts = [
                {"type": "text", "text": instruction},
                {
                    "type": "file",
                    "file": {"filename": _pdf_name(name), "file_data": data_url(kind, fetched.data)},
                },
            ]
            plural = "s" if pages != 1 else ""
            stand_in = f'[document "{name}": PDF, {pages} page{plural}, {size}]'
            return self._for_vision(parts, _with_caption(stand_in, caption))
        if kind == media.TEXT and (extension in TEXT_FILES or declared in TEXT_MIME_TYPES):
            head = fetched.data[: TEXT_DOCUMENT_CHARS * 4 + 4]  # enough: UTF-8 takes 1-4 bytes a character
            whole = len(head) == len(fetched.data)
            log.info("media read", message_id=envelope.message_id, format=kind, bytes=len(fetched.data))
            fetched.data.clear()  # only the head is read: the rest is freed at once
            body = head.decode("utf-8", errors="replace").lstrip("\ufeff")
            longer = len(body) > TEXT_DOCUMENT_CHARS or not whole
            cut = f" (the first {TEXT_DOCUMENT_CHARS} characters)" if longer else ""
            words = f'{instruction}\n\nThe file "{name}"{cut}:\n\n{body[:TEXT_DOCUMENT_CHARS]}'
            stand_in = f'[document "{name}": text, {size}]'
            return Turn(words, _with_caption(stand_in, caption), refused=self.texts.media_refused)
        raise self._unsupported(envelope, kind)

    def _fetch(self, envelope: Envelope, limit: int, reserve: Reserve | None) -> media.Buffered:
        assert envelope.media is not None
        try:
            return media.fetch_buffer(self.graph, envelope.media.id, limit, reserve)
        except media.Unfetchable as exc:  # a token error is a GraphError: retried, never answered
            log.warning(
                "media not read", message_id=envelope.message_id, type=envelope.type, reason=exc.reason
            )
            if exc.reason == media.TOO_LARGE:
                raise Unanswerable(exc.reason, self._too_large()) from exc
            raise Unanswerable(exc.reason, self.texts.media_failed) from exc

    def _unsupported(self, envelope: Envelope, found: str | None) -> Unanswerable:
        fields = {"type": envelope.type, "reason": "unsupported", "format": found}
        log.warning("media not read", message_id=envelope.message_id, **fields)
        return Unanswerable("unsupported", self.texts.unsupported_file)

    def _too_large(self) -> str:
        return (
            self.texts.media_too_large.replace("{image_mb}", _mb(self.limits.image_bytes))
            .replace("{document_mb}", _mb(self.limits.document_bytes))
            .replace("{pages}", str(self.limits.document_pages))
        )


@dataclass(frozen=True, slots=True)
class Request:
    """A model turn to be made: `reading()` downloads the media, if any (slow: run it under the
    typing indicator, and only when no stored reply makes it unnecessary)."""

    inputs: Inputs
    envelope: Envelope

    @contextmanager
    def reading(self, deadline: float) -> Iterator[Turn]:
        """The turn, for the block that asks the model. Media holds its share of the instance's
        memory (waiting for it at most half of what is left before `deadline`, else NoRoom) until
        the block ends; then its parts are emptied, so the data URL goes with the share."""
        with ExitStack() as held:

            def reserve(size: int) -> None:
                wait = (deadline - time.monotonic()) / 2
                held.enter_context(self.inputs.memory.held(size, wait))

            turn = self.inputs.read(self.envelope, reserve)
            try:
                yield turn
            finally:
                if isinstance(turn.content, list):
                    turn.content.clear()


def place_words(place: Place) -> str:
    named = ", ".join(filter(None, (place.name, place.address)))
    at = f"latitude {place.latitude:.6f}, longitude {place.longitude:.6f}"
    return f"[The user shared a location: {named} ({at})]" if named else f"[The user shared a location: {at}]"


def contact_words(cards: tuple[Card, ...]) -> str:
    described = []
    for card in cards:
        facts = [card.name or "no name"]
        facts += [f"phone {phone}" for phone in card.phones]
        facts += [f"email {email}" for email in card.emails]
        if card.organization:
            facts.append(f"organization {card.organization}")
        described.append(", ".join(facts))
    noun = "a contact" if len(cards) == 1 else f"{len(cards)} contacts"
    return f"[The user shared {noun}: " + "; ".join(described) + "]"


def human(size: int) -> str:
    """A byte count as people read it: 878 bytes, 9.1 KB, 2.4 MB."""
    if size < 1024:
        return f"{size} bytes"
    if size < MB:
        return f"{size / 1024:.1f} KB"
    return f"{size / MB:.1f} MB"


def _mb(size: int) -> str:
    return f"{size / MB:g}" if size % MB == 0 else f"{size / MB:.1f}"


def _with_caption(stand_in: str, caption: str) -> str:
    return f"{stand_in} {caption}" if caption else stand_in


def _pdf_name(name: str) -> str:
    return name if name.lower().endswith(".pdf") else f"{name}.pdf"
