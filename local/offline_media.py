"""What the offline stand-in model says about the image and file parts it was sent.

It cannot see, so it describes what arrived - format, size, pixel dimensions or page count - which
shows in `make dev` that a photo or a PDF went the whole way from the simulator to the model.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from common.meta import filefacts, media
from common.responder.inputs import human

NAMES = {media.JPEG: "JPEG", media.PNG: "PNG", media.WEBP: "WebP", media.GIF: "GIF", media.PDF: "PDF"}


def describe(content: Any) -> list[str]:
    """One description per image_url or file part of a message's content."""
    if not isinstance(content, list):
        return []
    found = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            found.append(_image(_decode(url)))
        elif part.get("type") == "file":
            block = part.get("file") or {}
            found.append(_file(str(block.get("filename") or "a file"), _decode(block.get("file_data", ""))))
    return found


def _decode(url: Any) -> bytes | None:
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        return None
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return None


def _image(data: bytes | None) -> str:
    if data is None:
        return "an image I could not decode (not a base64 data URL)"
    kind = NAMES.get(media.sniff(data) or "", "unknown format")
    size = filefacts.image_size(data)
    pixels = f", {size[0]}x{size[1]} pixels" if size else ""
    return f"an image ({kind}{pixels}, {human(len(data))})"


def _file(name: str, data: bytes | None) -> str:
    if data is None:
        return f"a file “{name}” I could not decode"
    if media.sniff(data) == media.PDF:
        pages = filefacts.pdf_pages(data)
        counted = f", {pages} page{'s' if pages != 1 else ''}" if pages is not None else ""
        return f"a file “{name}” (PDF{counted}, {human(len(data))})"
    return f"a file “{name}” ({human(len(data))})"
