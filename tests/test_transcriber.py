"""The transcriber: served by functions-framework, fed Pub/Sub push bodies, read back from the emulator.

The Graph API (media) and OpenAI are loopback fakes; sphinx runs for real on the committed voice
notes in tests/audio/ (made by scripts/make_voice_notes.sh).
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from common.bus.envelope import Envelope, MediaRef
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import TOPIC_TEXT, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGoogleSpeech, FakeGraph, FakeOpenAI
from tests.support.pubsub import Topics

AUDIO = Path(__file__).resolve().parent / "audio"
SPOKEN = {name: item["text"] for name, item in json.loads((AUDIO / "transcripts.json").read_text()).items()}
MIME = {"ogg": "audio/ogg; codecs=opus", "m4a": "audio/mp4", "amr": "audio/amr"}
USER = "15551234567"
MODEL = "test-transcribe-model"
# Measured with the pocketsphinx wheel's en-us model: 100 % on both English OGG notes, 89 % (8 of 9
# words) on the m4a and amr copies, which lose "is". The margin absorbs codec build differences.
SPHINX_MIN_OVERLAP = 0.75
LONG_SECONDS = 1500  # the long AMR note: 25 minutes
# Peak memory the 25-minute AMR note may add to the transcriber process. Measured under load on
# 2 cores: +6 MiB with ffmpeg file to file; +74 MiB with the former in-memory pydub decode.
MAX_GROWTH_MIB = 30
_media_ids = itertools.count(10**15)  # media ids are digits, as Meta's are (and as the client insists)


def new_media_id() -> str:
    return str(next(_media_ids))


@pytest.fixture(scope="module")
def openai_server(model: FakeOpenAI) -> FakeOpenAI:
    return model


@pytest.fixture(autouse=True)
def _fresh_fakes(graph: FakeGraph, openai_server: FakeOpenAI) -> None:
    graph.reset()
    openai_server.reset()


def _serve(emulators: emu.Emulators, graph: FakeGraph, openai: FakeOpenAI, backend: str) -> FunctionProcess:
    env = stand_in_env(
        emulators,
        graph,
        openai,
        TRANSCRIBE_BACKEND=backend,
        TRANSCRIBE_MODEL=MODEL,
    )
    return serve("transcriber", env)


@pytest.fixture(scope="module")
def sphinx(
    emulators: emu.Emulators, graph: FakeGraph, openai_server: FakeOpenAI
) -> Iterator[FunctionProcess]:
    function = _serve(emulators, graph, openai_server, "sphinx")
    yield function
    function.stop()


@pytest.fixture(scope="module")
def openai_fn(
    emulators: emu.Emulators, graph: FakeGraph, openai_server: FakeOpenAI
) -> Iterator[FunctionProcess]:
    function = _serve(emulators, graph, openai_server, "openai")
    yield function
    function.stop()


def voice_note(
    graph: FakeGraph, media_id: str, data: bytes, mime: str, declared: int | None = None
) -> Envelope:
    """Serve `data` as media `media_id` and return the envelope the webhook would have published."""
    graph.add_media(media_id, data, mime, declared)
    return Envelope(
        message_id=f"wamid.{media_id}",
        user=USER,
        to=USER,
        phone_number_id="106540352242922",
        type="audio",
        timestamp=1_760_000_000,
        profile_name="Ana",
        media=MediaRef(media_id, mime, None, voice=True),
    )


def committed(graph: FakeGraph, name: str, media_id: str | None = None) -> Envelope:
    return voice_note(graph, media_id or new_media_id(), (AUDIO / name).read_bytes(), MIME[name[-3:]])


def published(topics: Topics) -> Envelope:
    [received] = topics.pull(TOPIC_TEXT, expect=1)
    return Envelope.from_bytes(received.data)


def overlap(spoken: str, heard: str) -> float:
    """Share of the spoken words (with repeats) found in what was heard."""
    said, got = (Counter(re.findall(r"[a-z']+", s.lower())) for s in (spoken, heard))
    return sum(min(n, got[w]) for w, n in said.items()) / sum(said.values())


def silence_ogg(seconds: float = 1.0) -> bytes:
    import numpy as np
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, np.zeros(int(16000 * seconds)), 16000, format="OGG", subtype="OPUS")
    return out.getvalue()


# --- sphinx: real recognition, every format decoded by the wheel's ffmpeg in a child process ---


@pytest.mark.parametrize("name", ["en_weather.ogg", "en_reminder.ogg", "en_weather.m4a", "en_weather.amr"])
def test_sphinx_hears_most_of_the_spoken_words(
    sphinx: FunctionProcess, graph: FakeGraph, topics: Topics, name: str
) -> None:
    assert deliver(sphinx, committed(graph, name)) == 200
    envelope = published(topics)
    assert envelope.transcript and envelope.transcription_error is None
    assert envelope.text is not None
    assert overlap(SPOKEN[name], envelope.text) >= SPHINX_MIN_OVERLAP, envelope.text


def test_transcript_keeps_the_ids_user_and_ordering_key(
    sphinx: FunctionProcess, graph: FakeGraph, topics: Topics
) -> None:
    original = committed(graph, "en_reminder.ogg", "4242")
    assert deliver(sphinx, original) == 200
    [received] = topics.pull(TOPIC_TEXT, expect=1)
    envelope = Envelope.from_bytes(received.data)
    assert received.attributes == {"message_id": "wamid.4242", "type": "audio"}
    assert received.ordering_key == USER
    assert 2 < (envelope.audio_seconds or 0) < 8  # the note's length, for the daily voice limit
    assert envelope == replace(
        original.with_transcript(envelope.text or ""), audio_seconds=envelope.audio_seconds
    )
    assert envelope.transcript is True
    assert topics.nothing_on(TOPIC_TEXT)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"OggS" + bytes(range(256)) * 20, "undecodable"),  # looks like OGG, is not
        (silence_ogg(), "no_speech"),
    ],
    ids=["broken-ogg", "silence"],
)
def test_sphinx_failures_become_a_failure_envelope(
    sphinx: FunctionProcess, graph: FakeGraph, topics: Topics, data: bytes, reason: str
) -> None:
    assert deliver(sphinx, voice_note(graph, new_media_id(), data, MIME["ogg"])) == 200
    envelope = published(topics)
    assert (envelope.transcript, envelope.transcription_error, envelope.text) == (True, reason, None)


# --- openai: the bytes as they are, under a name OpenAI accepts --------------------------------


@pytest.mark.parametrize("name", ["en_weather.ogg", "es_greeting.ogg"])
def test_openai_receives_the_original_ogg_as_voice_ogg(
    openai_fn: FunctionProcess, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics, name: str
) -> None:
    assert deliver(openai_fn, committed(graph, name)) == 200
    [fields] = openai_server.transcriptions()
    assert fields["file"] == ("voice.ogg", (AUDIO / name).read_bytes())
    assert fields["model"][1].decode() == MODEL
    assert published(topics).text == "a transcript from the fake"


def test_openai_gets_m4a_unchanged_and_amr_converted_to_ogg(
    openai_fn: FunctionProcess, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics
) -> None:
    assert deliver(openai_fn, committed(graph, "en_weather.m4a")) == 200
    assert deliver(openai_fn, committed(graph, "en_weather.amr")) == 200
    m4a, amr = openai_server.transcriptions()
    assert m4a["file"] == ("voice.m4a", (AUDIO / "en_weather.m4a").read_bytes())
    assert amr["file"][0] == "voice.ogg"
    assert amr["file"][1].startswith(b"OggS")
    assert len(topics.pull(TOPIC_TEXT, expect=2)) == 2


@pytest.mark.parametrize("status", [429, 500])
def test_openai_throttling_or_5xx_is_retried_by_pubsub(
    openai_fn: FunctionProcess, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics, status: int
) -> None:
    note = committed(graph, "en_weather.ogg")
    openai_server.fail("/audio/transcriptions", status, {"error": {"message": "busy"}}, times=3)
    assert deliver(openai_fn, note) == 500  # the client retried twice itself, then we raised
    assert topics.nothing_on(TOPIC_TEXT)
    assert deliver(openai_fn, note) == 200  # the redelivery succeeds
    assert published(topics).text == "a transcript from the fake"


@pytest.mark.parametrize(
    ("status", "transcript", "reason"), [(400, "x", "rejected"), (200, " ", "no_speech")]
)
def test_openai_refusal_or_empty_transcript_becomes_a_failure_envelope(
    openai_fn: FunctionProcess,
    graph: FakeGraph,
    openai_server: FakeOpenAI,
    topics: Topics,
    status: int,
    transcript: str,
    reason: str,
) -> None:
    openai_server.transcript = transcript
    if status != 200:
        openai_server.fail("/audio/transcriptions", status, {"error": {"message": "bad audio"}})
    assert deliver(openai_fn, committed(graph, "en_weather.ogg")) == 200
    assert published(topics).transcription_error == reason


# --- formats and limits: MP3 as sent, raw AAC re-encoded, long notes, the settings -----------


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True, timeout=300)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Notes made with the wheel's ffmpeg: MP3 and raw AAC of a committed note, a 25-minute AMR."""
    folder = tmp_path_factory.mktemp("made")
    source = str(AUDIO / "en_weather.ogg")
    ffmpeg("-i", source, "-c:a", "libmp3lame", "-b:a", "32k", str(folder / "note.mp3"))
    ffmpeg("-i", source, "-c:a", "aac", "-b:a", "32k", "-f", "adts", str(folder / "note.aac"))
    # 25 minutes of noise shaped like speech's spectrum, AMR-NB at 12.2 kb/s: about 2.4 MB.
    noise = f"anoisesrc=d={LONG_SECONDS}:c=pink:r=8000:a=0.3"
    ffmpeg("-f", "lavfi", "-i", noise, "-c:a", "libopencore_amrnb", "-b:a", "12.2k", str(folder / "long.amr"))
    # 400 s of OGG/Opus: a format the openai backend would send as it is, were it not refused first.
    noise = "anoisesrc=d=400:c=pink:r=16000:a=0.3"
    ffmpeg("-f", "lavfi", "-i", noise, "-c:a", "libopus", "-b:a", "16k", str(folder / "long.ogg"))
    notes = {name: (folder / f"note.{name}").read_bytes() for name in ("mp3", "aac")}
    return notes | {name: (folder / name).read_bytes() for name in ("long.amr", "long.ogg")}


