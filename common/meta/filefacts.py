"""Facts about an image or a PDF read from its bytes: pixel size, animation, page count.

The responder refuses a PDF over MAX_DOCUMENT_PAGES and an animated image before the model sees
them; the offline stand-in model describes what it was sent. Only headers are read: nothing here
decodes pixels.
"""

from __future__ import annotations

import io
import logging
import struct

from common.meta import media

_SOF = frozenset({*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC})  # JPEG start-of-frame markers


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels of a JPEG, PNG, WebP or GIF; None when the header is not readable."""
    try:
        kind = media.sniff(data)
        if kind == media.PNG and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == media.GIF:
            return struct.unpack("<HH", data[6:10])
        if kind == media.WEBP:
            return _webp_size(data)
        if kind == media.JPEG:
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def animated(data: bytes) -> bool:
    """An animated WebP (animated stickers) or a GIF with more than one frame: not a still image."""
    if media.sniff(data) == media.WEBP and data[12:16] == b"VP8X":
        return bool(data[20] & 0x02)
    if media.sniff(data) == media.GIF:
        return data.count(b"\x00\x21\xf9\x04") > 1  # more than one graphic control block
    return False


def pdf_pages(data: bytes) -> int | None:
    """The page count from the PDF's page tree (pypdf); None for a PDF it cannot read (damaged,
    or encrypted so that the pages cannot be counted)."""
    from pypdf import PdfReader  # the responder's documents only: not loaded at a cold start
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings are about the sender's file
    try:
        return len(PdfReader(io.BytesIO(data)).pages)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
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


def _webp_size(data: bytes) -> tuple[int, int] | None:
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
