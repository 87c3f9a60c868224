"""The instance's one Firestore client (google-cloud-firestore), and what each call may spend.

`client()` builds it on first use and keeps it for the instance: the responder's first message,
the transcriber's first voice note under MAX_AUDIO_SECONDS_PER_DAY (none without it). The client
itself reads FIRESTORE_EMULATOR_HOST and the credentials (on Google Cloud the service account's,
from the metadata server; elsewhere the developer's ADC) and keeps one gRPC channel. The webhook
never imports this package.

Each call carries the client's own retry policy (the codes and back-off of its generated defaults:
writes retry UNAVAILABLE and RESOURCE_EXHAUSTED, reads also DEADLINE_EXCEEDED and INTERNAL) and a
timeout, both cut to what is left of the attempt's deadline (`set_deadline`, set by the responder
at the start of each attempt): a Firestore call never outlives the attempt that made it. The
writes that end an attempt past its deadline (release, done) still get FLOOR seconds; without a
deadline (the transcriber) a call gets DEFAULT_SECONDS. While an attempt holds a claim, its calls
are also cut to the time its lease lets it act (`bound_by`, common/store/heartbeat.py): a write
it started is over before another attempt may take the message over.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions
from google.api_core import retry as retries
from google.cloud import firestore

from common import config

DEFAULT_SECONDS = 20.0  # a call outside any attempt: retries and all
FLOOR = 1.0  # the least a call gets, even past its attempt's deadline (fenced writes stay safe)
_BACKOFF = {"initial": 0.1, "maximum": 60.0, "multiplier": 1.3}  # the generated defaults
_WRITE_RETRIED = (exceptions.ResourceExhausted, exceptions.ServiceUnavailable)
_READ_RETRIED = (*_WRITE_RETRIED, exceptions.DeadlineExceeded, exceptions.InternalServerError)

_client: firestore.Client | None = None
_lock = threading.Lock()
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("firestore_deadline", default=None)
_bound: contextvars.ContextVar[Callable[[], float] | None] = contextvars.ContextVar(
    "firestore_bound", default=None
)


def client() -> firestore.Client:
    """The instance's client, built on the first call (threads share it)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = firestore.Client(project=config.project())
    return _client


def set_deadline(deadline: float | None) -> None:
    """Cut this thread's Firestore calls from now on to `deadline` (time.monotonic()); each
    attempt sets its own first. Work handed to other threads carries it in a copied context."""
    _deadline.set(deadline)


def bound_by(until: Callable[[], float] | None) -> contextvars.Token[Callable[[], float] | None]:
    """Also cut this context's calls to `until()` (time.monotonic(), read at each call: a lease
    that renewals push back); returns the token that `unbind` takes to lift it."""
    return _bound.set(until)


def unbind(token: contextvars.Token[Callable[[], float] | None]) -> None:
    _bound.reset(token)


def seconds_left() -> float:
    deadline, bound = _deadline.get(), _bound.get()
    if bound is not None:
        deadline = bound() if deadline is None else min(deadline, bound())
    if deadline is None:
        return DEFAULT_SECONDS
    return max(deadline - time.monotonic(), FLOOR)


def reading() -> dict[str, Any]:
    """`retry=` and `timeout=` for a read."""
    return _budget(_READ_RETRIED)


def writing() -> dict[str, Any]:
    """`retry=` and `timeout=` for a write (a commit)."""
    return _budget(_WRITE_RETRIED)


def _budget(retried: tuple[type[Exception], ...]) -> dict[str, Any]:
    left = seconds_left()
    retry = retries.Retry(predicate=retries.if_exception_type(*retried), timeout=left, **_BACKOFF)
    return {"retry": retry, "timeout": left}
