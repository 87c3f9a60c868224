"""Audio as WhatsApp delivers it: voice notes are OGG/Opus; other files keep a type Meta allows.

Browsers record WebM (Chromium) or OGG (Firefox); the simulator converts what WhatsApp would
never deliver to OGG/Opus with the ffmpeg binary of the imageio-ffmpeg wheel.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

MAX_AUDIO_BYTES = 16 * 1024 * 1024  # WhatsApp's audio limit
VOICE_MIME = "audio/ogg; codecs=opus"
# Audio types the Cloud API delivers, by what the bytes start with (checked in this order).
SIGNATURES = (
    (b"OggS", VOICE_MIME),
    (b"#!AMR", "audio/amr"),
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),
    (b"\xff\xf3", "audio/mpeg"),
    (b"\xff\xf1", "audio/aac"),
    (b"\xff\xf9", "audio/aac"),
)


class AudioError(ValueError):
    """The upload cannot become a WhatsApp audio message; the message says why."""


def sniff(data: bytes) -> str | None:
    """The WhatsApp mime type of these bytes, or None when WhatsApp would not deliver them as is."""
    for prefix, mime in SIGNATURES:
        if data.startswith(prefix):
            return mime
    if data[4:8] == b"ftyp":  # MP4 / M4A
        return "audio/mp4"
    return None


def prepare(data: bytes, voice: str = "auto") -> tuple[bytes, str, bool]:
    """(bytes, mime type, is a voice note) for an upload; `voice` is "1", "0" or "auto".

    A recording ("1") always becomes OGG/Opus; a file keeps its type when WhatsApp allows it,
    anything else (WebM, WAV, …) is converted. "auto" calls OGG/Opus a voice note.
    """
    if not data:
        raise AudioError("empty audio")
    if len(data) > MAX_AUDIO_BYTES:
        raise AudioError(f"audio over WhatsApp's {MAX_AUDIO_BYTES // (1024 * 1024)} MB limit")
    mime = sniff(data)
    if mime is None or (voice == "1" and mime != VOICE_MIME):
        data, mime = to_ogg_opus(data), VOICE_MIME
    is_voice = voice == "1" or (voice == "auto" and mime == VOICE_MIME)
    return data, mime, is_voice


def to_ogg_opus(data: bytes) -> bytes:
    """Re-encode any audio ffmpeg reads to mono 16 kHz Opus in Ogg, as WhatsApp's voice notes are."""
    import imageio_ffmpeg  # heavy-ish lookup, only needed for conversions

    with tempfile.TemporaryDirectory(prefix="whatsbot-audio-") as folder:
        source, target = Path(folder) / "in", Path(folder) / "out.ogg"
        source.write_bytes(data)
        argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin"]
        argv += ["-i", str(source), "-vn", "-ac", "1", "-ar", "16000", "-c:a", "libopus"]
        argv += ["-b:a", "24k", "-application", "voip", str(target)]
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        if done.returncode != 0 or not target.is_file():
            raise AudioError("not an audio file ffmpeg can read")
        return target.read_bytes()
