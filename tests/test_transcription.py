"""Transcription in process: format sniffing, decoding, the google backend, a cut-off download.

The function itself (Pub/Sub in, Pub/Sub out, sphinx and openai) is tested in test_transcriber.py.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from common.graph import GraphClient, GraphError
from common.transcription import Failed, Unavailable, backends, decode, media
from tests.support.fakes import FakeGoogleSpeech

AUDIO = Path(__file__).resolve().parent / "audio"
NOTES = ["en_weather.ogg", "en_reminder.ogg", "es_greeting.ogg", "en_weather.m4a", "en_weather.amr"]


def audio(name: str, max_seconds: float = 60) -> bytes:
    """The committed note as 16 kHz PCM."""
    data = (AUDIO / name).read_bytes()
    found = media.sniff(data)
    assert found is not None
    return decode.pcm16k(media.Audio(data, found, ""), max_seconds)


def test_formats_are_told_by_their_magic_bytes() -> None:
    found = {name: media.sniff((AUDIO / name).read_bytes()) for name in NOTES}
    assert {name: f.name for name, f in found.items() if f} == {
        "en_weather.ogg": "ogg",
        "en_reminder.ogg": "ogg",
        "es_greeting.ogg": "ogg",
        "en_weather.m4a": "mp4",
        "en_weather.amr": "amr",
    }
    assert media.sniff(b"ID3\x04") is media.MP3
    assert media.sniff(b"\xff\xf1\x50\x80") is media.AAC
    assert media.sniff(b"\xff\xfb\x90\x64") is media.MP3
    assert media.sniff(b"not audio") is None


@pytest.mark.parametrize("name", ["en_weather.m4a", "en_weather.amr"])
def test_non_ogg_decodes_through_pydub_and_the_wheel_ffmpeg_like_the_ogg(name: str) -> None:
    import imageio_ffmpeg

    assert decode._pydub().AudioSegment.converter == imageio_ffmpeg.get_ffmpeg_exe()
    seconds, reference = len(audio(name)) / 32_000, len(audio("en_weather.ogg")) / 32_000
    assert abs(seconds - reference) < 0.25


@pytest.mark.parametrize("name", ["en_weather.ogg", "en_weather.m4a"])
def test_notes_over_max_audio_seconds_are_refused(name: str) -> None:
    with pytest.raises(Failed, match="too_long"):
        audio(name, max_seconds=1)


def test_google_gets_flac_in_the_configured_language() -> None:
    server = FakeGoogleSpeech("hola buenos días")
    try:
        backend = backends.GoogleBackend("es-ES", max_seconds=60, endpoint=server.endpoint)
        data = (AUDIO / "es_greeting.ogg").read_bytes()
        note = media.Audio(data, media.OGG, "audio/ogg; codecs=opus")
        assert backend.transcribe(note) == "hola buenos días"
        [request] = server.requests
        assert "lang=es-ES" in request.path
        assert request.headers["Content-Type"] == "audio/x-flac; rate=16000"
        assert request.body.startswith(b"fLaC")
        server.fail("/speech-api", 503)
        with pytest.raises(Unavailable):
            backend.transcribe(note)
        server.fail("/speech-api", 403)
        with pytest.raises(Failed, match="rejected"):
            backend.transcribe(note)
        server.transcript = ""
        with pytest.raises(Failed, match="no_speech"):
            backend.transcribe(note)
    finally:
        server.close()


def test_a_download_cut_off_mid_stream_is_a_retriable_graph_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer_short() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nOggS")

        threading.Thread(target=answer_short, daemon=True).start()
        client = GraphClient(token="t", base="http://127.0.0.1:1")
        with pytest.raises(GraphError) as caught:
            client.download(f"http://127.0.0.1:{server.getsockname()[1]}/download/x", limit=10**6)
    assert caught.value.retriable, caught.value
    assert caught.value.title == "ChunkedEncodingError"  # raised while streaming, not by the request
