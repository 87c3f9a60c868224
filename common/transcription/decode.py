"""Audio bytes → 16 kHz mono 16-bit PCM for the SpeechRecognition backends (and OGG for OpenAI).

OGG/Opus is read by soundfile (its bundled libsndfile decodes Opus); the other formats go through
pydub with the ffmpeg binary of the imageio-ffmpeg wheel. Two pydub pitfalls are avoided here:
without `codec=` it runs ffprobe, which the wheel does not ship; and fed through stdin it returns
empty audio for m4a files whose moov atom is at the end, so it always decodes from a file.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from typing import Any

from common.transcription.errors import TOO_LONG, UNDECODABLE, Failed
from common.transcription.media import OGG, Audio

RATE = 16_000  # what pocketsphinx's models expect; plenty for Google's recognizer
SILENCE_DBFS = -50.0  # loudest 100 ms below this: nothing was said (sphinx would "hear" words in it)


def pcm16k(audio: Audio, max_seconds: float) -> bytes:
    """Mono 16-bit little-endian PCM at 16 kHz; Failed when undecodable, silent or too long."""
    pcm = _via_soundfile(audio.data, max_seconds) if audio.format is OGG else _via_pydub(audio, max_seconds)
    if not pcm:
        raise Failed(UNDECODABLE, "no audio frames")
    return pcm


def loudest_dbfs(pcm: bytes) -> float:
    """Level of the loudest 100 ms window, in dB below full scale (-inf for digital silence)."""
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    window = RATE // 10
    padded = np.pad(samples, (0, -len(samples) % window)).reshape(-1, window)
    rms = float(np.sqrt((padded**2).mean(axis=1)).max()) if len(padded) else 0.0
    return 20 * float(np.log10(rms / 32768)) if rms > 0 else float("-inf")


def to_ogg_opus(audio: Audio) -> bytes:
    """Re-encode a format OpenAI does not accept (AMR, raw AAC) as OGG/Opus, mono 16 kHz."""
    segment = _decode_segment(audio, None)
    out = io.BytesIO()
    segment.set_channels(1).export(out, format="ogg", codec="libopus", parameters=["-ar", str(RATE)])
    return out.getvalue()


def _via_soundfile(data: bytes, max_seconds: float) -> bytes:
    import numpy as np
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as source:
            if source.frames / source.samplerate > max_seconds:
                raise Failed(TOO_LONG, f"{source.frames / source.samplerate:.0f} s")
            samples = source.read(dtype="float32", always_2d=True)
            rate = source.samplerate
    except (RuntimeError, ValueError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        raise Failed(UNDECODABLE, f"soundfile: {type(exc).__name__}") from exc
    mono = samples.mean(axis=1)
    if rate != RATE and len(mono):
        count = round(len(mono) * RATE / rate)
        mono = np.interp(np.linspace(0, len(mono) - 1, count), np.arange(len(mono)), mono)
    return (np.clip(mono, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _via_pydub(audio: Audio, max_seconds: float) -> bytes:
    # Decode one second past the limit (ffmpeg -t), so an hour-long file is never held in memory.
    segment = _decode_segment(audio, max_seconds + 1)
    if segment.duration_seconds > max_seconds:
        raise Failed(TOO_LONG, f"over {max_seconds:.0f} s")
    return segment.set_channels(1).set_frame_rate(RATE).set_sample_width(2).raw_data


def _decode_segment(audio: Audio, duration: float | None) -> Any:
    """pydub.AudioSegment from a temporary file, decoded by the wheel's ffmpeg."""
    pydub = _pydub()
    fd, path = tempfile.mkstemp(suffix=f".{audio.format.demuxer}")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(audio.data)
        return pydub.AudioSegment.from_file(
            path, format=audio.format.demuxer, codec=audio.format.codec, duration=duration
        )
    except pydub.exceptions.CouldntDecodeError as exc:
        raise Failed(UNDECODABLE, f"ffmpeg could not decode {audio.format.name}") from exc
    finally:
        os.unlink(path)


_pydub_module: Any = None


def _pydub() -> Any:
    """pydub pointed at the imageio-ffmpeg binary (imported once, on first use)."""
    global _pydub_module
    if _pydub_module is None:
        import imageio_ffmpeg

        with warnings.catch_warnings():  # "Couldn't find ffmpeg" (set right below); audioop deprecation
            warnings.simplefilter("ignore")
            import pydub
            import pydub.exceptions
        pydub.AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()
        _pydub_module = pydub
    return _pydub_module
