"""Text -> a WhatsApp voice note through the openai SDK's audio.speech, sorted into retry / give up.

Asks for `response_format="opus"` and keeps the bytes as they come when they already are what
WhatsApp plays as a voice note (OGG/Opus, mono, at most MAX_BYTES); anything else is re-encoded
once with ffmpeg at VOICE_REPLY_BITRATE (common/ai/oggopus.py). 429, 5xx and timeouts are retried
within the attempt's deadline (`OPENAI_MAX_RETRIES`), as the chat model's are, and then become
SpeechUnavailable (Pub/Sub redelivers), as does an outage (key, permission, quota, TTS_MODEL not
found: alerted, common/ai/openai_client.py); any other 4xx, or audio that cannot become a voice
note, is SpeechRefused (the reply goes out as text).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from common import config
from common.ai import oggopus, openai_client
from common.ai.openai_client import Kind

MAX_BYTES = 500 * 1024  # WhatsApp shows the voice-note player up to about 512 KB: keep a margin
MAX_INPUT_CHARS = 4096  # audio.speech's input limit


class SpeechUnavailable(Exception):
    """Rate limited, 5xx, timeout or unreachable after the retries, or an outage (alerted):
    Pub/Sub should retry."""


class SpeechRefused(Exception):
    """A 4xx (bad voice, unknown model, policy) or audio that is no voice note: answer in text."""


@dataclass(frozen=True, slots=True)
class VoiceNote:
    data: bytes  # OGG/Opus, mono, at most MAX_BYTES
    seconds: float
    reencoded: bool  # False: the service's bytes as they came


class Speech:
    def __init__(self) -> None:
        self.model = config.get("TTS_MODEL") or "gpt-4o-mini-tts"
        self.voice = config.get("TTS_VOICE") or "alloy"
        self.instructions = config.get("TTS_INSTRUCTIONS")
        self.bitrate = config.get("VOICE_REPLY_BITRATE") or "24k"
        self.timeout = config.number("TTS_TIMEOUT_SECONDS", 30)
        self.retries = int(config.number("OPENAI_MAX_RETRIES", 2))
        self.client = openai_client.client()  # the instance's one client (shared with the chat model)

    def voice_note(self, text: str, deadline: float) -> VoiceNote:
        """Speak `text` (at most MAX_INPUT_CHARS) as a voice note, all before `deadline`."""
        raw = self._speak(text[:MAX_INPUT_CHARS], deadline)
        found = oggopus.inspect(raw)
        if found is not None and found.channels == 1 and len(raw) <= MAX_BYTES:
            return VoiceNote(raw, found.seconds, reencoded=False)
        try:
            data = oggopus.to_voice_note(raw, self.bitrate)
        except oggopus.NotEncodable as exc:
            raise SpeechRefused(f"the speech audio could not be encoded: {exc}") from exc
        found = oggopus.inspect(data)
        if found is None or found.channels != 1:
            raise SpeechRefused("the encoded audio is not mono OGG/Opus")
        if len(data) > MAX_BYTES:
            raise SpeechRefused(f"{len(data)} bytes at {self.bitrate}b/s: over the voice-note limit")
        return VoiceNote(data, found.seconds, reencoded=True)

    def _speak(self, text: str, deadline: float) -> bytes:
        try:
            return openai_client.within(deadline, self.retries, lambda: self._speak_once(text, deadline))
        except openai_client.sdk_errors() as exc:
            found = openai_client.settle(exc, model=self.model)  # an outage: alerted
            if found.kind in (Kind.BUSY, Kind.OUTAGE):
                raise SpeechUnavailable(str(found)) from exc
            raise SpeechRefused(str(found)) from exc

    def _speak_once(self, text: str, deadline: float) -> bytes:
        """One SDK try, no retries of its own, within what is left of the attempt."""
        left = deadline - time.monotonic()
        if left < 1:
            raise SpeechUnavailable("no time left in this attempt")
        extra = {"instructions": self.instructions} if self.instructions else {}
        speech = self.client.with_options(timeout=min(self.timeout, left), max_retries=0).audio.speech
        answer = speech.create(
            model=self.model, voice=self.voice, input=text, response_format="opus", **extra
        )
        return answer.content
