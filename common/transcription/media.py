"""Fetch a voice note from the Graph API and tell its format from its first bytes.

The download url expires within minutes, so it is asked for afresh on every attempt; the
declared size is checked before a single byte is downloaded, and the download itself stops
at the limit in case the declaration was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.graph import GraphClient, GraphError, MediaTooLarge
from common.transcription.errors import MEDIA_UNAVAILABLE, TOO_LARGE, UNDECODABLE, Failed


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    mime_type: str
    openai_ext: str | None  # the extension OpenAI accepts it under; None: convert to OGG/Opus first
    demuxer: str  # ffmpeg input format (pydub's `format=`)
    codec: str  # ffmpeg decoder, named so that pydub does not call ffprobe (not in the wheel)


# What WhatsApp sends as audio (aac, amr, mp3, mp4/m4a, ogg/opus). OGG goes through soundfile.
OGG = Format("ogg", "audio/ogg", "ogg", "ogg", "libopus")
MP4 = Format("mp4", "audio/mp4", "m4a", "mp4", "aac")
MP3 = Format("mp3", "audio/mpeg", "mp3", "mp3", "mp3")
AAC = Format("aac", "audio/aac", None, "aac", "aac")  # raw ADTS: not in OpenAI's list
AMR = Format("amr", "audio/amr", None, "amr", "amrnb")
AMR_WB = Format("amr-wb", "audio/amr-wb", None, "amr", "amrwb")


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
    """Metadata, size check, streamed download, format check; Failed for what a retry cannot fix.

    A retriable GraphError (timeouts, 5xx, throttling) propagates for Pub/Sub to redeliver.
    """
    try:
        info = graph.media_info(media_id)
        if info.file_size is not None and info.file_size > limit:
            raise Failed(TOO_LARGE, f"declared {info.file_size} bytes, limit {limit}")
        data = graph.download(info.url, limit)
    except MediaTooLarge as exc:
        raise Failed(TOO_LARGE, str(exc)) from exc
    except GraphError as exc:
        if exc.retriable:
            raise
        raise Failed(MEDIA_UNAVAILABLE, str(exc)) from exc
    found = sniff(data)
    if found is None:
        raise Failed(UNDECODABLE, f"{len(data)} bytes of no known audio format ({info.mime_type})")
    return Audio(data, found, info.mime_type)
