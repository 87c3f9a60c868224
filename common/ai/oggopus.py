"""Is it a WhatsApp voice note (OGG/Opus, mono)? Read from the bytes; else re-encode with ffmpeg.

The container is checked by its first page, not a name or a MIME type: the `OggS` capture
pattern, then the first packet must be the `OpusHead` identification header, whose byte 9 is
the channel count. The length comes from the last page's granule position (48 kHz samples,
minus the pre-skip). Anything else is re-encoded by the imageio-ffmpeg binary in a child
process, file to file, with a timeout (as common/ai/transcription/decode.py does).
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common.ai import ffmpeg

OPUS_RATE = 48_000  # Opus granule positions count 48 kHz samples, whatever the input rate was
FFMPEG_TIMEOUT = 60.0  # seconds; a minute of speech encodes in well under one


class NotEncodable(Exception):
    """ffmpeg could not turn the audio into OGG/Opus (undecodable input, a hang)."""


@dataclass(frozen=True, slots=True)
class OggOpus:
    channels: int
    seconds: float


def inspect(data: bytes) -> OggOpus | None:
    """The stream's channels and length when `data` is OGG/Opus; None for anything else."""
    if len(data) < 28 or data[:4] != b"OggS":
        return None
    start = 27 + data[26]  # the header, then one lacing value per segment
    head = data[start : start + 19]
    if len(head) < 19 or head[:8] != b"OpusHead":
        return None
    pre_skip = int.from_bytes(head[10:12], "little")
    last = data.rfind(b"OggS")
    granule = int.from_bytes(data[last + 6 : last + 14], "little", signed=True)
    return OggOpus(channels=head[9], seconds=max(granule - pre_skip, 0) / OPUS_RATE)


def to_voice_note(data: bytes, bitrate: str) -> bytes:
    """Any audio ffmpeg reads -> OGG/Opus, mono, 48 kHz, at `bitrate` (e.g. "24k"), tuned for speech."""
    with tempfile.TemporaryDirectory(prefix="speech-") as folder:
        source, target = Path(folder) / "speech.in", Path(folder) / "voice.ogg"
        source.write_bytes(data)
        encode = ["-vn", "-ac", "1", "-ar", str(OPUS_RATE), "-c:a", "libopus", "-b:a", bitrate]
        argv = [ffmpeg.binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(source)]
        argv += [*encode, "-application", "voip", "-map_metadata", "-1", "-f", "ogg", "-y", str(target)]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=FFMPEG_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise NotEncodable(f"ffmpeg took over {FFMPEG_TIMEOUT:.0f} s") from exc
        if done.returncode != 0 or not target.exists():
            raise NotEncodable(f"ffmpeg failed ({done.returncode})")
        return target.read_bytes()
