"""A voice note's length is what decodes from it, never what its container states.

MAX_AUDIO_SECONDS and the daily voice limit (MAX_AUDIO_SECONDS_PER_DAY) are held to the decoded
length on the openai backend too, which sends the bytes as they are: real voice notes from
tests/audio/ whose OGG pages state a shorter length, none, or one nothing decodes from
(tests/support/ogg.py), through the real transcriber (and responder) on the emulators.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope, MediaRef
from common.responder.texts import DEFAULTS
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import TOPIC_TEXT, stand_in_env
from tests.support import ogg
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.pubsub import Topics

AUDIO = Path(__file__).resolve().parent / "audio"
NOTE = (AUDIO / "en_reminder.ogg").read_bytes()  # 2.9 s of speech
LENGTH = 2.9
USER = "15550006666"
LIES = {
    "states 0.5 s": ogg.stating(NOTE, 0.5),
    "states no length": ogg.without_length(NOTE),
}


@pytest.fixture(scope="module")
def transcribers(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI
) -> Iterator[dict[str, FunctionProcess]]:
    """The openai backend with MAX_AUDIO_SECONDS at its default, at 2 s, and with a daily 2 s."""
    settings = {
        "default": {},
        "2 s a note": {"MAX_AUDIO_SECONDS": "2"},
        "2 s a day": {"MAX_AUDIO_SECONDS_PER_DAY": "2"},
    }
    started = {
        name: serve(
            "transcriber", stand_in_env(emulators, graph, model, TRANSCRIBE_BACKEND="openai", **extra)
        )
        for name, extra in settings.items()
    }
    yield started
    for function in started.values():
        function.stop()


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    function = serve("responder", stand_in_env(emulators, graph, model, MAX_MESSAGE_AGE_HOURS="23"))
    yield function
    function.stop()


def voice_note(graph: FakeGraph, data: bytes) -> Envelope:
    media_id = str(uuid.uuid4().int % 10**15)
    graph.add_media(media_id, data, "audio/ogg; codecs=opus")
    media = MediaRef(media_id, "audio/ogg; codecs=opus", None, voice=True)
    return Envelope(
        f"wamid.{media_id}", USER, USER, "106540352242922", "audio", int(time.time()), media=media
    )


def transcribed(function: FunctionProcess, topics: Topics, note: Envelope) -> Envelope:
    assert deliver(function, note) == 200
    [received] = topics.pull(TOPIC_TEXT, expect=1)
    return Envelope.from_bytes(received.data)


@pytest.mark.parametrize("lie", list(LIES))
def test_a_note_whose_container_understates_its_length_is_held_to_max_audio_seconds(
    transcribers: dict[str, FunctionProcess], graph: FakeGraph, model: FakeOpenAI, topics: Topics, lie: str
) -> None:
    model.reset()
    published = transcribed(transcribers["2 s a note"], topics, voice_note(graph, LIES[lie]))
    assert published.transcription_error == "too_long"
    assert model.transcriptions() == []  # nothing went to OpenAI


@pytest.mark.parametrize("lie", list(LIES))
def test_a_note_whose_container_misstates_its_length_counts_what_it_holds(
    transcribers: dict[str, FunctionProcess], graph: FakeGraph, model: FakeOpenAI, topics: Topics, lie: str
) -> None:
    model.reset()
    published = transcribed(transcribers["default"], topics, voice_note(graph, LIES[lie]))
    assert published.transcript and published.transcription_error is None
    assert published.audio_seconds == pytest.approx(LENGTH, abs=0.15)
    [upload] = model.transcriptions()
    assert upload["file"] == ("voice.ogg", LIES[lie])  # sent as it came: the length was only measured


def test_a_note_with_no_readable_length_is_refused_politely_and_never_transcribed(
    transcribers: dict[str, FunctionProcess],
    responder: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
    topics: Topics,
    db: firestore.Client,
) -> None:
    published = transcribed(transcribers["default"], topics, voice_note(graph, ogg.no_packet_ends(NOTE)))
    assert published.transcription_error == "undecodable"
    assert model.transcriptions() == []
    assert deliver(responder, published) == 200
    assert [s["text"]["body"] for s in graph.sent()] == [DEFAULTS["VOICE_FAILED_TEXT"]]


def test_the_daily_voice_limit_counts_what_a_lying_note_holds(
    transcribers: dict[str, FunctionProcess],
    responder: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
    topics: Topics,
    db: firestore.Client,
) -> None:
    """2 s a day: the first note (stating 0.5 s, holding 2.9 s) is answered and counted as 2.9 s,
    so the next one is held before any download."""
    daily = transcribers["2 s a day"]
    first = transcribed(daily, topics, voice_note(graph, LIES["states 0.5 s"]))
    assert first.transcript and deliver(responder, first) == 200
    stored = db.collection("conversations").document(doc_id(USER)).get().to_dict()
    assert stored["usageAudio"] == pytest.approx(LENGTH, abs=0.15)
    graph.reset()
    held = transcribed(daily, topics, voice_note(graph, NOTE))
    assert held.refused == "audio_limit" and held.media is None
    assert graph.downloads() == []
