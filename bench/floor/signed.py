"""What both floor webhooks do before they publish: the signature on the raw body, then each
message as its JSON with the business number, keyed by its sender. A yardstick, never deployed."""

import hashlib
import hmac
import json


def signed_messages(request, secret: bytes) -> list[tuple[bytes, str]] | None:
    """(data, ordering key) per message; None when the signature does not match."""
    body = request.get_data()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, request.headers.get("X-Hub-Signature-256", "")):
        return None
    messages = []
    for entry in json.loads(body)["entry"]:
        for change in entry["changes"]:
            number = change["value"]["metadata"]["phone_number_id"]
            for message in change["value"].get("messages", []):
                data = json.dumps({**message, "phone_number_id": number}).encode()
                messages.append((data, message["from"]))
    return messages
