"""Function calling against the loopback OpenAI stand-in: scripted tool calls and a client for them.

`calling(...)` makes the message a FakeOpenAI answer returns to ask for tool calls; `ask(model)`
is the loop's Ask over real HTTP to that stand-in (the phase before the responder's own adapter).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import requests

from common.actions.loop import Ask, ModelReply, ToolCall
from tests.support.fakes import FakeOpenAI

_ids = itertools.count(1)


def calling(*calls: tuple[str, dict[str, Any] | str]) -> dict[str, Any]:
    """An assistant message asking for these (name, arguments) calls; a str is sent as it is."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{next(_ids)}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for name, args in calls
        ],
    }


def last(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return messages[-1] if messages else {}


def tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool messages' contents, parsed."""
    return [json.loads(m["content"]) for m in messages if m.get("role") == "tool"]


def ask(model: FakeOpenAI) -> Ask:
    def call(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        body = {"model": "test-model", "messages": messages, "tools": tools}
        answer = requests.post(f"{model.base_url}/chat/completions", json=body, timeout=10).json()
        message = answer["choices"][0]["message"]
        calls = tuple(
            ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments"))
            for c in message.get("tool_calls") or []
        )
        return ModelReply(message.get("content"), calls, int(answer["usage"]["total_tokens"]))

    return call
