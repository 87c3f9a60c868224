"""Structured logging: one JSON object per line, in the shape Cloud Logging understands.

The sink itself keeps identities out: message ids become a short digest, users are masked, and
inside any other string a `wamid.` token is replaced by its digest and a run of 8 or more digits (a
phone number, or a user id's) keeps only its last 4. Still never pass message text, tokens or
secrets, nor a traceback: `failure()` is what a line may say of an exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import traceback
from typing import Any

_SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")

# A message id (`wamid.…`) is base64 of a record holding the user's phone number: never log one.
ID_FIELDS = frozenset({"message_id", "context_id", "status_id", "reply_to", "wamid"})
# Phone numbers and business-scoped user ids: only their last four characters are logged.
USER_FIELDS = frozenset({"user", "recipient", "to", "from", "wa_id", "user_id", "phone"})
# Our own numbers, not a person's: the business number's id, Pub/Sub's event ids.
PLAIN_FIELDS = frozenset({"phone_number_id", "event_id"})
_WAMID = re.compile(r"wamid\.[A-Za-z0-9+/=_-]+")
_DIGITS = re.compile(r"(?<![\w-])\d{8,}(?!\w)")  # not inside a word, a digest or a hex hash
_DIGEST = re.compile(r"m-[0-9a-f]{12}")
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode  # json.dumps builds one per call


def digest(message_id: str) -> str:
    """A short stable stand-in for a message id, the same in every function: `m-` + 12 hex of sha256."""
    return "m-" + hashlib.sha256(message_id.encode()).hexdigest()[:12]


def mask(user: str | None) -> str:
    """Keep the last 4 characters of a phone number or user id: enough to correlate, not to identify."""
    if not user:
        return ""
    return "***" + user[-4:] if len(user) > 4 else "***"


def _scrub(value: Any) -> Any:
    """In strings (also inside lists and dicts): every `wamid.` token by its digest, every run of 8
    or more digits by its last 4."""
    if isinstance(value, str):
        if "wamid." in value:
            value = _WAMID.sub(lambda m: digest(m.group()), value)
        return _DIGITS.sub(lambda m: mask(m.group()), value)
    if isinstance(value, dict):
        return {key: _safe(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _scrub(str(value))  # any other object is logged as its text: scrub that


def _safe(key: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    if key in ID_FIELDS:
        text = str(value)
        return text if _DIGEST.fullmatch(text) else digest(text)
    if key in USER_FIELDS:
        return mask(str(value))  # mask is idempotent: an already masked value stays as it is
    if key in PLAIN_FIELDS:
        return value
    return _scrub(value)


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one structured log line to stdout (Cloud Logging parses `severity` and `message`)."""
    if severity not in _SEVERITIES:
        severity = "INFO"
    safe = {key: _safe(key, value) for key, value in fields.items()}
    record = {"severity": severity, "message": _scrub(message), "time": round(time.time(), 3), **safe}
    sys.stdout.write(_encode(record) + "\n")
    sys.stdout.flush()


def failure(exc: BaseException) -> dict[str, str]:
    """What a line may say of an exception: its type and its causes' types, where it was raised
    (file:line, innermost first) and its own text, scrubbed by the sink. Never a traceback: the
    causes' texts are a library's, with the URLs, paths and values it choked on."""
    chain: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 6:
        chain.append(type(cause).__name__)
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    frames = [
        f"{os.path.basename(frame.f_code.co_filename)}:{line}"
        for frame, line in traceback.walk_tb(exc.__traceback__)
    ]
    return {"error": " < ".join(chain), "where": " < ".join(reversed(frames[-4:])), "reason": str(exc)}


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
