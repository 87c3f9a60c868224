"""The offline stand-in model's function calling: it calls an action when the user's words name it.

Named: the action's name, or its words ("order status" for order_status) in the user's last
message; "person" or "human" name the handoff. The arguments are picked from the user's words by
the schema: a token matching a property's `pattern`, a number for an integer, a token with a digit
(A1001, B-0001) for a string. After a tool result it says what the action answered. So every
path (a call, an invalid call, a confirmation, a handoff) can be tried in `make dev` without a key.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

HANDOFF_WORDS = ("person", "human", "someone real")
SHOWN = 400  # characters of a result repeated back


def reply(messages: list[dict[str, Any]], tools: list[dict[str, Any]], label: str) -> dict[str, Any] | None:
    """The assistant message to answer with, or None: no tool in play, echo as usual."""
    if (told := _latest_result(messages)) is not None:
        data = json.dumps(told.get("data", told.get("error")), ensure_ascii=False)
        data = data if len(data) <= SHOWN else data[: SHOWN - 1] + "…"
        verdict = "answered" if told.get("ok") else "did not work"
        text = f"{label} The action {told.get('action')} {verdict}: {data}"
        return {"role": "assistant", "content": text}
    words = _last_user_words(messages)
    for tool in tools:
        function = tool.get("function") or {}
        name = str(function.get("name") or "")
        if _names(words, name):
            arguments = pick(words, function.get("parameters") or {})
            call = {"id": "call_" + secrets.token_hex(6), "type": "function"}
            call["function"] = {"name": name, "arguments": json.dumps(arguments)}
            return {"role": "assistant", "content": None, "tool_calls": [call]}
    return None


def _names(words: str, name: str) -> bool:
    lowered = words.lower()
    if name == "handoff":
        return any(word in lowered for word in HANDOFF_WORDS)
    return name.lower() in lowered or name.replace("_", " ").lower() in lowered


def pick(words: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments for the schema's properties, taken from the words (what is not found is left out)."""
    tokens = [token.strip(".,;:!?\"'()") for token in words.split()]
    used: set[int] = set()
    found: dict[str, Any] = {}
    properties = schema.get("properties") or {}
    for name, spec in sorted(properties.items(), key=lambda item: "pattern" not in item[1]):
        for index, token in enumerate(tokens):
            if index in used or not token:
                continue
            value = _as(token, spec)
            if value is not None:
                found[name], _ = value, used.add(index)
                break
    if "reason" in properties and "reason" not in found:
        found["reason"] = words[:200]
    return found


def _as(token: str, spec: dict[str, Any]) -> Any:
    pattern = spec.get("pattern")
    if isinstance(pattern, str):
        return token if re.fullmatch(pattern.strip("^$"), token) else None
    if spec.get("type") == "integer":
        return int(token) if token.isdigit() else None
    if spec.get("type") == "string" and any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
        return token.upper()
    return None


def _latest_result(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest tool result since the model last spoke in words, if any."""
    for message in reversed(messages):
        if message.get("role") == "tool":
            try:
                told = json.loads(message.get("content") or "")
            except ValueError:
                return {"action": "?", "ok": False, "error": "an unreadable result"}
            return told if isinstance(told, dict) else None
        if message.get("role") == "assistant" and not message.get("tool_calls"):
            return None
    return None


def _last_user_words(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""
