"""Requests as Meta sends them: corpus fixtures, signed with the app secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.meta.signature import sign

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webhook"


def fixture(name: str) -> dict[str, Any]:
    """tests/fixtures/webhook/<name>.json, e.g. fixture("messages/text")."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def all_fixtures() -> list[str]:
    return sorted(str(p.relative_to(FIXTURES).with_suffix("")) for p in FIXTURES.rglob("*.json"))


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}
