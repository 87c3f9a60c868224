"""Topics with ordered push subscriptions on the Pub/Sub emulator: how messages reach functions locally."""

from __future__ import annotations

from collections.abc import Mapping

from local import emulators as emu


def wire_push(address: str, project: str, routes: Mapping[str, str], ack_deadline: int = 60) -> None:
    """Create each topic and a push subscription from it to its endpoint (topic -> URL)."""
    from google.cloud import pubsub_v1

    with emu.pubsub_host(address):
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        for topic, endpoint in routes.items():
            topic_path = publisher.topic_path(project, topic)
            publisher.create_topic(request={"name": topic_path})
            subscriber.create_subscription(
                request={
                    "name": subscriber.subscription_path(project, f"{topic}-push"),
                    "topic": topic_path,
                    "push_config": {"push_endpoint": endpoint},
                    "enable_message_ordering": True,
                    "ack_deadline_seconds": ack_deadline,  # push: how long a function may take
                }
            )
    except Exception as exc:
        raise emu.EmulatorError(f"could not create the topics and push subscriptions: {exc}") from exc
    finally:
        subscriber.close()
        publisher.transport.close()
