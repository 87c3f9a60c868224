"""The two ways a transcription stops: for good (tell the user) or for now (let Pub/Sub retry)."""

from __future__ import annotations

# Reasons carried by a transcription-failure envelope (`Envelope.transcription_error`).
TOO_LARGE = "too_large"  # the media is over MAX_AUDIO_BYTES (declared or while downloading)
TOO_LONG = "too_long"  # longer than MAX_AUDIO_SECONDS (every backend), or over 25 MB as OGG
UNDECODABLE = "undecodable"  # not audio in a format we know, or a broken file
NO_SPEECH = "no_speech"  # decoded, but nothing was recognised
MEDIA_UNAVAILABLE = "media_unavailable"  # refused for good (gone, not ours) or a url we refuse
REJECTED = "rejected"  # the speech service refused this request (a 4xx not an outage)
NO_MEDIA = "no_media"  # the envelope carries no media reference


class Failed(Exception):
    """A retry cannot help: the user gets a failure envelope carrying `reason`, and the event is acked."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class Unavailable(Exception):
    """The speech service failed in a way a later attempt can fix (timeout, 429, 5xx): raise, retry."""
