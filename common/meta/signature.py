"""Meta's X-Hub-Signature-256 check: HMAC-SHA256 of the exact raw body with the app secret."""

from __future__ import annotations

import enum
import hashlib
import hmac

PREFIX = "sha256="


class Verdict(enum.Enum):
    VALID = "valid"
    MISSING = "missing"  # no header at all -> 401
    MISMATCH = "mismatch"  # a header that does not match -> 403


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for this body (used by tests and the simulator)."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> Verdict:
    """Check the header against the raw bytes, in constant time; never re-serialise the body."""
    if not header:
        return Verdict.MISSING
    if hmac.compare_digest(sign(body, secret).encode(), header.strip().encode()):
        return Verdict.VALID
    return Verdict.MISMATCH
