"""The chat model through the openai SDK; failures sorted into 'retry later' and 'give up'.

The SDK reads OPENAI_API_KEY and OPENAI_BASE_URL itself, so any OpenAI-compatible server works.
The retries of 429/5xx/timeouts (`OPENAI_MAX_RETRIES`) are made here rather than by the SDK, so
that each call's timeout and the back-off between calls are cut to the attempt's deadline.
"""

from __future__ import annotations

import time
from typing import Any

import openai

from common import config

CONTEXT_ERROR_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "too many tokens",
    "context window",
)


class ModelUnavailable(Exception):
    """Rate limited, 5xx, timeout or unreachable after the SDK's retries: Pub/Sub should retry."""


class ContextTooLong(Exception):
    """The prompt is over the model's context window: trim the history and try again."""


class ModelRefused(Exception):
    """Any other 4xx (bad key, unknown model, content policy): a retry cannot fix it."""

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(f"model refused: {status} {code}")
        self.status, self.code = status, code


def openai_client(timeout: float, max_retries: int) -> openai.OpenAI:
    """The SDK client for chat and transcription. Empty variables count as unset (an `.env` line
    `OPENAI_BASE_URL=` would otherwise become the SDK's base URL); local servers need no key."""
    return openai.OpenAI(
        api_key=config.get("OPENAI_API_KEY") or "unset",
        base_url=config.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
        timeout=timeout,
        max_retries=max_retries,
    )


class Completion(str):
    """The model's answer as a plain string that also carries its token count (`usage`)."""

    tokens: int = 0


def _completion(text: str, usage: Any) -> Completion:
    answer = Completion(text)
    answer.tokens = int(getattr(usage, "total_tokens", 0) or 0)
    return answer


class ChatModel:
    def __init__(self) -> None:
        self.model = config.get("OPENAI_MODEL") or "gpt-4.1-mini"
        self.timeout = config.number("OPENAI_TIMEOUT_SECONDS", 30)
        self.retries = int(config.number("OPENAI_MAX_RETRIES", 2))
        self.max_tokens = int(config.number("OPENAI_MAX_TOKENS", 1024))
        self.client = openai_client(timeout=self.timeout, max_retries=0)

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
        for attempt in range(self.retries + 1):
            try:
                return self._complete_once(messages, deadline, model or self.model, timeout or self.timeout)
            except ModelUnavailable:
                pause = min(0.5 * 2**attempt, 8.0)
                if attempt == self.retries or _left(deadline) < pause + 1:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _complete_once(
        self, messages: list[dict[str, Any]], deadline: float | None, model: str, timeout: float
    ) -> Completion:
        left = _left(deadline)
        if left < 1:
            raise ModelUnavailable("no time left in this attempt")
        try:
            response = self.client.chat.completions.create(
                model=model,
                messages=messages,
                max_tokens=self.max_tokens,
                timeout=min(timeout, left),
            )
        except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError) as exc:
            raise ModelUnavailable(type(exc).__name__) from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise ModelUnavailable(f"{exc.status_code}") from exc
            code = getattr(exc, "code", None)
            text = f"{code} {exc.message}".lower()
            if exc.status_code == 400 and any(hint in text for hint in CONTEXT_ERROR_HINTS):
                raise ContextTooLong(str(code)) from exc
            raise ModelRefused(exc.status_code, code) from exc
        content = response.choices[0].message.content if response.choices else None
        return _completion((content or "").strip(), getattr(response, "usage", None))


def _left(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()