def test_openai_gets_mp3_unchanged_and_raw_aac_reencoded_as_opus(
    openai_fn: FunctionProcess, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics, made: dict
) -> None:
    assert deliver(openai_fn, voice_note(graph, new_media_id(), made["mp3"], "audio/mpeg")) == 200
    assert deliver(openai_fn, voice_note(graph, new_media_id(), made["aac"], "audio/aac")) == 200
    mp3, aac = openai_server.transcriptions()
    assert mp3["file"] == ("voice.mp3", made["mp3"])
    assert aac["file"][0] == "voice.ogg"
    assert soundfile_info(aac["file"][1]) == (1, "OPUS")
    assert len(topics.pull(TOPIC_TEXT, expect=2)) == 2


def soundfile_info(data: bytes) -> tuple[int, str]:
    import soundfile

    info = soundfile.info(io.BytesIO(data))
    return info.channels, info.subtype


@pytest.mark.parametrize("backend", ["openai_fn", "sphinx"])
@pytest.mark.parametrize("name", ["long.amr", "long.ogg"])
def test_a_note_over_max_audio_seconds_is_refused_on_every_backend(
    request: pytest.FixtureRequest,
    graph: FakeGraph,
    openai_server: FakeOpenAI,
    topics: Topics,
    made: dict,
    backend: str,
    name: str,
) -> None:
    function = request.getfixturevalue(backend)  # MAX_AUDIO_SECONDS at its default, 300
    assert deliver(function, voice_note(graph, new_media_id(), made[name], "audio/ogg")) == 200
    assert published(topics).transcription_error == "too_long"
    assert openai_server.transcriptions() == []


