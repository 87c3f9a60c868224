"""Text -> a WhatsApp voice note through OpenAI's /audio/speech, sorted into retry / give up.

Asks for `response_format="opus"` and keeps the bytes as they come when they already are what
WhatsApp plays as a voice note (OGG/Opus, mono, at most MAX_BYTES); anything else is re-encoded
once with ffmpeg at VOICE_REPLY_BITRATE (common/ai/oggopus.py). 429, 5xx and timeouts are retried
here within the attempt's deadline (`OPENAI_MAX_RETRIES`), as the chat model's are, and then
become SpeechUnavailable (Pub/Sub redelivers); any other 4xx, or audio that cannot become a
voice note, is SpeechRefused (the reply goes out as text).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from common import config
from common.ai import oggopus
from common.ai.openai_api import OpenAIClient, StatusError, Unreachable, within

MAX_BYTES = 500 * 1024  # WhatsApp shows the voice-note player up to about 512 KB: keep a margin
MAX_INPUT_CHARS = 4096  # audio.speech's input limit


class SpeechUnavailable(Exception):
    """Rate limited, 5xx, timeout or unreachable after the retries: Pub/Sub should retry."""


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
        self.client = OpenAIClient(max_retries=0)  # the retries are _speak()'s

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
        return within(deadline, self.retries, SpeechUnavailable, lambda: self._speak_once(text, deadline))

    def _speak_once(self, text: str, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left < 1:
            raise SpeechUnavailable("no time left in this attempt")
        body = {"model": self.model, "voice": self.voice, "input": text, "response_format": "opus"}
        if self.instructions:
            body["instructions"] = self.instructions
        try:
            return self.client.speech(body, timeout=min(self.timeout, left))
        except Unreachable as exc:
            raise SpeechUnavailable(str(exc)) from exc
        except StatusError as exc:
            if exc.busy:
                raise SpeechUnavailable(str(exc.status)) from exc
            raise SpeechRefused(f"{exc.status} {exc.code}") from exc
