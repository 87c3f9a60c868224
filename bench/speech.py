"""Transcription cost: sphinx's real-time factor, and what the openai path does to the bytes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import soundfile

from tests.support.fakes import FakeGraph, FakeOpenAI

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "audio"
NOTES = ("en_weather.ogg", "en_reminder.ogg")


def measure(env: dict[str, str], graph: FakeGraph, model: FakeOpenAI) -> dict[str, Any]:
    os.environ.update({**env, "TRANSCRIBE_BACKEND": "sphinx"})
    from common.bus.envelope import Envelope, MediaRef
    from common.transcriber.handler import Transcriber

    sphinx = Transcriber.from_env()
    work = audio_seconds = 0.0
    for number, name in enumerate(NOTES, 1):
        media_id = str(10**15 + number)  # media ids are digits
        data = (AUDIO / name).read_bytes()
        graph.add_media(media_id, data, "audio/ogg; codecs=opus")
        envelope = Envelope(
            f"wamid.{media_id}", "1555", "1555", "1065", "audio", 0, media=MediaRef(media_id, "audio/ogg")
        )
        sphinx.run(envelope)  # warm: the model is loaded once per instance
        started = time.perf_counter()
        sphinx.run(envelope)
        work += time.perf_counter() - started
        audio_seconds += soundfile.info(str(AUDIO / name)).duration

    os.environ["TRANSCRIBE_BACKEND"] = "openai"
    openai_path = Transcriber.from_env()
    model.reset()
    original = (AUDIO / NOTES[0]).read_bytes()
    openai_path.run(
        Envelope("wamid.o", "1555", "1555", "1065", "audio", 0, media=MediaRef(str(10**15 + 1), "audio/ogg"))
    )
    [fields] = model.transcriptions()
    filename, sent = fields["file"]
    return {
        "sphinx_rtf": round(work / audio_seconds, 3),
        "audio_seconds": round(audio_seconds, 2),
        "openai_conversions": 0 if sent == original else 1,
        "openai_bytes_identical": sent == original,
        "openai_filename": filename,
    }
