"""Structured logging: one JSON object per line, in the shape Cloud Logging understands.

Never pass message text, tokens or secrets; pass phone numbers through `mask()`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from typing import Any

_SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


def mask(user: str | None) -> str:
    """Keep the last 4 characters of a phone number or user id: enough to correlate, not to identify."""
    if not user:
        return ""
    return "***" + user[-4:] if len(user) > 4 else "***"


def digest(message_id: str) -> str:
    """A short stable stand-in for a message id (a wamid holds a phone number). Helper h5 owns this."""
    return "m-" + hashlib.sha256(message_id.encode()).hexdigest()[:12]


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one structured log line to stdout (Cloud Logging parses `severity` and `message`)."""
    if severity not in _SEVERITIES:
        severity = "INFO"
    record = {"severity": severity, "message": message, "time": round(time.time(), 3), **fields}
    sys.stdout.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
