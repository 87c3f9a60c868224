"""The speech backends chosen by TRANSCRIBE_BACKEND: `openai`, `google` and `sphinx` (offline).

Each one turns `Audio` into text, raises Failed for what a retry cannot fix and Unavailable for
what it can. Each imports its libraries when it is built (at the first event), never when this
module is imported: SpeechRecognition for google and sphinx, the openai SDK for openai, whose
client is the instance's one (common/ai/openai_client.py).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Protocol

from common import config, log
from common.ai import openai_client
from common.ai.openai_client import Kind
from common.ai.transcription import decode
from common.ai.transcription.audio import Audio
from common.ai.transcription.errors import NO_SPEECH, REJECTED, TOO_LARGE, Failed, Unavailable

OPENAI_TIMEOUT = 60.0  # seconds per request (OPENAI_TIMEOUT_SECONDS): audio takes longer than chat
OPENAI_MAX_RETRIES = 2  # the SDK's own retries of 429/5xx/timeouts (OPENAI_MAX_RETRIES)
GOOGLE_TIMEOUT = 30  # seconds; SpeechRecognition waits forever by default
# SpeechRecognition's own default is plain http; its shared demo key is for trying things out only.
GOOGLE_ENDPOINT = "https://www.google.com/speech-api/v2/recognize"


class Backend(Protocol):
    name: str

    def transcribe(self, audio: Audio) -> str: ...


class OpenAIBackend:
    """OpenAI's transcription API: the bytes go as they are, OGG/Opus named `voice.ogg`. There is
    no attempt deadline here, so the SDK makes the retries itself. An outage (key, permission,
    quota, TRANSCRIBE_MODEL not found) is alerted and Unavailable: the note waits, never lost."""

    name = "openai"

    def __init__(
        self,
        model: str,
        max_seconds: float,
        timeout: float = OPENAI_TIMEOUT,
        retries: int = OPENAI_MAX_RETRIES,
    ) -> None:
        self.model, self.max_seconds, self.timeout, self.retries = model, max_seconds, timeout, retries
        self.client = openai_client.client()  # the instance's one client, built with the transcriber

    def transcribe(self, audio: Audio) -> str:
        if audio.format.openai_ext:  # no conversion: OpenAI reads OGG/Opus, m4a and mp3 as sent
            upload = (f"voice.{audio.format.openai_ext}", audio.data, audio.format.mime_type)
        else:  # AMR and raw AAC are not accepted: re-encode (the only conversion on this path)
            upload = ("voice.ogg", decode.to_ogg_opus(audio, self.max_seconds), "audio/ogg")
        if len(upload[1]) > decode.OPENAI_MAX_BYTES:  # only when MAX_AUDIO_BYTES is set above it
            raise Failed(TOO_LARGE, f"{len(upload[1])} bytes, over OpenAI's 25 MB")
        sdk = self.client.with_options(timeout=self.timeout, max_retries=self.retries)
        try:
            result = sdk.audio.transcriptions.create(model=self.model, file=upload)
        except openai_client.sdk_errors() as exc:
            found = openai_client.settle(exc, model=self.model)  # an outage: alerted
            if found.kind in (Kind.BUSY, Kind.OUTAGE):
                raise Unavailable(f"openai: {found}") from exc
            raise Failed(REJECTED, f"openai: {found}") from exc
        text = (getattr(result, "text", None) or "").strip()
        if not text:
            raise Failed(NO_SPEECH, "openai returned an empty transcript")
        return text


class _SpeechRecognitionBackend:
    """Shared by google and sphinx: decode to 16 kHz PCM, then hand it to SpeechRecognition."""

    name = ""

    def __init__(self, max_seconds: float) -> None:
        with warnings.catch_warnings():  # aifc and audioop are deprecated on 3.11-3.12
            warnings.simplefilter("ignore", DeprecationWarning)
            import speech_recognition

        self.sr, self.max_seconds = speech_recognition, max_seconds
        self.recognizer = speech_recognition.Recognizer()

    def transcribe(self, audio: Audio) -> str:
        pcm = decode.pcm16k(audio, self.max_seconds)
        if decode.loudest_dbfs(pcm) < decode.SILENCE_DBFS:
            raise Failed(NO_SPEECH, "silence")
        try:
            text = self.recognize(self.sr.AudioData(pcm, decode.RATE, 2))
        except self.sr.UnknownValueError as exc:
            raise Failed(NO_SPEECH, f"{self.name}: nothing recognised") from exc
        if not text.strip():
            raise Failed(NO_SPEECH, f"{self.name}: empty transcript")
        return text.strip()

    def recognize(self, data: Any) -> str:
        raise NotImplementedError


class GoogleBackend(_SpeechRecognitionBackend):
    """SpeechRecognition's Google Web Speech recognizer, in TRANSCRIBE_LANGUAGE."""

    name = "google"

    def __init__(self, language: str, max_seconds: float, endpoint: str = GOOGLE_ENDPOINT) -> None:
        super().__init__(max_seconds)
        self.language, self.endpoint = language, endpoint
        self.recognizer.operation_timeout = GOOGLE_TIMEOUT

    def recognize(self, data: Any) -> str:
        try:
            return self.recognizer.recognize_google(data, language=self.language, endpoint=self.endpoint)
        except self.sr.RequestError as exc:
            # SpeechRecognition wraps urllib's errors; a 4xx other than 429 will not heal.
            status = getattr(exc.__context__, "code", None)
            if isinstance(status, int) and 400 <= status < 500 and status != 429:
                raise Failed(REJECTED, f"google: HTTP {status}") from exc
            raise Unavailable(f"google: {exc}") from exc


