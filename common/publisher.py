"""Publish envelopes to Pub/Sub and wait until every one is confirmed (or fail as a whole).

One Publish call per topic and user, all in flight at once, made straight on the gRPC channel of
Google's generated Pub/Sub client. The high-level client batches: a thread, a timer, a sequencer
and a future per message cost about four times the CPU of the call itself (bench: ~550 against
~140 µs a publish), and batching buys nothing here, since the webhook waits for every publish
before it answers Meta. Pub/Sub takes one ordering key per request, so each user's messages of a
POST travel in one request, in their order.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any

import grpc
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.types import pubsub

from common import config, log
from common.envelope import Envelope

PUBLISH_METHOD = "/google.pubsub.v1.Publisher/Publish"
# What Google's client retries on a publish; anything else (NOT_FOUND, PERMISSION_DENIED...) fails now.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNKNOWN,
    }
)
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 2.0  # seconds between attempts, doubling

_Request = pubsub.PublishRequest.pb()
_Message = pubsub.PubsubMessage.pb()
Group = tuple[str, str]  # (topic path, user): one Publish request


def by_request(items: Iterable[tuple[str, Envelope]], project: str) -> dict[Group, list[Envelope]]:
    """The Publish requests to make: one per topic and user, each user's envelopes in their order.

    Google's Pub/Sub refuses a request that mixes ordering keys (the emulator accepts it)."""
    groups: dict[Group, list[Envelope]] = {}
    for topic, envelope in items:
        groups.setdefault((f"projects/{project}/topics/{topic}", envelope.user), []).append(envelope)
    return groups


class PublishError(Exception):
    """At least one envelope was not confirmed in time: the caller must not acknowledge."""


class Publisher:
    """One channel per instance: Google's with ADC on Cloud, plain gRPC to PUBSUB_EMULATOR_HOST."""

    def __init__(self, project: str | None = None, timeout: float | None = None) -> None:
        self.project = project or config.project()
        self.timeout = timeout or config.number("PUBLISH_TIMEOUT_SECONDS")
        self._client = PublisherClient()  # kept: it owns the channel (and its credentials)
        self._publish = self._client.transport.grpc_channel.unary_unary(
            PUBLISH_METHOD,
            request_serializer=_Request.SerializeToString,
            response_deserializer=pubsub.PublishResponse.pb().FromString,
        )

    def publish_all(self, items: Iterable[tuple[str, Envelope]]) -> int:
        """Publish (topic, envelope) pairs; return how many, or raise PublishError.

        A transient failure is tried again (backing off) until PUBLISH_TIMEOUT_SECONDS is over."""
        groups = by_request(items, self.project)
        deadline = time.monotonic() + self.timeout
        backoff = FIRST_BACKOFF
        pending, failed = list(groups), {}
        while pending:
            outcome = self._attempt(pending, groups, deadline)
            pending = [
                g for g, code in outcome if code in TRANSIENT and time.monotonic() + backoff < deadline
            ]
            failed.update((g, code) for g, code in outcome if code is not None and g not in pending)
            if pending:
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        for group, code in failed.items():
            for envelope in groups[group]:
                log.error(
                    "publish failed",
                    topic=group[0],
                    message_id=envelope.message_id,
                    user=log.mask(envelope.user),
                    error=code.name,
                )
        count = sum(map(len, groups.values()))
        if failed:
            raise PublishError(f"{sum(len(groups[g]) for g in failed)} of {count} publishes failed")
        return count

    def _attempt(
        self, pending: list[Group], groups: dict[Group, list[Envelope]], deadline: float
    ) -> list[tuple[Group, grpc.StatusCode | None]]:
        """Send each pending request once: (group, None) when confirmed, else its status code.

        One request (the usual POST) is a blocking call, which costs half the CPU of a future:
        grpc completes a future on a thread of its own."""
        if len(pending) == 1:
            try:
                self._publish(*self._request(pending[0], groups[pending[0]], deadline))
            except grpc.RpcError as exc:
                return [(pending[0], exc.code())]  # type: ignore[attr-defined]  # a failed call is a grpc.Call
            return [(pending[0], None)]
        calls = [(g, self._publish.future(*self._request(g, groups[g], deadline))) for g in pending]
        return [(g, call.exception() and call.code()) for g, call in calls]

    def _request(self, group: Group, envelopes: list[Envelope], deadline: float) -> tuple[Any, ...]:
        """The arguments of one Publish call: request, timeout left, routing header."""
        path, user = group
        messages = [
            _Message(data=e.to_bytes(), ordering_key=user, attributes=e.attributes) for e in envelopes
        ]
        timeout = max(0.1, deadline - time.monotonic())
        return _Request(topic=path, messages=messages), timeout, _routing(path)


@functools.cache
def _routing(path: str) -> tuple[tuple[str, str], ...]:
    """The routing header Google's client sends with every publish, so the call is routed alike."""
    return (("x-goog-request-params", "topic=" + path.replace("/", "%2F")),)
