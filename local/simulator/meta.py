"""The simulator playing Meta: webhook payloads as Meta builds them, signed and POSTed to the webhook.

Like Meta, it retries a POST that is not answered 200 (here with back-off over about 15 s, not
for days), and it reports the bot's own messages back as statuses: sent, delivered, read, each
with the callback data the bot sent the message with.
Its log lines name a message as every function does: common.log turns `message_id` into its digest
(a wamid holds a phone number).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import requests

from common import log
from common.meta.signature import sign
from local.simulator.state import (
    DISPLAY_PHONE_NUMBER,
    PHONE_NUMBER_ID,
    WABA_ID,
    ChatMessage,
    Media,
    User,
)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between attempts after a non-200 answer


def notification(value: dict[str, Any]) -> dict[str, Any]:
    """Wrap one change value the way every webhook POST does."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }


def message_payload(user: User, message: ChatMessage, media: Media | None, media_url: str) -> dict[str, Any]:
    """A user's message as Meta posts it: contacts (profile, wa_id / user_id) and messages[]."""
    contact: dict[str, Any] = {"profile": {"name": user.name}}
    item: dict[str, Any] = {"id": message.id, "timestamp": str(int(message.timestamp)), "type": message.type}
    if user.phone:
        contact["wa_id"] = user.phone
        item["from"] = user.phone
    if user.user_id:
        contact["user_id"] = user.user_id
        item["from_user_id"] = user.user_id
    if message.context_id:
        item["context"] = {"from": DISPLAY_PHONE_NUMBER, "id": message.context_id}
    if message.type == "text":
        item["text"] = {"body": message.text or ""}
    elif message.type == "interactive":  # a tap on one of the bot's reply buttons
        item["interactive"] = {"type": "button_reply", "button_reply": message.extra.get("button_reply")}
    elif message.type == "audio" and media is not None:
        item["audio"] = {
            "mime_type": media.mime_type,
            "sha256": media.sha256_b64,
            "id": media.id,
            "url": media_url,
            "voice": message.voice,
        }
    elif message.type in ("image", "document", "sticker") and media is not None:
        item[message.type] = {"mime_type": media.mime_type, "sha256": media.sha256_b64, "id": media.id}
        item[message.type] |= {"url": media_url}
        if message.text and message.type != "sticker":
            item[message.type]["caption"] = message.text
        if message.extra.get("filename"):
            item[message.type]["filename"] = message.extra["filename"]
    return notification({"contacts": [contact], "messages": [item]})


def status_payload(user: User, message: ChatMessage, status: str) -> dict[str, Any]:
    """A status for one of the bot's messages, with the pricing block Meta adds to sent/delivered."""
    item: dict[str, Any] = {
        "id": message.id,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": user.phone or user.user_id,
    }
    if status != "read":
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "type": "free_customer_service"}
    if message.callback:
        item["biz_opaque_callback_data"] = message.callback
    return notification({"statuses": [item]})


def described(payload: dict[str, Any]) -> dict[str, str]:
    """Log fields for a notification: what it carries and the digest of its message's id."""
    value = payload["entry"][0]["changes"][0]["value"]
    if value.get("statuses"):
        status = value["statuses"][0]
        return {"item": "status", "status": status["status"], "message_id": status["id"]}
    return {"item": "message", "message_id": value["messages"][0]["id"]}


class Meta:
    """POSTs signed notifications to the webhook; statuses go through a background queue."""

    def __init__(
        self, webhook_url: str, app_secret: str, retry_delays: tuple[float, ...] = RETRY_DELAYS
    ) -> None:
        self.webhook_url, self.app_secret, self.retry_delays = webhook_url, app_secret, retry_delays
        self.session = requests.Session()
        self._statuses: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._post_statuses, name="statuses", daemon=True).start()

    def post(self, payload: dict[str, Any]) -> tuple[bool, str]:
        """POST until answered 200 (a few tries); returns (delivered, why not)."""
        body = json.dumps(payload, separators=(",", ":")).encode()  # signed exactly as sent
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, self.app_secret),
            "User-Agent": "facebookexternalua",
        }
        why, fields = "", described(payload)
        for attempt, delay in enumerate((0.0, *self.retry_delays), 1):
            time.sleep(delay)
            started = time.monotonic()
            try:
                answer = self.session.post(self.webhook_url, data=body, headers=headers, timeout=20)
            except requests.RequestException as exc:
                why = f"webhook unreachable ({type(exc).__name__})"
            else:
                millis = round((time.monotonic() - started) * 1000)
                log.info(
                    "simulator: webhook POST", answer=answer.status_code, attempt=attempt, ms=millis, **fields
                )
                if answer.status_code == 200:
                    return True, ""
                why = f"webhook answered {answer.status_code}"
        log.warning("simulator: webhook POST gave up", reason=why, attempts=attempt, **fields)
        return False, why

    def report(self, user: User, message: ChatMessage, status: str) -> None:
        """Queue a status for a bot message (the webhook logs and acknowledges it)."""
        self._statuses.put(status_payload(user, message, status))

    def _post_statuses(self) -> None:
        while True:
            self.post(self._statuses.get())