class SphinxBackend(_SpeechRecognitionBackend):
    """Offline CMU Sphinx with the US English model that ships inside the pocketsphinx wheel."""

    name = "sphinx"

    def __init__(self, max_seconds: float) -> None:
        super().__init__(max_seconds)
        import pocketsphinx

        root = os.path.join(pocketsphinx.get_model_path(), "en-us")
        self.model = (
            os.path.join(root, "en-us"),  # acoustic model
            os.path.join(root, "en-us.lm.bin"),  # language model
            os.path.join(root, "cmudict-en-us.dict"),  # pronunciation dictionary
        )

    def recognize(self, data: Any) -> str:
        return self.recognizer.recognize_sphinx(data, language=self.model)


def settings() -> str:
    """The backend TRANSCRIBE_BACKEND names (default `openai`), checked when the instance starts:
    an unknown name, or an OPENAI_BASE_URL the key may not go to, is a RuntimeError."""
    name = (config.get("TRANSCRIBE_BACKEND", "openai") or "").lower()
    if name not in ("openai", "google", "sphinx"):
        raise RuntimeError(f"TRANSCRIBE_BACKEND must be openai, google or sphinx, not {name!r}")
    if name == "openai":
        openai_client.base_url()
    return name


def from_env(max_seconds: float) -> Backend:
    """The backend TRANSCRIBE_BACKEND names (see `settings`)."""
    name = settings()
    if name == "openai":
        return OpenAIBackend(
            config.get("TRANSCRIBE_MODEL", "gpt-4o-mini-transcribe") or "",
            max_seconds,
            timeout=config.number("OPENAI_TIMEOUT_SECONDS", OPENAI_TIMEOUT),
            retries=int(config.number("OPENAI_MAX_RETRIES", OPENAI_MAX_RETRIES)),
        )
    if name == "google":
        language = config.get("TRANSCRIBE_LANGUAGE", "en-US") or "en-US"
        endpoint = config.get("GOOGLE_SPEECH_ENDPOINT", GOOGLE_ENDPOINT) or GOOGLE_ENDPOINT
        return GoogleBackend(language, max_seconds, endpoint)
    if (config.get("TRANSCRIBE_LANGUAGE") or "en").lower()[:2] != "en":  # sphinx
        log.warning("sphinx only knows English: TRANSCRIBE_LANGUAGE is ignored")
    return SphinxBackend(max_seconds)
