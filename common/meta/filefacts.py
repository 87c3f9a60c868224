"""Facts about an image or a PDF read from its bytes: pixel size, animation, page count.

The responder refuses a PDF over MAX_DOCUMENT_PAGES and an animated image before the model sees
them; the offline stand-in model describes what it was sent. Only headers are read: nothing here
decodes pixels. The bytes are the user's, so they may be anything: every reader here answers
"not known" (None, False) for bytes it cannot make sense of, whatever the parser raised, and never
raises (a retry would read the same bytes). Only running out of memory propagates.
A PDF is read in place (no copy of the file), with pypdf's decompression limits lowered to what a
page count needs, so a compressed bomb cannot fill the instance's memory either.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Callable
from typing import TypeVar

from common import log
from common.meta import media

_SOF = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC})  # JPEG start-of-frame markers
# What one decompressed stream may become while the pages are counted (pypdf's default: 75 MB).
# Only the cross-reference and object streams are decompressed for that; they are small.
PDF_STREAM_LIMIT = 8 * 1024 * 1024
T = TypeVar("T")
Bytes = bytes | bytearray


def image_size(data: Bytes) -> tuple[int, int] | None:
    """(width, height) in pixels of a JPEG, PNG, WebP or GIF; None when the header is not readable."""

    def read() -> tuple[int, int] | None:
        kind = media.sniff(data)
        if kind == media.PNG and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == media.GIF:
            return struct.unpack("<HH", data[6:10])
        if kind == media.WEBP:
            return _webp_size(data)
        if kind == media.JPEG:
            return _jpeg_size(data)
        return None

    return _tolerant(read, None, "image size")


def animated(data: Bytes) -> bool:
    """An animated WebP (animated stickers) or a GIF with more than one frame: not a still image."""

    def read() -> bool:
        if media.sniff(data) == media.WEBP and data[12:16] == b"VP8X":
            return bool(data[20] & 0x02)
        if media.sniff(data) == media.GIF:
            return data.count(b"\x00\x21\xf9\x04") > 1  # more than one graphic control block
        return False

    return _tolerant(read, False, "animation")


def pdf_pages(data: Bytes) -> int | None:
    """The page count from the PDF's page tree (pypdf); None for a PDF it cannot read (damaged,
    or encrypted so that the pages cannot be counted)."""
    from pypdf import PdfReader, apply_configuration  # the responder's documents only: not at a cold start

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings are about the sender's file
    limits = {
        name: PDF_STREAM_LIMIT
        for name in (
            "zlib_maximum_output_length",
            "lzw_maximum_output_length",
            "run_length_maximum_output_length",
            "brotli_maximum_output_length",
            "array_based_stream_maximum_output_length",
        )
    }

    def read() -> int:
        with memoryview(data) as view, apply_configuration(**limits):
            return len(PdfReader(io.BufferedReader(_InPlace(view))).pages)

    return _tolerant(read, None, "pdf pages")


def _tolerant(read: Callable[[], T], unknown: T, what: str) -> T:
    """`read()`, or `unknown` when the user's bytes made the parser raise anything but MemoryError."""
    try:
        return read()
    except MemoryError:
        raise
    except Exception as exc:  # any parse error of the user's bytes means "not readable"
        log.info("file not readable", what=what, error=type(exc).__name__)
        return unknown


class _InPlace(io.RawIOBase):
    """A read-only, seekable file over a buffer, without the copy io.BytesIO makes of a bytearray."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self.view, self.at = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = max(0, min(len(buffer), len(self.view) - self.at))
        buffer[:count] = self.view[self.at : self.at + count]
        self.at += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.at, io.SEEK_END: len(self.view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.at = base + offset
        return self.at

    def tell(self) -> int:
        return self.at


def _jpeg_size(data: Bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        at += 2 + length
    return None


def _webp_size(data: Bytes) -> tuple[int, int] | None:
    if len(data) < 30:  # the first chunk's header and the frame size: no real WebP is shorter
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None
