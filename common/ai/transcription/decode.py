"""Audio → what the speech services take, by the imageio-ffmpeg binary in a child process.

Decoded audio never sits in this process: ffmpeg reads a temporary file and writes an OGG/Opus
file (OpenAI, for AMR and raw AAC) or, for the SpeechRecognition backends, 16 kHz PCM capped by
`-t` (about 10 MB at the default 300 s). Every run has a duration cap and a process timeout.

A note's length is what decodes from it, never what its container states: a header can say 1 s
of an hour, or nothing at all (WhatsApp's webhook and media metadata carry no duration either).
`measure` decodes every note, on every backend, before it goes anywhere: 8 kHz samples streamed
through a pipe and counted (none trimmed away as the container asks: KEEP_ALL), at most
MAX_AUDIO_SECONDS + 1 s of them (`-t`, and `-fs` should the stream's timestamps lie too): about
2 ms a second of audio beside ffmpeg's start (~25 ms). Its figure is the length MAX_AUDIO_SECONDS
is held to and the one the daily voice limit counts; a note nothing decodes from has no length
and is refused (UNDECODABLE: the user is asked to send it again or type it).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import tempfile
import threading
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
OUT_TIME = re.compile(rb"out_time_us=(\d+)")
MEASURE_RATE = 8_000  # samples a second `measure` counts: decoded only to be counted
CHUNK = 64 * 1024  # bytes read from ffmpeg's pipe at a time: all `measure` ever holds
# Decode every sample the stream holds, trimming nothing its container asks to trim: an OGG page's
# granule position (or an MP4 edit list) can otherwise make ffmpeg drop all but a second of audio a
# speech service would still hear. Costs the codec's priming: ~7 ms for Opus, ~0.1 s for AAC.
KEEP_ALL = ("-flags2", "+skip_manual")


def measure(audio: Audio, max_seconds: float) -> float:
    """Seconds of audio that decode from the note; Failed(TOO_LONG) past `max_seconds` (decoding
    stops one second past it), Failed(UNDECODABLE) when nothing decodes (no length to count)."""
    per_second = MEASURE_RATE * 2  # mono 16-bit
    cap = int((max_seconds + 1) * per_second)
    with _workdir(audio) as source:
        output = ["-f", "s16le", "-fs", str(cap), "pipe:1"]
        decoded = _count([*KEEP_ALL, *_input(audio, source, max_seconds, MEASURE_RATE), *output], audio)
    length = decoded / per_second
    if length > max_seconds:
        raise Failed(TOO_LONG, f"over {max_seconds:.0f} s once decoded")
    if not decoded:
        raise Failed(UNDECODABLE, f"no audio frames decode from this {audio.format.name}")
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


def _input(audio: Audio, source: Path, max_seconds: float, rate: int = RATE) -> list[str]:
    """Read `source`, at most one second past the limit (so "too long" can be told), as mono at `rate`."""
    cap = f"{max_seconds + 1:g}"
    return ["-f", audio.format.demuxer, "-i", str(source), "-t", cap, "-vn", "-ac", "1", "-ar", str(rate)]


@contextlib.contextmanager
def _workdir(audio: Audio) -> Iterator[Path]:
    """The note in a private temporary file (ffmpeg needs to seek in m4a), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="voice-") as folder:
        source = Path(folder) / f"note.{audio.format.demuxer}"
        source.write_bytes(audio.data)
        yield source


def _count(args: list[str], audio: Audio) -> int:
    """Bytes ffmpeg writes to stdout with `args`, read and dropped CHUNK by CHUNK; Failed(UNDECODABLE)
    when it fails or outlasts FFMPEG_TIMEOUT (then it is killed)."""
    argv = [ffmpeg.binary(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", *args]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as child:
        stdout = child.stdout
        assert stdout is not None  # stdout=PIPE
        timer = threading.Timer(FFMPEG_TIMEOUT, child.kill)
        timer.start()
        try:
            total = 0
            while chunk := stdout.read(CHUNK):
                total += len(chunk)
            code = child.wait()
        finally:
            timer.cancel()
    if code == -signal.SIGKILL:
        raise Failed(UNDECODABLE, f"ffmpeg took over {FFMPEG_TIMEOUT:.0f} s on {audio.format.name}")
    if code != 0:
        raise Failed(UNDECODABLE, f"ffmpeg could not decode {audio.format.name}")
    return total


def _run(args: list[str], audio: Audio) -> tuple[bytes, bytes]:
    """ffmpeg with `args`, no stdin, a timeout; Failed(UNDECODABLE) when it fails or hangs."""
    argv = [ffmpeg.binary(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", *args]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=FFMPEG_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Failed(UNDECODABLE, f"ffmpeg took over {FFMPEG_TIMEOUT:.0f} s on {audio.format.name}") from exc
    if done.returncode != 0:
        raise Failed(UNDECODABLE, f"ffmpeg could not decode {audio.format.name}")
    return done.stdout, done.stderr
