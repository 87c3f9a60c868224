"""The floor webhook: the least a webhook must do (signature on the raw body, publish with the
user's ordering key, wait for every ack, 200). A yardstick for `make bench`, never deployed."""

import hashlib
import hmac
import json
import os

import functions_framework
from google.cloud import pubsub_v1

_secret = os.environ["WHATSAPP_APP_SECRET"].encode()
_client = pubsub_v1.PublisherClient(
    batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001),
    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
)
_topic = _client.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["TOPIC_TEXT"])


@functions_framework.http
def webhook(request):
    body = request.get_data()
    signature = "sha256=" + hmac.new(_secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, request.headers.get("X-Hub-Signature-256", "")):
        return "forbidden", 403
    futures = []
    for entry in json.loads(body)["entry"]:
        for change in entry["changes"]:
            number = change["value"]["metadata"]["phone_number_id"]
            for message in change["value"].get("messages", []):
                data = json.dumps({**message, "phone_number_id": number}).encode()
                futures.append(_client.publish(_topic, data, ordering_key=message["from"]))
    for future in futures:
        future.result(timeout=10)
    return "ok"
