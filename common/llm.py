"""The chat model through the openai SDK; failures sorted into 'retry later' and 'give up'.

The SDK reads OPENAI_API_KEY and OPENAI_BASE_URL itself, so any OpenAI-compatible server works.
It retries 429/5xx/timeouts on its own (`max_retries`); what is left after that is ours to sort.
"""

from __future__ import annotations

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


class ChatModel:
    def __init__(self) -> None:
        self.model = config.get("OPENAI_MODEL") or "gpt-4.1-mini"
        self.client = openai_client(
            timeout=config.number("OPENAI_TIMEOUT_SECONDS", 30),
            max_retries=int(config.number("OPENAI_MAX_RETRIES", 2)),
        )

    def complete(self, messages: list[dict[str, Any]]) -> str:
        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages)
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
        return (content or "").strip()
