"""OGG/Opus notes whose container lies about their length, made from real ones.

An Ogg page's granule position says how many 48 kHz samples end on it; the last page's gives the
length ffmpeg reports (and, for Opus, how much of the last page to play). Rewriting it, with the
page's CRC made again (ffmpeg checks it), gives a note that states another length, none at all,
or one nothing decodes from, while its audio packets stay as they were.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

OPUS_RATE = 48_000
HEADER_PAGES = 2  # OpusHead and OpusTags carry no audio


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte << 24
        for _ in range(8):
            value = ((value << 1) ^ 0x04C11DB7) if value & 0x80000000 else value << 1
        table.append(value & 0xFFFFFFFF)
    return table


_TABLE = _crc_table()


def crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, no final xor), over a page whose CRC field is 0."""
    value = 0
    for byte in page:
        value = ((value << 8) & 0xFFFFFFFF) ^ _TABLE[((value >> 24) & 0xFF) ^ byte]
    return value


def pages(data: bytes) -> Iterator[tuple[int, int]]:
    """(offset, size) of every page."""
    offset = 0
    while offset < len(data):
        if data[offset : offset + 4] != b"OggS":
            raise ValueError(f"no Ogg page at byte {offset}")
        segments = data[offset + 26]
        size = 27 + segments + sum(data[offset + 27 : offset + 27 + segments])
        yield offset, size
        offset += size


def rewrite_granules(data: bytes, granule: Callable[[int, int, int], int]) -> bytes:
    """Each audio page's granule position as `granule(index, page_count, old)` says, CRCs made again."""
    out = bytearray(data)
    found = list(pages(data))
    for index, (offset, size) in enumerate(found):
        if index < HEADER_PAGES:
            continue
        (old,) = struct.unpack_from("<q", data, offset + 6)
        struct.pack_into("<q", out, offset + 6, granule(index, len(found), old))
        struct.pack_into("<I", out, offset + 22, 0)
        struct.pack_into("<I", out, offset + 22, crc(bytes(out[offset : offset + size])))
    return bytes(out)


def pre_skip(data: bytes) -> int:
    start = 27 + data[26]  # the first page's header, then its lacing values: OpusHead
    return int.from_bytes(data[start + 10 : start + 12], "little")


def stating(data: bytes, seconds: float) -> bytes:
    """The note, its last page claiming it lasts `seconds`."""
    end = pre_skip(data) + int(seconds * OPUS_RATE)
    return rewrite_granules(data, lambda index, count, old: end if index == count - 1 else old)


def without_length(data: bytes) -> bytes:
    """The note with every granule position 0: ffmpeg reports no duration ("N/A")."""
    return rewrite_granules(data, lambda index, count, old: 0)


def no_packet_ends(data: bytes) -> bytes:
    """Every granule position -1 ("no packet ends here"), which ffmpeg will not demux at all."""
    return rewrite_granules(data, lambda index, count, old: -1)