def peak_memory_kib(function: FunctionProcess) -> int:
    """The highest VmHWM (peak resident memory) among functions-framework's Python processes.

    gunicorn serves in a forked worker, so the children count too; ffmpeg's own memory is its own."""
    pids, peak = [function.process.pid], 0
    while pids:
        pid = pids.pop()
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            if "ffmpeg" in status.split("\n", 1)[0]:
                continue
            peak = max(peak, int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)))  # type: ignore[union-attr]
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
    return peak


def test_a_long_amr_note_is_converted_within_the_cap_without_holding_decoded_audio(
    emulators: emu.Emulators, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics, made: dict
) -> None:
    """25 minutes of AMR with MAX_AUDIO_SECONDS above it: OGG/Opus at a speech bitrate, under OpenAI's
    25 MB, and the transcriber's peak memory barely moves (the old in-memory decode took ~74 MiB)."""
    env = stand_in_env(emulators, graph, openai_server, TRANSCRIBE_BACKEND="openai", MAX_AUDIO_SECONDS="3600")
    function = serve("transcriber", env)
    try:
        assert deliver(function, committed(graph, "en_weather.amr")) == 200  # warm: imports, first use
        before = peak_memory_kib(function)
        assert deliver(function, voice_note(graph, new_media_id(), made["long.amr"], "audio/amr")) == 200
        growth_mib = (peak_memory_kib(function) - before) / 1024
        print(f"transcriber peak memory: {before / 1024:.0f} MiB, +{growth_mib:.1f} MiB for the long note")
        assert growth_mib < MAX_GROWTH_MIB
        _, converted = openai_server.transcriptions()
        name, ogg = converted["file"]
        import soundfile

        info = soundfile.info(io.BytesIO(ogg))
        assert (name, info.channels, info.subtype) == ("voice.ogg", 1, "OPUS")
        assert abs(info.duration - LONG_SECONDS) < 2
        assert len(ogg) * 8 / info.duration < 30_000  # a speech bitrate (24 kb/s plus the container)
        assert len(ogg) < 25 * 1024 * 1024
        assert len(topics.pull(TOPIC_TEXT, expect=2)) == 2
    finally:
        function.stop()


