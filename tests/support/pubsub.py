"""Create topics with pull subscriptions on the emulator and read back what was published."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from google.cloud import pubsub_v1

from local.emulators import pubsub_host

QUIET = 0.7  # seconds of silence that make "no more messages" believable on a loaded machine


@dataclass(frozen=True)
class Received:
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


class Topics:
    """Topics of one project on the emulator, each with one ordered pull subscription."""

    def __init__(self, project: str, host: str | None = None) -> None:
        self.project = project
        with pubsub_host(host or os.environ["PUBSUB_EMULATOR_HOST"]):
            self.publisher = pubsub_v1.PublisherClient()
            self.subscriber = pubsub_v1.SubscriberClient()

    def create(self, *names: str) -> None:
        for name in names:
            topic = self.publisher.topic_path(self.project, name)
            self.publisher.create_topic(request={"name": topic})
            self.subscriber.create_subscription(
                request={
                    "name": self._subscription(name),
                    "topic": topic,
                    "enable_message_ordering": True,
                }
            )

    def _subscription(self, topic: str) -> str:
        return self.subscriber.subscription_path(self.project, f"{topic}-test")

    def pull(self, topic: str, expect: int, timeout: float = 10, quiet: float = QUIET) -> list[Received]:
        """Pull until `expect` messages arrived (or the timeout), then listen `quiet` seconds more.

        Whatever arrives meanwhile is returned too, so a caller that expects N and unpacks or
        counts the result fails on a double publish.
        """
        received: list[Received] = []
        deadline = time.monotonic() + timeout
        while len(received) < expect and time.monotonic() < deadline:
            received += self._pull_once(topic)
            if len(received) < expect:
                time.sleep(0.05)
        silence_until = time.monotonic() + quiet
        while True:  # at least one look, however short `quiet` is
            received += self._pull_once(topic)
            if time.monotonic() >= silence_until:
                return received
            time.sleep(0.05)

    def nothing_on(self, topic: str, wait: float = QUIET) -> bool:
        """True when no message arrives on the topic within `wait` seconds (at least one look)."""
        return not self.pull(topic, expect=0, quiet=wait)

    def _pull_once(self, topic: str) -> list[Received]:
        subscription = self._subscription(topic)
        response = self.subscriber.pull(
            request={
                "subscription": subscription,
                "max_messages": 100,
                "return_immediately": True,  # deprecated on GCP, honoured by the emulator
            },
            timeout=5,
        )
        if response.received_messages:
            self.subscriber.acknowledge(
                request={
                    "subscription": subscription,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
        return [
            Received(item.message.data, dict(item.message.attributes), item.message.ordering_key)
            for item in response.received_messages
        ]

    def close(self) -> None:
        self.subscriber.close()
        self.publisher.transport.close()
