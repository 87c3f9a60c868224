"""Voice notes: the audio formats WhatsApp sends, told from their first bytes, and their fetch.

The fetch itself (metadata, size check, capped download, host rules) is common.meta.media's.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.ai.transcription.errors import UNDECODABLE, Failed
from common.meta import media
from common.meta.graph import GraphClient


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    mime_type: str
    openai_ext: str | None  # the extension OpenAI accepts it under; None: convert to OGG/Opus first
    demuxer: str  # ffmpeg input format (`-f`), so ffmpeg does not guess from the bytes


# What WhatsApp sends as audio (aac, amr, mp3, mp4/m4a, ogg/opus); ffmpeg decodes every one.
OGG = Format("ogg", "audio/ogg", "ogg", "ogg")
MP4 = Format("mp4", "audio/mp4", "m4a", "mp4")
MP3 = Format("mp3", "audio/mpeg", "mp3", "mp3")
AAC = Format("aac", "audio/aac", None, "aac")  # raw ADTS: not in OpenAI's list
AMR = Format("amr", "audio/amr", None, "amr")
AMR_WB = Format("amr-wb", "audio/amr-wb", None, "amr")


def sniff(data: bytes) -> Format | None:
    """The container, from its magic bytes: the declared mime type is not trusted to decode."""
    head = data[:12]
    if head.startswith(b"OggS"):
        return OGG
    if head[4:8] == b"ftyp":
        return MP4
    if head.startswith(b"#!AMR-WB\n"):
        return AMR_WB
    if head.startswith(b"#!AMR\n"):
        return AMR
    if head.startswith(b"ID3"):
        return MP3
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer bits 00
            return AAC
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # MPEG audio frame sync, layer I-III
            return MP3
    return None


@dataclass(frozen=True, slots=True)
class Audio:
    data: bytes
    format: Format
    mime_type: str  # as the Graph API declared it (logged, not trusted)


def fetch(graph: GraphClient, media_id: str, limit: int) -> Audio:
    """The voice note through common.meta.media, told by its bytes; Failed for what a retry cannot fix.

    A retriable GraphError (timeouts, 5xx, throttling) or a token error (an outage, alerted)
    propagates for Pub/Sub to redeliver.
    """
    try:
        fetched = media.fetch(graph, media_id, limit)
    except media.Unfetchable as exc:
        raise Failed(exc.reason, exc.detail) from exc
    found = sniff(fetched.data)
    if found is None:
        raise Failed(UNDECODABLE, f"{len(fetched.data)} bytes of no known audio format ({fetched.mime_type})")
    return Audio(fetched.data, found, fetched.mime_type)
