"""The floor webhook with our publish call: one blocking Publish RPC per message on the channel of
Google's generated client, as common/publisher.py makes it, instead of the batching client's
thread, timer and future. The least the webhook's work can cost; a yardstick, never deployed."""

import hashlib
import hmac
import json
import os

import functions_framework
from google.pubsub_v1.services.publisher import PublisherClient
from google.pubsub_v1.types import pubsub

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
    body = request.get_data()
    signature = "sha256=" + hmac.new(_secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, request.headers.get("X-Hub-Signature-256", "")):
        return "forbidden", 403
    for entry in json.loads(body)["entry"]:
        for change in entry["changes"]:
            number = change["value"]["metadata"]["phone_number_id"]
            for message in change["value"].get("messages", []):
                data = json.dumps({**message, "phone_number_id": number}).encode()
                request = _Request(topic=_topic, messages=[_Message(data=data, ordering_key=message["from"])])
                _publish(request, timeout=10)
    return "ok"
