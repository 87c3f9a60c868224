"""The chat model (OpenAI's /chat/completions); failures sorted into 'retry later' and 'give up'.

common/ai/openai_api.py makes the call (OPENAI_BASE_URL, OPENAI_API_KEY: any OpenAI-compatible server
works). The retries of 429/5xx/timeouts (`OPENAI_MAX_RETRIES`) are made here rather than by the
client, so that each call's timeout and the back-off between calls are cut to the attempt's deadline.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from common import config, log
from common.ai.openai_api import OpenAIClient, StatusError, Unreachable, within

CONTEXT_ERROR_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "too many tokens",
    "context window",
)


class ModelUnavailable(Exception):
    """Rate limited, 5xx, timeout or unreachable after the retries: Pub/Sub should retry."""


class ContextTooLong(Exception):
    """The prompt is over the model's context window: trim the history and try again."""


class ModelRefused(Exception):
    """Any other 4xx (bad key, unknown model, content policy): a retry cannot fix it."""

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(f"model refused: {status} {code}")
        self.status, self.code = status, code


class Completion(str):
    """The model's answer as a plain string that also carries its token count (`usage`)."""

    tokens: int = 0


def _completion(response: dict[str, Any]) -> Completion:
    """The first choice's text and the `usage` total of a /chat/completions answer."""
    choices = response.get("choices") or [{}]
    answer = Completion(((choices[0].get("message") or {}).get("content") or "").strip())
    answer.tokens = int((response.get("usage") or {}).get("total_tokens") or 0)
    return answer


class ChatModel:
    def __init__(self) -> None:
        self.model = config.get("OPENAI_MODEL") or "gpt-4.1-mini"
        self.timeout = config.number("OPENAI_TIMEOUT_SECONDS", 30)
        self.retries = int(config.number("OPENAI_MAX_RETRIES", 2))
        self.max_tokens = int(config.number("OPENAI_MAX_TOKENS", 1024))
        self.client = OpenAIClient(max_retries=0)  # the retries are complete()'s

    def complete(
        self,
        messages: list[dict[str, Any]],
        deadline: float | None = None,
        model: str | None = None,
        timeout: float | None = None,
    ) -> Completion:
        """The model's answer; retried up to OPENAI_MAX_RETRIES times, all before `deadline`
        (a time.monotonic() value), else ModelUnavailable. `model` and `timeout` (of one call)
        override OPENAI_MODEL and OPENAI_TIMEOUT_SECONDS."""
        once = functools.partial(
            self._complete_once, messages, deadline, model or self.model, timeout or self.timeout
        )
        return within(deadline, self.retries, ModelUnavailable, once)

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
        self, messages: list[dict[str, Any]], deadline: float | None, model: str, timeout: float
    ) -> Completion:
        left = _left(deadline)
        if left < 1:
            raise ModelUnavailable("no time left in this attempt")
        body = {"model": model, "messages": messages, "max_tokens": self.max_tokens}
        try:
            response = self.client.chat(body, timeout=min(timeout, left))
        except Unreachable as exc:
            raise ModelUnavailable(str(exc)) from exc
        except StatusError as exc:
            if exc.busy:
                raise ModelUnavailable(str(exc.status)) from exc
            text = f"{exc.code} {exc.type} {exc.message}".lower()
            if exc.status == 400 and any(hint in text for hint in CONTEXT_ERROR_HINTS):
                raise ContextTooLong(str(exc.code)) from exc
            raise ModelRefused(exc.status, exc.code) from exc
        return _completion(response)


def _left(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()
