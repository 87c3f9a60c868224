"""One voice note's way to text: fetch → measure → backend → the envelope to publish on the text topic.

Every message a user sends passes the transcriber's ordered topic (see common/webhook/handler.py);
only a voice note to transcribe (`transcribes`) builds a Transcriber: anything else is handed on
unchanged, with no Graph call, no Firestore read and no speech library loaded.
"""

from __future__ import annotations

import time
from dataclasses import replace

from common import config, log
from common.ai.transcription import audio, backends, decode
from common.ai.transcription.errors import NO_MEDIA, Failed
from common.bus.envelope import Envelope
from common.guard.voice_quota import VoiceQuota
from common.meta.graph import GraphClient

MAX_AUDIO_BYTES = 16 * 1024 * 1024  # WhatsApp's own limit for audio
MAX_AUDIO_SECONDS = 300  # keeps one attempt well within the function's timeout
AUDIO = "audio"  # Meta's type for voice notes and audio files (Envelope.type)


def transcribes(envelope: Envelope) -> bool:
    """A voice note for the Transcriber; False: anything else (a text, an image, a stranger's
    stripped note, an echo), which goes on to the text topic as it came."""
    return envelope.type == AUDIO and envelope.refused is None and not envelope.transcript


class Transcriber:
    """One per instance: a Graph client and a backend, both reused across events."""

    def __init__(
        self,
        graph: GraphClient,
        backend: backends.Backend,
        max_bytes: int,
        max_seconds: float,
        quota: VoiceQuota | None = None,
    ) -> None:
        self.graph, self.backend = graph, backend
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        self.quota = quota or VoiceQuota()  # guardrails: stale notes, the day's voice seconds

    @classmethod
    def from_env(cls) -> Transcriber:
        max_bytes = int(config.number("MAX_AUDIO_BYTES", MAX_AUDIO_BYTES))
        max_seconds = config.number("MAX_AUDIO_SECONDS", MAX_AUDIO_SECONDS)
        return cls(GraphClient(), backends.from_env(max_seconds), max_bytes, max_seconds)

    def run(self, envelope: Envelope) -> Envelope:
        """The transcript envelope, or a failure envelope the responder apologises for.

        Raises (GraphError with `retriable`, Unavailable) only when a redelivery can help.
        """
        ids = {"message_id": envelope.message_id, "user": log.mask(envelope.user)}
        if envelope.media is None:
            log.error("transcriber: envelope without media", **ids)
            return envelope.with_transcription_error(NO_MEDIA)
        if (held := self.quota.hold(envelope)) is not None:  # before any download
            return held
        started = time.perf_counter()
        try:
            note = audio.fetch(self.graph, envelope.media.id, self.max_bytes)
            fetched = time.perf_counter()
            length = decode.measure(note, self.max_seconds)  # what decodes, not what the header says
            measured = time.perf_counter()
            text = self.backend.transcribe(note)
        except Failed as exc:
            log.warning("transcription failed", reason=exc.reason, detail=exc.detail, **ids)
            return envelope.with_transcription_error(exc.reason)
        log.info(
            "transcribed",
            backend=self.backend.name,
            format=note.format.name,
            bytes=len(note.data),
            audio_seconds=round(length, 1),
            characters=len(text),
            fetch_seconds=round(fetched - started, 3),
            measure_seconds=round(measured - fetched, 3),
            transcribe_seconds=round(time.perf_counter() - measured, 3),
            **ids,
        )
        return replace(envelope.with_transcript(text), audio_seconds=length)