def test_openai_timeout_max_audio_bytes_and_transcribe_language_are_settings(
    emulators: emu.Emulators, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics
) -> None:
    size = len((AUDIO / "en_weather.ogg").read_bytes())
    env = stand_in_env(
        emulators,
        graph,
        openai_server,
        TRANSCRIBE_BACKEND="openai",
        OPENAI_TIMEOUT_SECONDS="1",
        OPENAI_MAX_RETRIES="0",
        MAX_AUDIO_BYTES=str(size),
    )
    function = serve("transcriber", env)
    try:
        openai_server.fail("/audio/transcriptions", 200, {"text": "too late"}, delay=3)
        note = committed(graph, "en_weather.ogg")
        assert deliver(function, note) == 500  # timed out: Pub/Sub redelivers
        assert topics.nothing_on(TOPIC_TEXT)
        assert deliver(function, note) == 200
        assert published(topics).text == "a transcript from the fake"
        bigger = voice_note(
            graph, new_media_id(), (AUDIO / "en_weather.ogg").read_bytes() + b"x", MIME["ogg"]
        )
        assert deliver(function, bigger) == 200
        assert published(topics).transcription_error == "too_large"
    finally:
        function.stop()


def test_the_google_backend_asks_in_transcribe_language(
    emulators: emu.Emulators, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics
) -> None:
    google = FakeGoogleSpeech("hola buenos días")
    env = stand_in_env(
        emulators,
        graph,
        openai_server,
        TRANSCRIBE_BACKEND="google",
        TRANSCRIBE_LANGUAGE="es-ES",
        GOOGLE_SPEECH_ENDPOINT=google.endpoint,
    )
    function = serve("transcriber", env)
    try:
        assert deliver(function, committed(graph, "es_greeting.ogg")) == 200
        assert published(topics).text == "hola buenos días"
        [asked] = google.requests
        assert "lang=es-ES" in asked.path
    finally:
        function.stop()
        google.close()


# --- media: size, garbage, Graph failures -------------------------------------------------------


