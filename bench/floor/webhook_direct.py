"""The floor webhook with our publish call: one blocking Publish RPC per message on the channel of
Google's generated client, as common/bus/publisher.py makes it, instead of the batching client's
thread, timer and future. The least the webhook's work can cost; a yardstick, never deployed."""

import os

import functions_framework
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.types import pubsub

from bench.floor.signed import signed_messages

_secret = os.environ["WHATSAPP_APP_SECRET"].encode()
_Request, _Message = pubsub.PublishRequest.pb(), pubsub.PubsubMessage.pb()
_publish = PublisherClient().transport.grpc_channel.unary_unary(
    "/google.pubsub.v1.Publisher/Publish",
    request_serializer=_Request.SerializeToString,
    response_deserializer=pubsub.PublishResponse.pb().FromString,
)
_topic = f"projects/{os.environ['GOOGLE_CLOUD_PROJECT']}/topics/{os.environ['TOPIC_TEXT']}"


@functions_framework.http
def webhook(request):
    messages = signed_messages(request, _secret)
    if messages is None:
        return "forbidden", 403
    for data, user in messages:
        _publish(_Request(topic=_topic, messages=[_Message(data=data, ordering_key=user)]), timeout=10)
    return "ok"
