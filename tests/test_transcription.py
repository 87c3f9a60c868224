"""Transcription in process: format sniffing, decoding, the google backend, download rules.

The function itself (Pub/Sub in, Pub/Sub out, sphinx and openai) is tested in test_transcriber.py.
"""

from __future__ import annotations

import io
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from common.ai.transcription import Failed, Unavailable, audio, backends, decode
from common.meta.graph import DownloadRefused, GraphClient, GraphError, download_allowed
from tests.support.fakes import FakeGoogleSpeech

AUDIO = Path(__file__).resolve().parent / "audio"
NOTES = ["en_weather.ogg", "en_reminder.ogg", "es_greeting.ogg", "en_weather.m4a", "en_weather.amr"]


def note(name: str) -> audio.Audio:
    data = (AUDIO / name).read_bytes()
    found = audio.sniff(data)
    assert found is not None
    return audio.Audio(data, found, "")


def pcm(name: str, max_seconds: float = 60) -> bytes:
    """The committed note as 16 kHz PCM."""
    return decode.pcm16k(note(name), max_seconds)


def test_formats_are_told_by_their_magic_bytes() -> None:
    found = {name: audio.sniff((AUDIO / name).read_bytes()) for name in NOTES}
    assert {name: f.name for name, f in found.items() if f} == {
        "en_weather.ogg": "ogg",
        "en_reminder.ogg": "ogg",
        "es_greeting.ogg": "ogg",
        "en_weather.m4a": "mp4",
        "en_weather.amr": "amr",
    }
    assert audio.sniff(b"ID3\x04") is audio.MP3
    assert audio.sniff(b"\xff\xf1\x50\x80") is audio.AAC
    assert audio.sniff(b"\xff\xfb\x90\x64") is audio.MP3
    assert audio.sniff(b"not audio") is None


@pytest.mark.parametrize("name", ["en_weather.m4a", "en_weather.amr"])
def test_every_format_decodes_through_the_wheel_ffmpeg_to_the_same_length(name: str) -> None:
    seconds, reference = len(pcm(name)) / 32_000, len(pcm("en_weather.ogg")) / 32_000
    assert abs(seconds - reference) < 0.25
    assert abs(decode.measure(note(name), max_seconds=60) - reference) < 0.25  # codec priming: ~0.1 s


@pytest.mark.parametrize("name", ["en_weather.ogg", "en_weather.m4a", "en_weather.amr"])
def test_notes_over_max_audio_seconds_are_refused(name: str) -> None:
    with pytest.raises(Failed, match="too_long"):
        decode.measure(note(name), max_seconds=1)
    with pytest.raises(Failed, match="too_long"):  # the decode's own cap
        pcm(name, max_seconds=1)
    assert 2.5 < decode.measure(note(name), max_seconds=5) < 3.5


@pytest.mark.parametrize(("real", "converted"), [(295, True), (310, False)])
def test_an_amr_note_near_the_limit_is_measured_exactly_neither_refused_short_nor_passed_long(
    tmp_path: Path, real: int, converted: bool
) -> None:
    """ffmpeg estimates AMR lengths from the bitrate (about 3 % long); what decodes is exact."""
    import imageio_ffmpeg

    path = tmp_path / "note.amr"
    noise = f"anoisesrc=d={real}:c=pink:r=8000:a=0.3"
    encode = ["-c:a", "libopencore_amrnb", "-b:a", "12.2k", str(path)]
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", noise, *encode], check=True, timeout=120
    )
    long_note = audio.Audio(path.read_bytes(), audio.AMR, "audio/amr")
    if converted:
        assert decode.measure(long_note, max_seconds=300) == pytest.approx(real, abs=0.1)
        assert decode.to_ogg_opus(long_note, max_seconds=300).startswith(b"OggS")
    else:
        with pytest.raises(Failed, match="too_long"):
            decode.measure(long_note, max_seconds=300)
        with pytest.raises(Failed, match="too_long"):  # the conversion's own cap
            decode.to_ogg_opus(long_note, max_seconds=300)