def test_a_20_mb_voice_note_is_refused_before_download(
    openai_fn: FunctionProcess, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics
) -> None:
    note = voice_note(
        graph, new_media_id(), (AUDIO / "en_weather.ogg").read_bytes(), MIME["ogg"], 20 * 1024 * 1024
    )
    assert deliver(openai_fn, note) == 200
    assert published(topics).transcription_error == "too_large"
    assert graph.downloads() == []
    assert openai_server.transcriptions() == []


def test_a_download_that_outgrows_its_declared_size_is_cut_off(
    openai_fn: FunctionProcess, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics
) -> None:
    note = voice_note(graph, new_media_id(), b"OggS" + bytes(16 * 1024 * 1024), MIME["ogg"], declared=5_000)
    assert deliver(openai_fn, note) == 200
    assert published(topics).transcription_error == "too_large"
    assert openai_server.transcriptions() == []


def test_garbage_bytes_are_not_sent_to_openai(
    openai_fn: FunctionProcess, graph: FakeGraph, openai_server: FakeOpenAI, topics: Topics
) -> None:
    note = voice_note(graph, new_media_id(), b"<html>not audio</html>" * 50, MIME["ogg"])
    assert deliver(openai_fn, note) == 200
    assert published(topics).transcription_error == "undecodable"
    assert openai_server.transcriptions() == []


@pytest.mark.parametrize("where", ["info", "download"])
def test_graph_5xx_is_retried_with_a_fresh_media_url(
    openai_fn: FunctionProcess, graph: FakeGraph, topics: Topics, where: str
) -> None:
    media_id = new_media_id()
    note = committed(graph, "en_weather.ogg", media_id)
    graph.fail(f"/{graph.version}/{media_id}" if where == "info" else "/download/", 503)
    assert deliver(openai_fn, note) == 500
    assert topics.nothing_on(TOPIC_TEXT)
    assert deliver(openai_fn, note) == 200
    assert published(topics).transcript is True
    infos = [r for r in graph.requests if r.path == f"/{graph.version}/{media_id}"]
    assert len(infos) == 2  # the url is asked for again on the redelivery


@pytest.mark.parametrize("media_id", ["404", "1111", "../me"], ids=["no-such-media", "no-url", "not-digits"])
def test_media_the_graph_api_refuses_for_good_becomes_a_failure_envelope(
    openai_fn: FunctionProcess, graph: FakeGraph, topics: Topics, media_id: str
) -> None:
    graph.fail(f"/{graph.version}/1111", 200, {"messaging_product": "whatsapp", "id": "1111"})
    note = Envelope("wamid.gone", USER, USER, "1065", "audio", 1, media=MediaRef(media_id))
    assert deliver(openai_fn, note) == 200  # 404 code 100, no url, a bad id: a retry cannot help
    assert published(topics).transcription_error == "media_unavailable"
    assert graph.downloads() == []


def test_an_event_without_an_envelope_is_acked_and_dropped(
    openai_fn: FunctionProcess, topics: Topics
) -> None:
    not_json = base64.b64encode(b"not json").decode()
    body = {"message": {"data": not_json, "messageId": "1"}, "subscription": "projects/p/subscriptions/s"}
    assert requests.post(openai_fn.url, json=body, timeout=30).status_code == 200
    assert topics.nothing_on(TOPIC_TEXT)


def test_a_transcript_that_cannot_be_published_is_retried(
    emulators: emu.Emulators, graph: FakeGraph, openai_server: FakeOpenAI
) -> None:
    """Pub/Sub unreachable after the transcription: raise, so the voice note comes back later."""
    own_pubsub = emu.start_pubsub(emu.find_jars())
    own_pubsub.wait_ready()
    env = stand_in_env(
        emulators,
        graph,
        openai_server,
        PUBSUB_EMULATOR_HOST=own_pubsub.address,
        PUBLISH_TIMEOUT_SECONDS="2",
        TRANSCRIBE_BACKEND="openai",
    )
    function = serve("transcriber", env)
    try:
        own_pubsub.stop()
        assert deliver(function, committed(graph, "en_weather.ogg")) == 500
        assert len(openai_server.transcriptions()) == 1
    finally:
        function.stop()
        own_pubsub.stop()
