"""Fetch one WhatsApp media object: metadata, size check, streamed capped download, host rules.

Shared by everything that reads media (the transcriber's voice notes today). The download url
expires within minutes, so it is asked for afresh on every attempt; the declared size is checked
before a single byte is downloaded, and the download itself stops past the declared size (else
the limit) in case the declaration was wrong. The bytes land in one buffer of that size
(`fetch_buffer`: no list of chunks and no join; `fetch` makes bytes of it, one copy). The token
goes only where `graph.download_allowed` says it may.
What the bytes are is for the caller to sniff: the declared mime type is logged, never trusted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from common import log
from common.meta.graph import DownloadRefused, GraphClient, GraphError, MediaTooLarge, alert_auth

TOO_LARGE = "too_large"  # declared or downloaded size over the limit
UNAVAILABLE = "media_unavailable"  # the Graph API refused it for good, or named a url we refuse


class Unfetchable(Exception):
    """A retry cannot help (this media, not the token): `reason` is TOO_LARGE or UNAVAILABLE."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    mime_type: str  # as the Graph API declared it (logged, not trusted)


@dataclass(frozen=True, slots=True)
class Buffered:
    """The media in the download's own buffer: the caller may `clear()` it to free the memory at once."""

    data: bytearray
    mime_type: str  # as the Graph API declared it (logged, not trusted)


def fetch(graph: GraphClient, media_id: str, limit: int) -> Media:
    """The media's bytes, at most `limit` of them; Unfetchable for what a retry cannot fix.

    A retriable GraphError (timeouts, 5xx, throttling) propagates for Pub/Sub to redeliver, and so
    does a token or permission error (an outage, alerted here): a retry after the fix gets the media.
    """
    found = fetch_buffer(graph, media_id, limit)
    return Media(bytes(found.data), found.mime_type)  # the copy replaces the buffer, as a join would


def fetch_buffer(
    graph: GraphClient, media_id: str, limit: int, before_download: Callable[[int], object] | None = None
) -> Buffered:
    """fetch() without the copy to bytes. `before_download(size)` runs between the media info and
    the download, with the most the download may hold (the declared size, else `limit`): the
    responder reserves that much of the instance's memory there (and may raise to stop)."""
    try:
        info = graph.media_info(media_id)
        if info.file_size is not None and info.file_size > limit:
            raise Unfetchable(TOO_LARGE, f"declared {info.file_size} bytes, limit {limit}")
        if before_download is not None:
            before_download(limit if info.file_size is None else info.file_size)
        # outgrowing its declared size is refused as too large: no more is held than was reserved
        cap = limit if info.file_size is None else info.file_size
        return Buffered(graph.download(info.url, cap, info.file_size), info.mime_type)
    except MediaTooLarge as exc:
        raise Unfetchable(TOO_LARGE, str(exc)) from exc
    except DownloadRefused as exc:
        log.error("media download url refused: the token goes nowhere else", host=exc.host, scheme=exc.scheme)
        raise Unfetchable(UNAVAILABLE, exc.title) from exc
    except GraphError as exc:
        if exc.auth:
            alert_auth(exc)
        if exc.retriable or exc.auth:
            raise
        raise Unfetchable(UNAVAILABLE, str(exc)) from exc


# What images and documents are, from their first bytes (audio: common/ai/transcription/audio.py).
JPEG, PNG, WEBP, GIF = "image/jpeg", "image/png", "image/webp", "image/gif"
PDF, ZIP, TEXT = "application/pdf", "application/zip", "text/plain"  # docx, xlsx, odt... are zips


def sniff(data: bytes | bytearray) -> str | None:
    """The mime type the bytes really are (magic numbers; UTF-8 without NULs is text), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if data[:1024].lstrip(b"\x00\t\n\r ").startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        return ZIP
    if data and b"\x00" not in data[:65536]:
        try:
            data[:65536].decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < 65536 - 4:  # a character cut at the sample's end is fine
                return None
        return TEXT
    return None
