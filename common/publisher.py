"""Publish envelopes to Pub/Sub and wait until every one is confirmed (or fail as a whole)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future

from google.cloud import pubsub_v1

from common import config, log
from common.envelope import Envelope


class PublishError(Exception):
    """At least one envelope was not confirmed in time: the caller must not acknowledge."""


class Publisher:
    """One client per instance, ordering on, so one user's messages stay in order."""

    def __init__(self, project: str | None = None, timeout: float | None = None) -> None:
        self.project = project or config.project()
        self.timeout = timeout or config.number("PUBLISH_TIMEOUT_SECONDS")
        self.client = pubsub_v1.PublisherClient(
            # The webhook waits for every publish before answering Meta: batch for 1 ms, not 10.
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )

    def topic_path(self, topic: str) -> str:
        return self.client.topic_path(self.project, topic)

    def publish_all(self, items: Iterable[tuple[str, Envelope]]) -> int:
        """Publish (topic, envelope) pairs concurrently; return how many, or raise PublishError."""
        pending = []
        for topic, envelope in items:
            path = self.topic_path(topic)
            future = self.client.publish(
                path,
                envelope.to_bytes(),
                ordering_key=envelope.user,
                timeout=self.timeout,
                **envelope.attributes,
            )
            pending.append((path, envelope, future))
        deadline = time.monotonic() + self.timeout + 1
        failures = 0
        for path, envelope, future in pending:
            try:
                future.result(timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:  # any failure means Meta must retry the whole POST
                failures += 1
                future.add_done_callback(self._resume_on_failure(path, envelope.user))
                log.error(
                    "publish failed",
                    topic=path,
                    message_id=envelope.message_id,
                    user=log.mask(envelope.user),
                    error=type(exc).__name__,
                )
        if failures:
            raise PublishError(f"{failures} of {len(pending)} publishes failed")
        return len(pending)

    def _resume_on_failure(self, path: str, ordering_key: str) -> Callable[[Future], None]:
        """A failed publish pauses its ordering key; resume it once the failure lands (or now)."""

        def resume(future: Future) -> None:
            if future.exception() is not None:
                with contextlib.suppress(RuntimeError):  # "not paused": nothing to do
                    self.client.resume_publish(path, ordering_key)

        return resume
