"""The HTTP call of one action: the business's endpoint, with the key that makes a retry harmless.

Every request carries `Idempotency-Key` (the same for one message's same call on every attempt:
see ledger.key), `X-WhatsBot-User` (the user key: personal data, sent only to the business's own
endpoint) and, when the file names `token_env`, `Authorization: Bearer …`. Redirects are not
followed (a 3xx is a failure), the answer is read up to ACTION_MAX_RESULT_BYTES and no further,
and each try gets ACTION_TIMEOUT_SECONDS for the whole exchange. A timeout, a refused connection
or a 5xx is tried again with the same key (ACTION_TRIES in all, within the attempt's deadline);
what still fails is a Result with ok False, which the model is told. Never raises for the
endpoint's sake: a failing business system must not make Pub/Sub redeliver the message.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests

from common import config, log
from common.actions.spec import Action

CONNECT_TIMEOUT = 3.05  # seconds, within ACTION_TIMEOUT_SECONDS
BACKOFF = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd, 4th try
USER_AGENT = "WhatsBot-actions/1"


@dataclass(frozen=True, slots=True)
class Result:
    """What one call came to; `content` is what the model reads (see `for_model`)."""

    ok: bool
    status: int  # the endpoint's HTTP status; 0: no answer
    body: Any  # the answer: parsed JSON, or text; None without one
    truncated: bool = False
    error: str | None = None  # why it failed, in words the model (and a log line) can use
    tries: int = 1

    def for_model(self, name: str) -> str:
        """The tool message's content: the endpoint's answer wrapped as data, never as instructions."""
        wrapped: dict[str, Any] = {"action": name, "ok": self.ok, "status": self.status}
        if self.error:
            wrapped["error"] = self.error
        if self.body is not None:
            wrapped["data"] = self.body
        if self.truncated:
            wrapped["truncated"] = True
        return json.dumps(wrapped, ensure_ascii=False)


class Caller:
    def __init__(
        self,
        timeout: float | None = None,
        max_bytes: int | None = None,
        tries: int | None = None,
    ) -> None:
        self.timeout = timeout or config.number("ACTION_TIMEOUT_SECONDS", 10)
        self.max_bytes = max_bytes or int(config.number("ACTION_MAX_RESULT_BYTES", 16384))
        self.tries = max(1, tries or int(config.number("ACTION_TRIES", 3)))
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment between us and the endpoint

    def call(
        self,
        action: Action,
        arguments: dict[str, Any],
        key: str,
        user: str,
        deadline: float | None = None,
    ) -> Result:
        """Call the endpoint, retrying a timeout or 5xx with the same key; never raises."""
        headers = {
            "Idempotency-Key": key,
            "X-WhatsBot-User": user,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if action.token:
            headers["Authorization"] = f"Bearer {action.token}"
        result = Result(False, 0, None, error="not called: no time left in this attempt", tries=0)
        for attempt in range(self.tries):
            left = self._left(deadline)
            if left < 1:
                break
            started = time.monotonic()
            result = self._once(action, arguments, headers, min(self.timeout, left), attempt + 1)
            log.info(
                "action called",
                action=action.name,
                status=result.status,
                ok=result.ok,
                tries=result.tries,
                ms=round((time.monotonic() - started) * 1000),
                truncated=result.truncated,
                key=key[:12],
            )
            if result.ok or not _retriable(result):
                return result
            pause = BACKOFF[min(attempt, len(BACKOFF) - 1)]
            if attempt + 1 < self.tries and self._left(deadline) > pause + 1:
                time.sleep(pause)
        return result

    def _left(self, deadline: float | None) -> float:
        return float("inf") if deadline is None else deadline - time.monotonic()

    def _once(
        self, action: Action, arguments: dict[str, Any], headers: dict[str, str], timeout: float, tries: int
    ) -> Result:
        request: dict[str, Any] = {"headers": headers, "allow_redirects": False, "stream": True}
        request["timeout"] = (min(CONNECT_TIMEOUT, timeout), timeout)
        if action.method == "GET":
            request["params"] = query(arguments)
        else:
            request["json"] = arguments
        ends = time.monotonic() + timeout
        try:
            with self.session.request(action.method, action.url, **request) as response:
                data, truncated = self._read(response, ends)
                status = response.status_code
                kind = response.headers.get("Content-Type", "")
        except TimeoutError:
            return Result(False, 0, None, error=f"timed out after {timeout:g} s", tries=tries)
        except requests.Timeout:
            return Result(False, 0, None, error=f"timed out after {timeout:g} s", tries=tries)
        except requests.RequestException as exc:
            return Result(False, 0, None, error=f"unreachable ({type(exc).__name__})", tries=tries)
        body = _decode(data, kind, truncated)
        if 300 <= status < 400:
            return Result(
                False,
                status,
                None,
                error="the endpoint answered with a redirect, which is not followed",
                tries=tries,
            )
        if status >= 400:
            return Result(False, status, body, truncated, f"the endpoint answered HTTP {status}", tries)
        return Result(True, status, body, truncated, None, tries)

    def _read(self, response: requests.Response, ends: float) -> tuple[bytes, bool]:
        """At most max_bytes of the answer (one more byte tells it was longer), within the try's time."""
        chunks, total = [], 0
        for chunk in response.iter_content(8192):
            chunks.append(chunk)
            total += len(chunk)
            if total > self.max_bytes:
                return b"".join(chunks)[: self.max_bytes], True
            if time.monotonic() > ends:  # a trickle that would outlast the timeout
                raise TimeoutError
        return b"".join(chunks), False


def _retriable(result: Result) -> bool:
    """A timeout, a refused connection or a 5xx: the same key again may succeed."""
    return result.status == 0 or result.status >= 500


def _decode(data: bytes, content_type: str, truncated: bool) -> Any:
    """JSON when the answer is whole JSON; else its text (cut at the cap, never mid-character)."""
    if not data:
        return None
    text = data.decode("utf-8", errors="ignore")
    if not truncated and ("json" in content_type or text[:1] in "{["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def query(arguments: dict[str, Any]) -> list[tuple[str, str]]:
    """GET arguments as a query string: scalars as text, lists repeated, objects as JSON."""
    pairs: list[tuple[str, str]] = []
    for name, value in arguments.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, bool):
                pairs.append((name, "true" if item else "false"))
            elif isinstance(item, str | int | float):
                pairs.append((name, str(item)))
            elif item is not None:
                pairs.append((name, json.dumps(item, ensure_ascii=False, separators=(",", ":"))))
    return pairs
