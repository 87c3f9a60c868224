"""Images and documents as WhatsApp delivers them: a photo becomes an `image`, any other file a
`document` (with its file name), typed by what the bytes are, as Meta's servers type them."""

from __future__ import annotations

import mimetypes

from common.meta import media

MAX_IMAGE_BYTES = 5 * 1024 * 1024  # WhatsApp's limits
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # 100 MB on WhatsApp; the simulator keeps uploads in memory
IMAGE_TYPES = frozenset({media.JPEG, media.PNG})  # what WhatsApp sends as a photo (WebP: stickers)


class AttachmentError(ValueError):
    """The upload cannot become a WhatsApp message; the message says why."""


def prepare(data: bytes, filename: str) -> tuple[str, str, str | None]:
    """(message type, mime type, file name or None): what the webhook will see for this upload."""
    if not data:
        raise AttachmentError("the file is empty")
    found = media.sniff(data)
    if found in IMAGE_TYPES:
        if len(data) > MAX_IMAGE_BYTES:
            raise AttachmentError(f"images are limited to {MAX_IMAGE_BYTES // 1024 // 1024} MB")
        return "image", found, None
    if found == media.WEBP:
        return "sticker", found, None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise AttachmentError(f"documents are limited to {MAX_DOCUMENT_BYTES // 1024 // 1024} MB here")
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].strip() or "file"
    guessed = mimetypes.guess_type(name)[0]
    if found == media.TEXT:
        mime_type = (
            guessed if guessed and (guessed.startswith("text/") or guessed.endswith("json")) else found
        )
    else:
        mime_type = found if found in (media.PDF, media.GIF) else guessed or "application/octet-stream"
    return "document", mime_type, name
