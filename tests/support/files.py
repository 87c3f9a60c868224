"""Real files of known shape for the media tests: made here, byte for byte, not mocked.

A JPEG and WebP stickers encoded by the ffmpeg binary of the imageio-ffmpeg wheel, a PNG written
with zlib, a PDF with a correct cross-reference table, a text file and a .docx (a zip, unsupported).
"""

from __future__ import annotations

import functools
import io
import random
import struct
import subprocess
import tempfile
import zipfile
import zlib
from pathlib import Path

import imageio_ffmpeg


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid truecolour PNG of one colour."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@functools.cache
def jpeg(width: int, height: int) -> bytes:
    """A real JPEG (ffmpeg's mjpeg encoder) of a test pattern."""
    return _encode(width, height, "picture.jpg", frames=1)


@functools.cache
def webp(width: int, height: int, frames: int = 1) -> bytes:
    """A real WebP (libwebp): a still sticker, or an animated one with `frames` > 1."""
    codec = ["-c:v", "libwebp_anim", "-loop", "0"] if frames > 1 else ["-c:v", "libwebp"]
    return _encode(width, height, "sticker.webp", frames, codec)


def _encode(
    width: int, height: int, name: str, frames: int, codec: tuple[str, ...] | list[str] = ()
) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / name
        pattern = f"testsrc=size={width}x{height}:rate=5"
        argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", pattern]
        subprocess.run([*argv, "-frames:v", str(frames), *codec, "-y", str(out)], check=True, timeout=60)
        return out.read_bytes()


def pdf(
    pages: int, words: str = "Total: 42.50 EUR", padding: bytes = b"", startxref: int | None = None
) -> bytes:
    """A minimal valid PDF of `pages` pages, each showing `words`, with exact xref offsets.

    `padding`: the bytes of an extra stream object no page uses (a large PDF: scans weigh that much);
    `startxref`: a wrong cross-reference offset written instead of the true one (a broken PDF)."""
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
    ]
    font = 3 + 2 * pages
    for i in range(pages):
        stream = f"BT /F1 18 Tf 72 720 Td ({words} - page {i + 1}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R"
            f" /Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    if padding:
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(padding), padding))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    at = xref if startxref is None else startxref
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, at))
    return out.getvalue()


@functools.cache
def big_pdf(size: int, pages: int = 3) -> bytes:
    """A valid PDF of about `size` bytes: `pages` pages and an incompressible stream (a scan's weight)."""
    noise = random.Random(size).randbytes(max(size - 2048, 0))  # noqa: S311 - test data, not a secret
    return pdf(pages, padding=noise)


def pdf_bomb(inflated: int) -> bytes:
    """A small valid one-page PDF whose cross-reference stream inflates to `inflated` bytes (zeros
    after the real rows): what a reader must decompress before it can count a single page."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.5\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    rows = b"\x00\x00\x00\x00" + b"".join(b"\x01" + at.to_bytes(2, "big") + b"\x00" for at in offsets)
    stream = zlib.compress(rows + bytes(inflated - len(rows)), 9)
    xref = out.tell()
    out.write(
        b"4 0 obj\n<< /Type /XRef /Size 5 /W [1 2 1] /Root 1 0 R /Filter /FlateDecode /Length %d >>\n"
        b"stream\n%s\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % (len(stream), stream, xref)
    )
    return out.getvalue()


def docx() -> bytes:
    """A small Word document: a zip with the parts Word needs (the bot does not read it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        archive.writestr(
            "word/document.xml",
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            "<w:body><w:p><w:r><w:t>Hello</w:t></w:r></w:p></w:body></w:document>",
        )
    return out.getvalue()


TEXT = "date,item,amount\n2026-11-20,coffee,3.20\n2026-11-21,train,12.80\n"
