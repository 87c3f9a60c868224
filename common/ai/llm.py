"""The chat model (the openai SDK's chat.completions); failures sorted into 'retry later' and 'give up'.

common/ai/openai_client.py holds the client (OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_ORG_ID,
OPENAI_PROJECT_ID: any OpenAI-compatible server works) and sorts its errors. The retries of
429/5xx/timeouts (`OPENAI_MAX_RETRIES`) are made by `openai_client.within`, one SDK try at a time,
so that each try's timeout and the pauses between them are cut to the attempt's deadline. A key,
permission, quota or model-name failure is an outage: alerted and retried by Pub/Sub, never
answered with an apology. The answer is capped with `max_completion_tokens`, which current
models take (some refuse `max_tokens`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from common import config, log
from common.ai import openai_client
from common.ai.openai_client import Kind


class ModelUnavailable(Exception):
    """Rate limited, 5xx, timeout or unreachable after the retries, or an outage of the key, its
    permissions, the quota or OPENAI_MODEL (alerted): Pub/Sub should retry."""


class ContextTooLong(Exception):
    """The prompt is over the model's context window: trim the history and try again."""


class ModelRefused(Exception):
    """Any other 4xx (this request's content, a policy): a retry cannot fix it."""

    def __init__(self, status: int | None, code: str | None, request_id: str | None = None) -> None:
        super().__init__(f"model refused: {status} {code} (request {request_id})")
        self.status, self.code, self.request_id = status, code, request_id


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for: its id, the function's name, the arguments' JSON text
    (as the model wrote it: possibly invalid)."""

    id: str
    name: str
    arguments: str | None


class Completion(str):
    """The model's answer as a plain string that also carries its token count (`usage`) and the
    tool calls it asked for (with `tools=`; the text is then often empty)."""

    tokens: int = 0
    calls: tuple[ToolCall, ...] = ()


def _completion(response: Any) -> Completion:
    """The first choice's text, its function calls and the `usage` total of a ChatCompletion."""
    message = response.choices[0].message if response.choices else None
    answer = Completion(((message.content if message else None) or "").strip())
    answer.tokens = int(getattr(response.usage, "total_tokens", 0) or 0)
    calls = (getattr(message, "tool_calls", None) or []) if message else []
    answer.calls = tuple(
        ToolCall(str(call.id), str(call.function.name), call.function.arguments)
        for call in calls
        if getattr(call, "function", None) is not None  # a function call, not another kind of tool
    )
    return answer


class ChatModel:
    def __init__(self) -> None:
        self.model = config.get("OPENAI_MODEL") or "gpt-4.1-mini"
        self.timeout = config.number("OPENAI_TIMEOUT_SECONDS", 30)
        self.retries = int(config.number("OPENAI_MAX_RETRIES", 2))
        self.max_tokens = int(config.number("OPENAI_MAX_TOKENS", 1024))
        # The instance's one client, built with its other clients (in the responder, while the
        # cold start's collector pause lasts: common/startup.py), not at the first call.
        self.client = openai_client.client()

    def complete(
        self,
        messages: list[dict[str, Any]],
        deadline: float | None = None,
        model: str | None = None,
        timeout: float | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Completion:
        """The model's answer; retried up to OPENAI_MAX_RETRIES times, all before `deadline`
        (a time.monotonic() value), else ModelUnavailable. `model` and `timeout` (of one call)
        override OPENAI_MODEL and OPENAI_TIMEOUT_SECONDS; `tools` (function definitions) let
        the model answer with `calls` instead of words."""
        once = functools.partial(
            self._complete_once, messages, deadline, model or self.model, timeout or self.timeout, tools
        )
        try:
            return _completion(openai_client.within(deadline, self.retries, once))
        except openai_client.sdk_errors() as exc:
            found = openai_client.settle(exc, model=model or self.model)  # an outage: alerted
            if found.kind is Kind.TOO_LONG:
                raise ContextTooLong(str(found)) from exc
            if found.kind is Kind.REFUSED:
                raise ModelRefused(found.status, found.code, found.request_id) from exc
            raise ModelUnavailable(str(found)) from exc

    def answer(
        self,
        system: str,
        turns: list[dict[str, Any]],
        content: Any,
        deadline: float | None = None,
        model: str | None = None,
        timeout: float | None = None,
    ) -> Completion:
        """The reply to the user's `content` (text, or text and image parts) after the stored
        `turns`; when the whole conversation is too long for the model, again with only the last
        exchange kept (ContextTooLong only if even that is too long)."""
        prompt = [{"role": "system", "content": system}]
        history = [{"role": t["role"], "content": t["content"]} for t in turns]
        asked = {"role": "user", "content": content}
        try:
            return self.complete([*prompt, *history, asked], deadline, model, timeout)
        except ContextTooLong:
            log.warning("context too long: retrying with the last turns only", turns=len(history))
            return self.complete([*prompt, *history[-2:], asked], deadline, model, timeout)

    def _complete_once(
        self,
        messages: list[dict[str, Any]],
        deadline: float | None,
        model: str,
        timeout: float,
        tools: list[dict[str, Any]] | None = None,
    ) -> Any:
        """One SDK try, no retries of its own, within what is left of the attempt."""
        left = _left(deadline)
        if left < 1:
            raise ModelUnavailable("no time left in this attempt")
        chat = self.client.with_options(timeout=min(timeout, left), max_retries=0).chat
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        return chat.completions.create(
            model=model, messages=messages, max_completion_tokens=self.max_tokens, **extra
        )


def _left(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()
