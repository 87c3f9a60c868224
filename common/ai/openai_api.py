"""The OpenAI endpoints we call (chat, speech, transcription), over plain HTTP with requests.

In place of the openai SDK, which cost a cold start ~260 ms to import and ~70 ms to build a client.
Any OpenAI-compatible server works: the base is OPENAI_BASE_URL (default OpenAI's own), the key
OPENAI_API_KEY (sent as a bearer token, and only when set: local servers need none). The key goes
only to that base, so the base must be https, or plain http on this machine (127.0.0.1, ::1,
localhost: the tests' stand-ins and `make dev`'s offline model); anything else is refused when the
client is built. Redirects are not followed. Failures come out as two exceptions: Unreachable (no
answer: timeout, refused or broken connection) and StatusError (an HTTP error status, with the
`code` and `type` of OpenAI's error body). `max_retries` retries what the SDK's did (no answer,
408, 409, 429, 5xx) with its back-off; the chat model and speech retry within their own deadlines
instead (max_retries=0). Nothing here logs: neither the key nor any body.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from common import config

DEFAULT_BASE = "https://api.openai.com/v1"
USER_AGENT = f"WhatsBot python-requests/{requests.__version__}"
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx: what the SDK's max_retries retried
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 8.0  # seconds: the SDK's back-off, doubling, less up to 25% jitter
LONGEST_RETRY_AFTER = 60.0  # a Retry-After up to this long is obeyed, as the SDK did
MESSAGE_CHARS = 1000  # of an error's message kept for matching (never logged)
T = TypeVar("T")


class Unreachable(Exception):
    """No answer: timed out, refused or broken connection. A later attempt may get through."""


class StatusError(Exception):
    """An HTTP error status. `code`/`type` come from OpenAI's `{"error": {...}}` body when it has one;
    `message` (for matching only: it may quote the request) is never part of str()."""

    def __init__(
        self, status: int, code: str | None, kind: str | None, message: str, retry_after: float | None
    ) -> None:
        super().__init__(f"HTTP {status} {code}")
        self.status, self.code, self.type, self.message = status, code, kind, message
        self.retry_after = retry_after  # seconds the server asked for (Retry-After), if it did

    @property
    def busy(self) -> bool:
        """Rate limited (429) or a server error (5xx): a later attempt may succeed."""
        return self.status == 429 or self.status >= 500


def base_url(value: str | None = None) -> str:
    """OPENAI_BASE_URL (or `value`), default OpenAI's; refused (RuntimeError) unless the key may go
    there: https, or plain http to a loopback host."""
    base = (value or config.get("OPENAI_BASE_URL") or DEFAULT_BASE).rstrip("/")
    parts = urlsplit(base)
    try:
        host, _ = (parts.hostname or ""), parts.port
    except ValueError:  # a port that is not a number
        host = ""
    if host and (parts.scheme == "https" or (parts.scheme == "http" and _loopback(host))):
        return base
    raise RuntimeError(
        f"OPENAI_BASE_URL must be an https:// URL, or http:// on 127.0.0.1, ::1 or localhost "
        f"(the API key is sent there), not {parts.scheme or '(no scheme)'}://{host or '(no host)'}"
    )


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        return False


class OpenAIClient:
    """One keep-alive session to one base; every call takes its own timeout (seconds)."""

    def __init__(self, max_retries: int = 0, base: str | None = None, key: str | None = None) -> None:
        self.base = base_url(base)
        self.key = key or config.get("OPENAI_API_KEY")
        self.max_retries = max_retries
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def chat(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """POST /chat/completions with `body` (model, messages, ...); the answer's JSON."""
        return self._post("/chat/completions", timeout, json=body).json()

    def speech(self, body: dict[str, Any], timeout: float) -> bytes:
        """POST /audio/speech with `body` (model, voice, input, response_format, ...); the audio."""
        return self._post("/audio/speech", timeout, json=body).content

    def transcription(self, model: str, upload: tuple[str, bytes, str], timeout: float) -> dict[str, Any]:
        """POST /audio/transcriptions, multipart: `model` and `file` = (filename, bytes, mime type)."""
        form, files = {"model": model}, {"file": upload}
        return self._post("/audio/transcriptions", timeout, data=form, files=files).json()

    def _post(self, path: str, timeout: float, **kwargs: Any) -> requests.Response:
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(path, timeout, **kwargs)
            except (Unreachable, StatusError) as exc:
                failed = exc if isinstance(exc, StatusError) else None
                if attempt == self.max_retries or (failed is not None and not _retried(failed.status)):
                    raise
                time.sleep(_pause(attempt, failed.retry_after if failed else None))
        raise AssertionError("unreachable")

    def _post_once(self, path: str, timeout: float, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}  # per request, as in graph.py
        try:
            response = self.session.post(
                self.base + path, headers=headers, timeout=timeout, allow_redirects=False, **kwargs
            )
        except requests.RequestException as exc:
            raise Unreachable(type(exc).__name__) from exc
        if response.status_code >= 300:  # redirects too: the key stays with the base
            raise _status_error(response)
        return response


def _status_error(response: requests.Response) -> StatusError:
    """OpenAI's `{"error": {"message", "type", "code"}}`; any other body: its text as the message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    wait = _retry_after(response)
    if not isinstance(error, dict):
        return StatusError(response.status_code, None, None, response.text[:MESSAGE_CHARS], wait)
    code, kind = error.get("code"), error.get("type")
    return StatusError(
        response.status_code,
        None if code is None else str(code),
        None if kind is None else str(kind),
        str(error.get("message") or "")[:MESSAGE_CHARS],
        wait,
    )


def _retried(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, or `Retry-After` in seconds)."""
    for header, scale in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        try:
            return float(response.headers[header]) * scale
        except (KeyError, ValueError):
            continue
    return None


def _pause(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None and 0 < retry_after <= LONGEST_RETRY_AFTER:
        return retry_after
    return _backoff(attempt) * (1 - 0.25 * random.random())  # noqa: S311


def _backoff(attempt: int) -> float:
    """0.5 s doubling to 8 s: the SDK's pause after failed attempt number `attempt` (0-based)."""
    return min(FIRST_PAUSE * 2**attempt, LONGEST_PAUSE)


def within(deadline: float | None, retries: int, retriable: type[Exception], call: Callable[[], T]) -> T:
    """`call()`, again after a `retriable` failure up to `retries` times, pausing 0.5 s doubling to
    8 s, and only while the pause and one more second fit before `deadline` (time.monotonic();
    None: no deadline). The chat model's and speech's retries, cut to the attempt's deadline."""
    for attempt in range(retries + 1):
        try:
            return call()
        except retriable:
            pause = _backoff(attempt)
            left = float("inf") if deadline is None else deadline - time.monotonic()
            if attempt == retries or left < pause + 1:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")