def test_amr_becomes_mono_opus_at_a_speech_bitrate() -> None:
    import soundfile

    ogg = decode.to_ogg_opus(note("en_weather.amr"), max_seconds=60)
    info = soundfile.info(io.BytesIO(ogg))
    assert (ogg[:4], info.channels, info.subtype) == (b"OggS", 1, "OPUS")
    assert len(ogg) * 8 / info.duration < 40_000  # bits per second, headers included
    with pytest.raises(Failed, match="too_long"):
        decode.to_ogg_opus(note("en_weather.amr"), max_seconds=1)


def test_google_gets_flac_in_the_configured_language() -> None:
    server = FakeGoogleSpeech("hola buenos días")
    try:
        assert backends.GOOGLE_ENDPOINT.startswith("https://")  # SpeechRecognition's default is http
        backend = backends.GoogleBackend("es-ES", max_seconds=60, endpoint=server.endpoint)
        data = (AUDIO / "es_greeting.ogg").read_bytes()
        spoken = audio.Audio(data, audio.OGG, "audio/ogg; codecs=opus")
        assert backend.transcribe(spoken) == "hola buenos días"
        [request] = server.requests
        assert "lang=es-ES" in request.path
        assert request.headers["Content-Type"] == "audio/x-flac; rate=16000"
        assert request.body.startswith(b"fLaC")
        server.fail("/speech-api", 503)
        with pytest.raises(Unavailable):
            backend.transcribe(spoken)
        server.fail("/speech-api", 403)
        with pytest.raises(Failed, match="rejected"):
            backend.transcribe(spoken)
        server.transcript = ""
        with pytest.raises(Failed, match="no_speech"):
            backend.transcribe(spoken)
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
        own = f"http://127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(GraphError) as caught:
            GraphClient(token="t", base=own).download(f"{own}/download/x", limit=10**6)
    assert caught.value.retriable, caught.value
    assert caught.value.title == "ChunkedEncodingError"  # raised while streaming, not by the request


@pytest.mark.parametrize(
    ("url", "base", "allowed"),
    [
        (
            "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1",
            "https://graph.facebook.com",
            True,
        ),
        ("https://mmg.whatsapp.net/v/t62/1.enc", "https://graph.facebook.com", True),
        ("https://scontent.xx.fbcdn.net/v/1", "https://graph.facebook.com/", True),
        ("https://cdn.fbsbx.com:443/x", "https://graph.facebook.com", True),
        ("http://lookaside.fbsbx.com/x", "https://graph.facebook.com", False),  # not https
        ("https://evil.example/lookaside.fbsbx.com", "https://graph.facebook.com", False),
        ("https://lookaside.fbsbx.com.evil.example/x", "https://graph.facebook.com", False),
        ("https://notfbsbx.com/x", "https://graph.facebook.com", False),
        ("https://graph.facebook.com@evil.example/x", "https://graph.facebook.com", False),
        ("https://127.0.0.1:8090/graph/x", "https://graph.facebook.com", False),
        ("http://127.0.0.1:8090/graph/lookaside/x", "http://127.0.0.1:8090/graph", True),  # the simulator
        ("http://localhost:8090/graph/x", "http://127.0.0.1:8090/graph", False),  # own host: as configured
        ("http://127.0.0.1:8091/x", "http://127.0.0.1:8090/graph", False),  # another port
        ("http://127.0.0.2:8090/x", "http://127.0.0.1:8090/graph", False),
        ("https://127.0.0.1:8090/x", "http://127.0.0.1:8090/graph", False),  # another scheme
        ("https://lookaside.fbsbx.com/x", "http://127.0.0.1:8090/graph", False),  # Meta's, but not the base
        ("http://127.0.0.1:notaport/x", "http://127.0.0.1:8090", False),
    ],
)
def test_the_token_goes_only_to_meta_media_hosts_or_the_base_itself(
    url: str, base: str, allowed: bool
) -> None:
    assert download_allowed(url, base) is allowed


def test_a_refused_download_url_sends_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.3)
        client = GraphClient(token="t", base="https://graph.facebook.com")
        with pytest.raises(DownloadRefused) as caught:
            client.download(f"http://127.0.0.1:{server.getsockname()[1]}/x", limit=10)
        with pytest.raises(TimeoutError):
            server.accept()  # nobody connected
    assert (caught.value.host, caught.value.retriable) == ("127.0.0.1", False)
    assert "Authorization" not in client.session.headers
