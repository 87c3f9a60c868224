"""CPU per publish, in-process against the Pub/Sub emulator: the ways Google's client can publish.

`python -m bench.publish_cost [threads]` publishes one message per call, as the webhook does for a
usual POST, and prints the process CPU time per publish (all threads) for: the generated
client's `publish(request=...)` given a proto-plus request (as its docs show), the same given the
protobuf message wrapped without a copy (what common/bus/publisher.py does), and the high-level
batching client with ordering (the floor webhook's). Prints JSON; the machine's load moves it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from google.api_core import retry as retries
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.types import pubsub

from local import emulators as emu

PROJECT, TOPIC = "whatsbot-bench", "bench-publish-cost"
CALLS = 2000
DATA = b'{"message_id": "wamid.x", "user": "15550001", "type": "text", "text": "hello"}' * 3
ATTRIBUTES = {"message_id": "m-0123456789ab", "type": "text"}


def generated_proto_plus(client: PublisherClient, topic: str, retry: retries.Retry) -> Callable[[], Any]:
    def once() -> Any:
        message = pubsub.PubsubMessage(data=DATA, ordering_key="15550001", attributes=ATTRIBUTES)
        return client.publish(
            request=pubsub.PublishRequest(topic=topic, messages=[message]), retry=retry, timeout=10
        )

    return once


def generated_wrapped_pb(client: PublisherClient, topic: str, retry: retries.Retry) -> Callable[[], Any]:
    request_pb, message_pb = pubsub.PublishRequest.pb(), pubsub.PubsubMessage.pb()

    def once() -> Any:
        message = message_pb(data=DATA, ordering_key="15550001", attributes=ATTRIBUTES)
        request = pubsub.PublishRequest.wrap(request_pb(topic=topic, messages=[message]))
        return client.publish(request=request, retry=retry, timeout=10)

    return once


def batching(client: pubsub_v1.PublisherClient, topic: str) -> Callable[[], Any]:
    def once() -> Any:
        return client.publish(topic, DATA, ordering_key="15550001", **ATTRIBUTES).result(timeout=10)

    return once


def cpu_per_call(once: Callable[[], Any], threads: int) -> float:
    """Microseconds of process CPU per call, `threads` callers at once (after a warm-up)."""
    for _ in range(50):
        once()
    per_thread = CALLS // threads

    def work() -> None:
        for _ in range(per_thread):
            once()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return round((time.process_time() - start) / (per_thread * threads) * 1e6, 1)


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    with emu.running() as emulators, emu.pubsub_host(emulators.pubsub.address):
        os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
        generated = PublisherClient()
        topic = generated.topic_path(PROJECT, TOPIC)
        generated.create_topic(request={"name": topic})
        retry = retries.Retry(predicate=retries.if_exception_type(), timeout=10)
        high_level = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )
        cases = {
            "generated publish, proto-plus request": generated_proto_plus(generated, topic, retry),
            "generated publish, wrapped protobuf (ours)": generated_wrapped_pb(generated, topic, retry),
            "high-level batching client, ordered (the floor's)": batching(high_level, topic),
        }
        result = {name: cpu_per_call(once, threads) for name, once in cases.items()}
        high_level.stop()
    print(
        json.dumps({"threads": threads, "cpu_us_per_publish": result, "load": os.getloadavg()[0]}, indent=1)
    )


if __name__ == "__main__":
    main()
