"""The floor webhook with our publish call: one blocking Publish per message through the public
`publish(request=..., retry=..., timeout=...)` of Google's generated client, as
common/bus/publisher.py makes it, instead of the batching client's thread, timer and future.
The least the webhook's work can cost; a yardstick, never deployed."""

import os

import functions_framework
from google.api_core import exceptions
from google.api_core import retry as retries
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.types import pubsub

from bench.floor.signed import signed_messages

_secret = os.environ["WHATSAPP_APP_SECRET"].encode()
_Request, _Message = pubsub.PublishRequest.pb(), pubsub.PubsubMessage.pb()
_client = PublisherClient()
_topic = _client.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["TOPIC_TEXT"])
_transient = retries.if_exception_type(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded)


@functions_framework.http
def webhook(request):
    messages = signed_messages(request, _secret)
    if messages is None:
        return "forbidden", 403
    for data, user in messages:
        publish = _Request(topic=_topic, messages=[_Message(data=data, ordering_key=user)])
        retry = retries.Retry(predicate=_transient, initial=0.1, maximum=2.0, multiplier=2.0, timeout=10)
        _client.publish(request=pubsub.PublishRequest.wrap(publish), retry=retry, timeout=10)
    return "ok"
