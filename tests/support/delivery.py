"""Deliver an envelope to a served function as Pub/Sub's push does, and wait without fixed sleeps."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator

import requests

from common.bus.envelope import Envelope
from common.bus.events import event_for
from local.functions import FunctionProcess, serve


def deliver(
    function: FunctionProcess,
    envelope: Envelope,
    attributes: dict[str, str] | None = None,
    timeout: float = 60,
) -> int:
    """POST the raw Pub/Sub push body: 2xx = ack, 500 = the function raised (redelivery),
    0 = the connection died with the function (a crash while handling it)."""
    push = event_for(envelope)
    push["message"]["attributes"].update(attributes or {})
    try:
        return requests.post(function.url, json=push, timeout=timeout).status_code
    except requests.ConnectionError:
        return 0


def redeliver_until_answered(
    function: FunctionProcess, envelope: Envelope, timeout: float = 60, **kwargs: object
) -> list[int]:
    """Pub/Sub's redelivery while a live lease answers 500: the codes until the first 200."""
    codes: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes.append(deliver(function, envelope, **kwargs))  # type: ignore[arg-type]
        if codes[-1] != 500:
            return codes
        time.sleep(0.2)
    return codes


def killer(function: FunctionProcess, sig: int = signal.SIGKILL) -> Callable[[], None]:
    """An action for a fake's hook: signal the function's whole process group (SIGKILL = a crash)."""
    return lambda: os.killpg(function.process.pid, sig)


@contextlib.contextmanager
def doomed_responder(env: dict[str, str]) -> Iterator[FunctionProcess]:
    """A responder instance the test kills or freezes: thawed (if frozen), then stopped."""
    function = serve("responder", env)
    try:
        yield function
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(function.process.pid, signal.SIGCONT)
        function.stop()
