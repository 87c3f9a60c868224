"""Audio → what the speech services take, by the imageio-ffmpeg binary in a child process.

Decoded audio never sits in this process: ffmpeg reads a temporary file and writes an OGG/Opus
file (OpenAI, for AMR and raw AAC) or, for the SpeechRecognition backends, 16 kHz PCM capped by
`-t` (about 10 MB at the default 300 s). Every run has a duration cap and a process timeout; the
length is first read cheaply from the container (ffmpeg's reported duration), so a long note is
refused before anything is decoded, and the cap catches one whose header understated it. Where
ffmpeg only estimates the length from the bitrate (AMR, raw AAC, MP3), the early refusal allows
ESTIMATE_MARGIN, so that no note under the limit is refused; the decode's exact cap decides the rest.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from common.ai import ffmpeg
from common.ai.transcription.audio import Audio
from common.ai.transcription.errors import TOO_LONG, UNDECODABLE, Failed

RATE = 16_000  # what pocketsphinx's models expect; plenty for speech
SILENCE_DBFS = -50.0  # loudest 100 ms below this: nothing was said (sphinx would "hear" words in it)
OPUS_BITRATE = "24k"  # speech quality; 1 hour is about 11 MB
OPENAI_MAX_BYTES = 25 * 1024 * 1024  # OpenAI's upload limit
FFMPEG_TIMEOUT = 120.0  # seconds per ffmpeg run; a capped note takes a few
DURATION = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
OUT_TIME = re.compile(rb"out_time_us=(\d+)")
ESTIMATED = b"Estimating duration from bitrate"
ESTIMATE_MARGIN = 1.1  # AMR-NB at 12.2 kb/s is estimated about 3 % long


def seconds(audio: Audio) -> tuple[float | None, bool]:
    """The length ffmpeg reports from the container (None: none), and whether it is an estimate."""
    with _workdir(audio) as source:
        _, stderr = _run(["-f", audio.format.demuxer, "-i", str(source)], audio, check=False)
    found = DURATION.search(stderr)
    if found is None:
        return None, True
    hours, minutes, secs = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(secs), ESTIMATED in stderr


def check_length(audio: Audio, max_seconds: float) -> float | None:
    """Failed(TOO_LONG) when the container says the note is longer than `max_seconds`; else the
    length it says (None: it does not say)."""
    length, estimated = seconds(audio)
    if length is not None and length > max_seconds * (ESTIMATE_MARGIN if estimated else 1):
        raise Failed(TOO_LONG, f"{length:.0f} s, limit {max_seconds:.0f} s")
    return length


def to_ogg_opus(audio: Audio, max_seconds: float) -> bytes:
    """Re-encode a format OpenAI does not accept (AMR, raw AAC) as OGG/Opus, mono 16 kHz, 24 kb/s."""
    with _workdir(audio) as source:
        target = source.with_name("voice.ogg")
        limit = OPENAI_MAX_BYTES - 256 * 1024  # -fs stops a little past its mark
        encode = ["-c:a", "libopus", "-b:a", OPUS_BITRATE, "-application", "voip", "-fs", str(limit)]
        progress, _ = _run(
            [*_input(audio, source, max_seconds), *encode, "-progress", "pipe:1", "-y", str(target)], audio
        )
        times = OUT_TIME.findall(progress)
        if times and int(times[-1]) / 1e6 > max_seconds:
            raise Failed(TOO_LONG, f"over {max_seconds:.0f} s")
        if target.stat().st_size >= limit:
            raise Failed(TOO_LONG, "over OpenAI's 25 MB once encoded")
        return target.read_bytes()


def pcm16k(audio: Audio, max_seconds: float) -> bytes:
    """Mono 16-bit little-endian PCM at 16 kHz; Failed when undecodable, empty or too long."""
    with _workdir(audio) as source:
        pcm, _ = _run([*_input(audio, source, max_seconds), "-f", "s16le", "pipe:1"], audio)
    if len(pcm) > max_seconds * RATE * 2:
        raise Failed(TOO_LONG, f"over {max_seconds:.0f} s")
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


def _input(audio: Audio, source: Path, max_seconds: float) -> list[str]:
    """Read `source`, at most one second past the limit (so "too long" can be told), as 16 kHz mono."""
    cap = f"{max_seconds + 1:g}"
    return ["-f", audio.format.demuxer, "-i", str(source), "-t", cap, "-vn", "-ac", "1", "-ar", str(RATE)]


@contextlib.contextmanager
def _workdir(audio: Audio) -> Iterator[Path]:
    """The note in a private temporary file (ffmpeg needs to seek in m4a), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="voice-") as folder:
        source = Path(folder) / f"note.{audio.format.demuxer}"
        source.write_bytes(audio.data)
        yield source


def _run(args: list[str], audio: Audio, check: bool = True) -> tuple[bytes, bytes]:
    """ffmpeg with `args`, no stdin, a timeout; Failed(UNDECODABLE) when it fails or hangs."""
    argv = [ffmpeg.binary(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", *args]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=FFMPEG_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Failed(UNDECODABLE, f"ffmpeg took over {FFMPEG_TIMEOUT:.0f} s on {audio.format.name}") from exc
    if check and done.returncode != 0:
        raise Failed(UNDECODABLE, f"ffmpeg could not decode {audio.format.name}")
    return done.stdout, done.stderr
