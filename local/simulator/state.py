"""The simulator's memory: users, both sides of every conversation, media, and live events.

One lock (a Condition) guards everything, so that the CLI can wait for a reply and the page's
event streams see every change in order.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import queue
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Our business number, as Meta would describe it (the same ids as the webhook fixtures).
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
BUSINESS_NAME = "WhatsBot"
TYPING_SECONDS = 25  # WhatsApp shows the typing indicator this long, or until the reply


def wamid(address: str) -> str:
    """A message id shaped like Meta's: base64 of a small binary record holding the address."""
    raw = b"\x1c\x18" + bytes([len(address)]) + address.encode() + b"\x15\x02\x00\x12\x18\x14"
    raw += secrets.token_hex(10).upper().encode() + b"\x00"
    return "wamid." + base64.b64encode(raw).decode()


def media_id() -> str:
    return str(secrets.randbelow(9 * 10**15) + 10**15)  # 16 digits, like Meta's


@dataclass(frozen=True, slots=True)
class User:
    """A WhatsApp user: a phone number, or only a business-scoped user id (`US.…`)."""

    phone: str | None
    name: str
    user_id: str | None = None

    @property
    def key(self) -> str:
        return self.phone or self.user_id or ""


@dataclass(frozen=True, slots=True)
class Media:
    id: str
    data: bytes
    mime_type: str

    @property
    def sha256_hex(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def sha256_b64(self) -> str:  # webhook payloads carry it this way
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One bubble. `sender` is "user" (to the bot) or "bot"; `status` is WhatsApp's tick state."""

    id: str
    user: str  # User.key
    sender: str
    type: str
    timestamp: float
    text: str | None = None
    media_id: str | None = None
    mime_type: str | None = None
    voice: bool = False
    context_id: str | None = None  # the message this one quotes
    status: str = "pending"  # user: pending -> delivered -> read | failed; bot: sent -> delivered -> read
    error: str | None = None
    seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # other message types, as the bot sent them
    callback: str | None = None  # the bot's biz_opaque_callback_data: its statuses carry it back

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Store:
    """Thread-safe state of one simulator process (in memory: a restart forgets everything)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.users: dict[str, User] = {}
        self.messages: dict[str, ChatMessage] = {}
        self.media: dict[str, Media] = {}
        self._seq = itertools.count(1)
        self._subscribers: set[queue.Queue[dict[str, Any]]] = set()

    # users ------------------------------------------------------------------------------------
    def add_user(self, phone: str | None, name: str, user_id: str | None = None) -> User:
        user = User(phone or None, name, user_id or None)
        with self.cond:
            self.users[user.key] = user
            self._publish({"kind": "user", "user": asdict(user) | {"key": user.key}})
        return user

    def find_user(self, address: str | None) -> User | None:
        """By phone number or business-scoped user id (Graph sends use `to` or `recipient`)."""
        with self.cond:
            for user in self.users.values():
                if address and address in (user.phone, user.user_id):
                    return user
        return None

    # messages ---------------------------------------------------------------------------------
    def add_message(self, message: ChatMessage) -> ChatMessage:
        with self.cond:
            message = replace(message, seq=next(self._seq))
            self.messages[message.id] = message
            self._publish({"kind": "message", "message": message.to_json()})
            self.cond.notify_all()
        return message

    def update_message(self, message_id: str, **changes: Any) -> ChatMessage | None:
        with self.cond:
            old = self.messages.get(message_id)
            if old is None:
                return None
            new = replace(old, **changes)
            self.messages[message_id] = new
            self._publish({"kind": "message", "message": new.to_json()})
            self.cond.notify_all()
        return new

    def conversation(self, user: str) -> list[ChatMessage]:
        with self.cond:
            return sorted((m for m in self.messages.values() if m.user == user), key=lambda m: m.seq)

    def set_typing(self, user: str) -> None:
        self._publish({"kind": "typing", "user": user, "until": time.time() + TYPING_SECONDS})

    def wait_replies(self, message_id: str, timeout: float, settle: float = 0.3) -> list[ChatMessage]:
        """The bot's messages answering `message_id`: quoting it, or unquoted ones sent after it.

        Waits up to `timeout` for the first, then `settle` seconds more for the other parts of a
        long answer, which arrive as several messages.
        """
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self._replies(message_id):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self.cond.wait(remaining)
            settle_until = time.monotonic() + settle
            while (left := settle_until - time.monotonic()) > 0:
                self.cond.wait(left)
            return self._replies(message_id)

    def _replies(self, message_id: str) -> list[ChatMessage]:
        asked = self.messages[message_id]
        found = [
            m
            for m in self.messages.values()
            if m.sender == "bot"
            and m.user == asked.user
            and (m.context_id == message_id or (m.context_id is None and m.seq > asked.seq))
        ]
        return sorted(found, key=lambda m: m.seq)

    # media ------------------------------------------------------------------------------------
    def add_media(self, data: bytes, mime_type: str) -> Media:
        media = Media(media_id(), data, mime_type)
        with self.cond:
            self.media[media.id] = media
        return media

    # live events ------------------------------------------------------------------------------
    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        events: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        with self.cond:
            self._subscribers.add(events)
        return events

    def unsubscribe(self, events: queue.Queue[dict[str, Any]]) -> None:
        with self.cond:
            self._subscribers.discard(events)

    def _publish(self, event: dict[str, Any]) -> None:
        with self.cond:
            for events in list(self._subscribers):
                try:
                    events.put_nowait(event)
                except queue.Full:  # a stalled page: drop it, it reloads the state on reconnect
                    self._subscribers.discard(events)

    def snapshot(self) -> dict[str, Any]:
        with self.cond:
            return {
                "business": {
                    "name": BUSINESS_NAME,
                    "phone_number_id": PHONE_NUMBER_ID,
                    "display_phone_number": DISPLAY_PHONE_NUMBER,
                },
                "users": [asdict(u) | {"key": u.key} for u in self.users.values()],
                "messages": [m.to_json() for m in sorted(self.messages.values(), key=lambda m: m.seq)],
            }
