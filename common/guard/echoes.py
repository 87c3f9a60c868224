"""Coexistence echoes: the business answered a user from the WhatsApp Business app, so the bot steps back.

Meta's `smb_message_echoes` webhook field (for a business number onboarded to the Cloud API
through a solution provider and still used in the WhatsApp Business app, "coexistence") reports
each message the business sends from the app or a linked device: `value.message_echoes[]`, each
with `from` (the business number), `to` (the user's phone number; `to_user_id` for a user known
by a business-scoped id), `id` and `timestamp`. With `ECHO_PAUSE_HOURS` set, the webhook turns
each echo into a small envelope (`type` "echo", `refused` "echo", no words) on the text topic and
the responder pauses the bot for that user for that long, as `/pause <user> <hours>h` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.bus.envelope import ECHO, Envelope
from common.meta.payload_items import as_text


@dataclass(frozen=True, slots=True)
class Echo:
    id: str
    user: str  # the business-scoped id if given, else the phone number
    to: str  # the phone number if given, else the business-scoped id
    timestamp: int
    phone_number_id: str

    def envelope(self) -> Envelope:
        return Envelope(self.id, self.user, self.to, self.phone_number_id, ECHO, self.timestamp, refused=ECHO)


def parse_echoes(body: Any) -> list[Echo]:
    """Every well-formed echo of the notification (anything else is ignored: echoes are a hint)."""
    found: list[Echo] = []
    for entry in _list(body.get("entry") if isinstance(body, dict) else None):
        for change in _list(entry.get("changes") if isinstance(entry, dict) else None):
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
            number = as_text(metadata.get("phone_number_id")) or ""
            for item in _list(value.get("message_echoes")):
                if not isinstance(item, dict):
                    continue
                message_id, phone = as_text(item.get("id")), as_text(item.get("to"))
                user_id, stamp = as_text(item.get("to_user_id")), str(item.get("timestamp") or "")
                if message_id and (phone or user_id) and stamp.isdigit() and number.isdigit():
                    user = user_id or phone or ""
                    found.append(Echo(message_id, user, phone or user, int(stamp), number))
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
