"""The offline stand-in's voice: espeak-ng speaks the text, ffmpeg makes it a mono OGG/Opus voice note.

Serves `POST /v1/audio/speech` for local/offline_model.py, so `make dev` without a key still
answers voice notes in voice. Robotic, English, but real speech in the container WhatsApp plays.
"""

from __future__ import annotations

import shutil
import subprocess

from common.ai import oggopus

ESPEAK_TIMEOUT = 60.0  # seconds; a few thousand characters take about one
WORDS_PER_MINUTE = "165"
BITRATE = "24k"  # the responder's VOICE_REPLY_BITRATE default


class NoSynthesizer(Exception):
    """espeak-ng is missing or failed: the caller answers 4xx, so the bot falls back to text."""


def synthesize(text: str) -> bytes:
    """`text` as OGG/Opus, mono, 48 kHz, 24 kb/s (what OpenAI's `response_format="opus"` promises)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise NoSynthesizer("espeak-ng is not installed: run make setup (or apt-get install espeak-ng)")
    argv = [espeak, "-v", "en-us", "-s", WORDS_PER_MINUTE, "--stdin", "--stdout"]
    try:
        done = subprocess.run(
            argv, input=text.encode(), capture_output=True, timeout=ESPEAK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise NoSynthesizer(f"espeak-ng took over {ESPEAK_TIMEOUT:.0f} s") from exc
    if done.returncode != 0 or not done.stdout:
        raise NoSynthesizer(f"espeak-ng failed ({done.returncode})")
    try:
        return oggopus.to_voice_note(done.stdout, BITRATE)
    except oggopus.NotEncodable as exc:
        raise NoSynthesizer(str(exc)) from exc
