"""The one openai SDK client per instance, and the one place its errors become our policy.

The client is built on first use (`client()`), not at import: `import openai` costs a cold start
about 0.4 s and building the client about 0.1 s more, which only an instance that calls OpenAI
pays. The SDK reads OPENAI_API_KEY, OPENAI_ORG_ID and OPENAI_PROJECT_ID itself; OPENAI_BASE_URL
is read here first (empty counts as unset: OpenAI's own), because the key goes there: it must be
https, or plain http on this machine (127.0.0.1, ::1, localhost: the tests' stand-ins, `make
dev`'s offline model, Ollama), else RuntimeError when the client is built and when the function
starts (`base_url()`). Without a key the SDK would not start, so the placeholder NO_KEY is sent,
as Ollama's docs do (local servers need none). Each call sets its own timeout and retries through
`with_options`. Redirects are not followed (the SDK would: the body would go where the redirect
points), so a 3xx is an OUTAGE of the configuration.

`failure()` sorts what the SDK raises: BUSY (no answer, 408, 409, 429, 5xx: a later try may
succeed), OUTAGE (401, 403, 404, a redirect, a spent quota, a parameter the model refuses: the operator's
to fix, so every message is retried until it is fixed or dead-lettered, with one ERROR line whose
`alert` names the cause: `settle()`), TOO_LONG (over the context window) and REFUSED (this
request only). Log lines keep OpenAI's request id; never an error's message or str(), which
quote the request.
"""

from __future__ import annotations

import enum
import ipaddress
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from common import config, log

if TYPE_CHECKING:
    import openai

DEFAULT_BASE = "https://api.openai.com/v1"
NO_KEY = "unused"  # sent when OPENAI_API_KEY is unset: the SDK insists on a key, local servers need none
BUSY_STATUSES = frozenset({408, 409, 429})  # and every 5xx: what the SDK's own retries retry
CONTEXT_HINTS = ("context_length_exceeded", "maximum context length", "too many tokens", "context window")
# 400s that every request to this model would get: OPENAI_MODEL or a parameter it does not take.
CONFIG_CODES = frozenset({"model_not_found", "unsupported_parameter"})
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 8.0  # seconds: the SDK's back-off, doubling
T = TypeVar("T")


class Kind(enum.Enum):
    BUSY = "busy"
    OUTAGE = "outage"
    TOO_LONG = "too_long"
    REFUSED = "refused"


# alert value -> the ERROR line's message: what the operator must fix.
ALERTS = {
    "openai_auth": "OpenAI key or permission error",  # 401, 403: a revoked key, a model not allowed
    # 404, a redirect, 400 model_not_found or unsupported_parameter: OPENAI_MODEL, OPENAI_BASE_URL
    "openai_config": "OpenAI model, endpoint or parameter refused: configuration",
    "openai_quota": "OpenAI quota exhausted",  # 429 insufficient_quota: billing, not load
}


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, in the words a log line may use (no message, no body)."""

    kind: Kind
    status: int | None  # None: no answer (timeout, refused or broken connection)
    code: str | None = None  # OpenAI's error code, e.g. invalid_api_key
    type: str | None = None  # OpenAI's error type, e.g. invalid_request_error
    request_id: str | None = None  # x-request-id: what OpenAI's support asks for
    alert: str | None = None  # for OUTAGE: a key of ALERTS

    def __str__(self) -> str:
        what = "no answer" if self.status is None else f"HTTP {self.status} {self.code or ''}".strip()
        return f"{what} (request {self.request_id})" if self.request_id else what

    def fields(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "request_id": self.request_id}


class _NeverRaised(Exception):
    """What `sdk_errors()` names while openai is not imported: nothing of the SDK can be raised."""


def sdk_errors() -> type[Exception]:
    """The SDK's base error, for an `except` clause; importing nothing the caller has not."""
    openai = sys.modules.get("openai")
    return _NeverRaised if openai is None else openai.APIError


def failure(exc: BaseException) -> Failure | None:
    """Our policy for an exception the SDK raised; None for anything else."""
    openai = sys.modules.get("openai")
    if openai is None:  # never imported: the exception is not the SDK's
        return None
    if isinstance(exc, openai.APIConnectionError):  # timeouts too
        return Failure(Kind.BUSY, None)
    if not isinstance(exc, openai.APIError):
        return None
    if not isinstance(exc, openai.APIStatusError):  # e.g. an answer that does not parse
        return Failure(Kind.REFUSED, getattr(exc, "status_code", None))
    status, code, kind = exc.status_code, exc.code, exc.type
    found = {"status": status, "code": code, "type": kind, "request_id": exc.request_id}
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return Failure(Kind.OUTAGE, **found, alert="openai_auth")
    if isinstance(exc, openai.NotFoundError) or status < 400 or (status == 400 and code in CONFIG_CODES):
        return Failure(Kind.OUTAGE, **found, alert="openai_config")
    if isinstance(exc, openai.RateLimitError) and (code in QUOTA_CODES or kind in QUOTA_CODES):
        return Failure(Kind.OUTAGE, **found, alert="openai_quota")
    if status in BUSY_STATUSES or status >= 500:
        return Failure(Kind.BUSY, **found)
    said = f"{code} {kind} {exc.message}".lower()  # the message is matched, never logged
    if status == 400 and any(hint in said for hint in CONTEXT_HINTS):
        return Failure(Kind.TOO_LONG, **found)
    return Failure(Kind.REFUSED, **found)


def settle(exc: BaseException, **fields: Any) -> Failure:
    """`failure(exc)` of an SDK error, after the one ERROR line an OUTAGE writes per attempt
    (`alert`, status, code, request id and `fields`: what a log-based alert matches)."""
    found = failure(exc)
    if found is None:
        raise TypeError(f"not an openai error: {type(exc).__name__}") from exc
    if found.alert is not None:
        log.error(ALERTS[found.alert], alert=found.alert, **found.fields(), **fields)
    return found


def base_url() -> str:
    """OPENAI_BASE_URL, default OpenAI's; RuntimeError unless the key may go there: https, or
    plain http to a loopback host."""
    base = (config.get("OPENAI_BASE_URL") or DEFAULT_BASE).rstrip("/")
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


def build() -> openai.OpenAI:
    """A new client (the functions share `client()`'s); the key, organization and project are the
    SDK's to read from the environment."""
    import openai

    key = None if config.get("OPENAI_API_KEY") else NO_KEY  # None: the SDK reads it
    # The SDK's own transport, but no redirects: neither the key nor a conversation leaves the base.
    transport = openai.DefaultHttpxClient(follow_redirects=False)
    return openai.OpenAI(api_key=key, base_url=base_url(), http_client=transport)


_client: openai.OpenAI | None = None
_lock = threading.Lock()  # an instance serves several requests at once: build it only once


def client() -> openai.OpenAI:
    """The instance's client, built on first use and reused (one connection pool)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = build()
    return _client


def within(deadline: float | None, retries: int, call: Callable[[], T]) -> T:
    """`call()` (one try, made with max_retries=0), again after a BUSY failure up to `retries`
    times, pausing 0.5 s doubling to 8 s, and only while the pause and one more second fit before
    `deadline` (time.monotonic(); None: none). The SDK's own retries cannot see an attempt's
    deadline: their pauses and per-try timeouts would add up past it."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:
            found = failure(exc)
            if found is None or found.kind is not Kind.BUSY:
                raise
            pause = min(FIRST_PAUSE * 2**attempt, LONGEST_PAUSE)
            left = float("inf") if deadline is None else deadline - time.monotonic()
            if attempt == retries or left < pause + 1:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")
