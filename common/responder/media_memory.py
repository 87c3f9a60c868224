"""What one media turn holds in memory, and how much of it one responder instance holds at once.

An image or a PDF becomes a base64 data URL inside the model call's JSON body, so a 20 MB PDF is
held several times over: its download (20 MB, one buffer: common/meta/graph.py), the data URL
(27 MB, made here in one buffer and decoded once, the download freed in between), then the
JSON text of the body and its UTF-8 bytes (27 MB each, made by the HTTP client for every call).
Measured on a functions-framework responder: HELD_PER_BYTE times the file at the turn's peak.
Eight such turns at once (the responder's concurrency) would not fit in 512 MiB, so every media
turn reserves its share of MEDIA_MEMORY (the instance's memory less RESERVE) before it downloads,
for its declared size, and gives it back once the model has answered. A turn that gets no share
within half of what is left of its attempt raises NoRoom: Pub/Sub redelivers it later.
"""

from __future__ import annotations

import binascii
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from common import config

MiB = 1024 * 1024
HELD_PER_BYTE = 4.2  # measured peak of a PDF turn over the file's size (see tests/test_media_memory.py)
TURN_OVERHEAD = 2 * MiB  # what any media turn holds besides the file's copies
RESERVE = 160 * MiB  # the process itself, gunicorn's arbiter and the instance's text turns
DEFAULT_MEMORY = "512Mi"  # deploy.sh's responder (INSTANCE_MEMORY is what it deployed)
ENCODE_CHUNK = 3 * 256 * 1024  # bytes base64-encoded at a time (a multiple of 3: no padding inside)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", re.IGNORECASE)


class NoRoom(Exception):
    """No share of the instance's memory for this media within the time the attempt may wait."""


class MediaMemory:
    """A byte budget the instance's threads share; `held(size)` reserves a media turn's share."""

    def __init__(self, total: int) -> None:
        self.total, self.free = total, total
        self.changed = threading.Condition()

    @classmethod
    def from_env(cls) -> MediaMemory:
        """INSTANCE_MEMORY (gcloud's --memory: 512Mi, 1Gi, 2048MB...) less RESERVE, at least one
        20 MB document's share."""
        memory = memory_bytes(config.get("INSTANCE_MEMORY") or DEFAULT_MEMORY)
        return cls(max(memory - RESERVE, cost(20 * 1000 * 1000)))

    @contextmanager
    def held(self, size: int, wait: float) -> Iterator[None]:
        """Hold `cost(size)` bytes of the budget while the block runs; NoRoom after `wait` seconds."""
        share = min(cost(size), self.total)  # a share over the whole budget waits for all of it
        with self.changed:
            if not self.changed.wait_for(lambda: self.free >= share, timeout=max(wait, 0)):
                raise NoRoom(f"no memory for {size} bytes of media within {wait:.0f} s")
            self.free -= share
        try:
            yield
        finally:
            with self.changed:
                self.free += share
                self.changed.notify_all()


def cost(size: int) -> int:
    """The bytes a media turn of a `size`-byte file holds at its peak."""
    return int(HELD_PER_BYTE * size) + TURN_OVERHEAD


def memory_bytes(text: str) -> int:
    """gcloud's memory sizes as bytes: 512Mi, 1Gi, 512M (10^6), 2G, 1024MB, 536870912."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise RuntimeError(f"INSTANCE_MEMORY={text!r} is not a size such as 512Mi or 1Gi")
    number, unit, binary = float(match[1]), match[2].lower(), bool(match[3])
    power = "kmgt".find(unit) + 1 if unit else 0
    return int(number * (1024 if binary else 1000) ** power)


def data_url(mime_type: str, data: bytearray) -> str:
    """`data:<type>;base64,...` made in one buffer: `data` (the download's buffer) is emptied once it
    is encoded, before the text is made, so the file, its base64 and the text never coexist."""
    prefix = f"data:{mime_type};base64,".encode()
    out = bytearray(len(prefix) + 4 * ((len(data) + 2) // 3))
    out[: len(prefix)] = prefix
    at = len(prefix)
    with memoryview(data) as view:
        for start in range(0, len(view), ENCODE_CHUNK):
            piece = binascii.b2a_base64(view[start : start + ENCODE_CHUNK], newline=False)
            out[at : at + len(piece)] = piece
            at += len(piece)
    data.clear()
    return out.decode("ascii")
