"""Topics with ordered push subscriptions on the Pub/Sub emulator: how messages reach functions locally.

With `dead_letters` (make dev) the subscriptions get deploy.sh's whole shape, set at creation:
ordering, a dead-letter topic after `max_delivery_attempts`, retry back-off, an ack deadline of
one attempt, 7 days' retention; dead letters (from either subscription: the transcriber's carries
every message, texts too) are pushed to the responder (the apology route) and kept in a pull
subscription for inspection. The emulator, unlike Google's Pub/Sub, never dead-letters a message
of an ordered push subscription: after the last attempt it just stops pushing it (locally the
apology route is reached only from an unordered one; see tests/test_ordering.py). Without
`dead_letters` (most tests): ordering and the ack deadline only, so that a nacked message comes
back at once. `unordered` topics (Meta's statuses of our sent parts, TOPIC_STATUS) get a push
subscription with no ordering and no dead-letter topic, kept 10 minutes with `dead_letters`, as
deploy.sh makes it: a status waits behind nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from local import emulators as emu

MIN_RETRY_SECONDS, MAX_RETRY_SECONDS = 10, 600  # deploy.sh's --min-retry-delay / --max-retry-delay
RETENTION_SECONDS = 7 * 24 * 3600  # --message-retention-duration=7d
STATUS_RETENTION_SECONDS = 600  # the status subscription's: a status that late helps nobody


@dataclass(frozen=True)
class DeadLetters:
    """Where messages go after `max_delivery_attempts` failed pushes, and who is told."""

    topic: str
    endpoint: str  # the responder: it sends the stored reply or an apology
    max_delivery_attempts: int = 5
    retry_seconds: tuple[int, int] = (MIN_RETRY_SECONDS, MAX_RETRY_SECONDS)  # tests wait less


def subscriptions(
    project: str,
    routes: Mapping[str, str],
    ack_deadline: int,
    dead_letters: DeadLetters | None,
    unordered: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The create_subscription requests, in order: one push subscription per topic (ordered
    `routes`, then `unordered`), then dead letters."""
    from google.protobuf.duration_pb2 import Duration

    def topic_path(topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def path(name: str) -> str:
        return f"projects/{project}/subscriptions/{name}"

    base: dict[str, Any] = {"ack_deadline_seconds": max(10, min(600, ack_deadline))}
    if dead_letters is not None:
        base["message_retention_duration"] = Duration(seconds=RETENTION_SECONDS)
    shortest, longest = dead_letters.retry_seconds if dead_letters else (MIN_RETRY_SECONDS, MAX_RETRY_SECONDS)
    retry = {
        "retry_policy": {
            "minimum_backoff": Duration(seconds=shortest),
            "maximum_backoff": Duration(seconds=longest),
        }
    }
    found = []
    for topic, endpoint in routes.items():
        request = {
            **base,
            "name": path(f"{topic}-push"),
            "topic": topic_path(topic),
            "push_config": {"push_endpoint": endpoint},
            "enable_message_ordering": True,
        }
        if dead_letters is not None:
            request["dead_letter_policy"] = {
                "dead_letter_topic": topic_path(dead_letters.topic),
                "max_delivery_attempts": dead_letters.max_delivery_attempts,
            }
            request |= retry
        found.append(request)
    for topic, endpoint in (unordered or {}).items():
        request = {
            **base,
            "name": path(f"{topic}-push"),
            "topic": topic_path(topic),
            "push_config": {"push_endpoint": endpoint},
        }
        if dead_letters is not None:
            request |= retry | {"message_retention_duration": Duration(seconds=STATUS_RETENTION_SECONDS)}
        found.append(request)
    if dead_letters is not None:
        where = topic_path(dead_letters.topic)
        found.append(  # no dead-letter policy of its own, so nothing loops
            {
                **base,
                **retry,
                "name": path(f"{dead_letters.topic}-apology"),
                "topic": where,
                "push_config": {"push_endpoint": dead_letters.endpoint},
            }
        )
        found.append({**base, "name": path(f"{dead_letters.topic}-inspect"), "topic": where})
    return found


def wire_push(
    address: str,
    project: str,
    routes: Mapping[str, str],
    ack_deadline: int = 60,
    dead_letters: DeadLetters | None = None,
    unordered: Mapping[str, str] | None = None,
) -> None:
    """Create every topic, then every subscription (topic -> push endpoint URL in `routes` and
    `unordered`)."""
    from google.cloud import pubsub_v1

    topics = [*routes, *(unordered or {}), *([dead_letters.topic] if dead_letters else [])]
    with emu.pubsub_host(address):
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        for topic in topics:
            publisher.create_topic(request={"name": publisher.topic_path(project, topic)})
        for request in subscriptions(project, routes, ack_deadline, dead_letters, unordered):
            subscriber.create_subscription(request=request)
    except Exception as exc:
        raise emu.EmulatorError(f"could not create the topics and push subscriptions: {exc}") from exc
    finally:
        subscriber.close()
        publisher.transport.close()
