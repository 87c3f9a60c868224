"""The floor webhook: the least a webhook must do (signature on the raw body, publish with the
user's ordering key through Google's batching client, wait for every ack, 200). A yardstick for
`make bench`, never deployed."""

import os

import functions_framework
from google.cloud import pubsub_v1

from bench.floor.signed import signed_messages

_secret = os.environ["WHATSAPP_APP_SECRET"].encode()
_client = pubsub_v1.PublisherClient(
    batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001),
    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
)
_topic = _client.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["TOPIC_TEXT"])


@functions_framework.http
def webhook(request):
    messages = signed_messages(request, _secret)
    if messages is None:
        return "forbidden", 403
    futures = [_client.publish(_topic, data, ordering_key=user) for data, user in messages]
    for future in futures:
        future.result(timeout=10)
    return "ok"
