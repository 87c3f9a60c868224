"""Settings from the environment: names and defaults in one place (see docs/configuration.md)."""

from __future__ import annotations

import os

DEFAULTS = {
    "TOPIC_AUDIO": "whatsapp-audio",
    "TOPIC_TEXT": "whatsapp-text",
    "TOPIC_STATUS": "whatsapp-status",
    "PUBLISH_TIMEOUT_SECONDS": "10",
    "MAX_BODY_BYTES": str(3 * 1024 * 1024),
    "WHATSAPP_API_BASE": "https://graph.facebook.com",
    "WHATSAPP_API_VERSION": "v25.0",
}


def get(name: str, default: str | None = None) -> str | None:
    """The variable's value; empty counts as unset, so `.env` lines like `X=` fall back to defaults."""
    value = os.environ.get(name, "").strip()
    return value or default or DEFAULTS.get(name)


def require(name: str) -> str:
    value = get(name)
    if not value:
        raise RuntimeError(f"{name} is not set")
    return value


def number(name: str, default: float | None = None) -> float:
    raw = get(name, None if default is None else str(default))
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise RuntimeError(f"{name} must be a number, got {raw!r}") from exc


def project() -> str:
    """The Google Cloud project; any id works against the emulators."""
    return get("GOOGLE_CLOUD_PROJECT") or get("GCLOUD_PROJECT") or "whatsbot-local"
