"""Publish envelopes to Pub/Sub and wait until every one is confirmed (or fail as a whole).

One Publish request per topic and user (Pub/Sub takes one ordering key and at most 1,000
messages a request), through the public `publish(request=..., retry=..., timeout=...)` of
Google's generated client: its routing and client headers, its error mapping, and its retry
codes, with our backoff cut to the webhook's deadline (Meta gives up on a slow answer). The
high-level client batches: a thread, a timer, a sequencer and a future per message cost about
three times the CPU (bench/publish_cost.py: ~1,000 against ~350 µs a publish from one thread),
and batching buys nothing here, since the webhook waits for every publish before it answers.
The generated call costs ~150 µs more than the bare gRPC call it wraps (~210 µs).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterable

from google.api_core import exceptions
from google.api_core import retry as retries
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.types import pubsub

from common import config, log
from common.bus.envelope import Envelope
from common.bus.part_sent import PartSent

# The generated client's retry codes for Publish; anything else (NOT_FOUND, PERMISSION_DENIED...) fails now.
TRANSIENT = (
    exceptions.Aborted,
    exceptions.Cancelled,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
    exceptions.ResourceExhausted,
    exceptions.ServiceUnavailable,
    exceptions.Unknown,
)
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 2.0  # seconds between attempts, doubling (the client's: 0.1 to 60 s)
MAX_MESSAGES = 1000  # Pub/Sub's limit per Publish request
MAX_THREADS = 8  # users of one POST published at once

# Built as protobuf messages and wrapped without a copy: proto-plus fields cost ~25 µs a publish.
_Request = pubsub.PublishRequest.pb()
_Message = pubsub.PubsubMessage.pb()
Group = tuple[str, str, int]  # (topic path, user, part): one Publish request
Chain = tuple[str, str]  # (topic path, user): its parts, published one after the other
Published = Envelope | PartSent  # a PartSent's user is "": no ordering key


def by_request(items: Iterable[tuple[str, Published]], project: str) -> dict[Group, list[Published]]:
    """The Publish requests to make: one per topic and user (parts of MAX_MESSAGES beyond that),
    each user's envelopes in their order.

    Google's Pub/Sub refuses a request that mixes ordering keys (the emulator accepts it)."""
    by_user: dict[Chain, list[Published]] = {}
    for topic, envelope in items:
        by_user.setdefault((f"projects/{project}/topics/{topic}", envelope.user), []).append(envelope)
    return {
        (path, user, start // MAX_MESSAGES): envelopes[start : start + MAX_MESSAGES]
        for (path, user), envelopes in by_user.items()
        for start in range(0, len(envelopes), MAX_MESSAGES)
    }


class PublishError(Exception):
    """At least one envelope was not confirmed in time: the caller must not acknowledge."""


class Publisher:
    """One generated client per instance: ADC on Cloud, PUBSUB_EMULATOR_HOST locally (it reads it)."""

    def __init__(self, project: str | None = None, timeout: float | None = None) -> None:
        self.project = project or config.project()
        self.timeout = timeout or config.number("PUBLISH_TIMEOUT_SECONDS")
        self._client = PublisherClient()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def publish_all(self, items: Iterable[tuple[str, Published]]) -> int:
        """Publish (topic, envelope) pairs; return how many, or raise PublishError.

        Every user's first request goes out at once; a user's next part only once the one before
        is confirmed (so order holds), and none after a part that failed."""
        groups = by_request(items, self.project)
        deadline = time.monotonic() + self.timeout
        chains: dict[Chain, list[Group]] = {}
        for group in groups:
            chains.setdefault(group[:2], []).append(group)
        if len(chains) == 1:  # the usual POST: one user, published from this thread
            outcomes = [self._chain(next(iter(chains.values())), groups, deadline)]
        else:
            pool = self._threads()
            futures = [pool.submit(self._chain, chain, groups, deadline) for chain in chains.values()]
            outcomes = [future.result() for future in futures]
        failed = {group: why for outcome in outcomes for group, why in outcome.items()}
        for group, why in failed.items():
            for envelope in groups[group]:
                log.error(
                    "publish failed",
                    topic=group[0],
                    message_id=envelope.message_id,
                    user=log.mask(envelope.user),
                    error=why,
                )
        count = sum(map(len, groups.values()))
        if failed:
            raise PublishError(f"{sum(len(groups[g]) for g in failed)} of {count} publishes failed")
        return count

    def _chain(
        self, parts: list[Group], groups: dict[Group, list[Published]], deadline: float
    ) -> dict[Group, str]:
        """Publish one user's parts in order; return those not confirmed, each with why."""
        for index, group in enumerate(parts):
            try:
                self._publish(group, groups[group], deadline)
            except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
                # RetryError: still transient when the deadline came; its cause says what it was
                why = _reason(exc.cause if isinstance(exc, exceptions.RetryError) else exc)
                return {group: why} | {later: "an earlier part failed" for later in parts[index + 1 :]}
        return {}

    def _publish(self, group: Group, envelopes: list[Published], deadline: float) -> None:
        """One Publish request, tried again on a transient failure (backing off) until the deadline."""
        path, user, _ = group
        messages = [
            _Message(data=e.to_bytes(), ordering_key=user, attributes=e.attributes) for e in envelopes
        ]
        left = max(0.1, deadline - time.monotonic())
        retry = retries.Retry(
            predicate=retries.if_exception_type(*TRANSIENT),
            initial=FIRST_BACKOFF,
            maximum=MAX_BACKOFF,
            multiplier=2.0,
            timeout=left,
        )
        request = pubsub.PublishRequest.wrap(_Request(topic=path, messages=messages))
        self._client.publish(
            request=request, retry=retry, timeout=left
        )  # timeout: per attempt, to the deadline

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        """Created on the first POST that holds several users (most hold one)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="publish")
            return self._pool


def _reason(exc: BaseException | None) -> str:
    """The gRPC status name (UNAVAILABLE, NOT_FOUND...): no message text, which may quote a path."""
    code = getattr(exc, "grpc_status_code", None)
    return code.name if code is not None else type(exc).__name__ if exc else "timed out"
