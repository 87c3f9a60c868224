"""Create topics with pull subscriptions on the emulator and read back what was published."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from google.cloud import pubsub_v1

from local.emulators import pubsub_host


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

    def pull(self, topic: str, expect: int, timeout: float = 10) -> list[Received]:
        """Pull until `expect` messages arrived (or the timeout); then make sure no more come."""
        received: list[Received] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.subscriber.pull(
                request={
                    "subscription": self._subscription(topic),
                    "max_messages": 100,
                    "return_immediately": True,  # deprecated on GCP, honoured by the emulator
                },
                timeout=5,
            )
            if response.received_messages:
                self.subscriber.acknowledge(
                    request={
                        "subscription": self._subscription(topic),
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
            for item in response.received_messages:
                message = item.message
                received.append(Received(message.data, dict(message.attributes), message.ordering_key))
            if len(received) >= expect:
                break
            time.sleep(0.05)
        return received

    def nothing_on(self, topic: str, wait: float = 0.5) -> bool:
        """True when no message arrives on the topic within `wait` seconds."""
        time.sleep(wait)
        return not self.pull(topic, expect=1, timeout=0.3)

    def close(self) -> None:
        self.subscriber.close()
        self.publisher.transport.close()
