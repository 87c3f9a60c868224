"""Per-user conversation history in Firestore, within a budget of turns and characters.

One document per user: {turns: [{role, content, messageId}], resetBy, expireAt}. One write per turn:
a server-side array union, so concurrent messages of one user never overwrite each other; when
the budget must drop old turns, the trimmed list is written with a precondition on the version
that was read, and falls back to the union (trimming next time) if another turn came first.
A write the client retries after its answer was lost adds no turn twice (the union holds equal
turns once); its `Increment` counters may count that turn twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import FailedPrecondition
from google.cloud import firestore

from common.store.claims import doc_id
from common.store.db import reading, writing

COLLECTION = "conversations"
Turn = dict[str, str]  # {"role": "user"|"assistant", "content": …, "messageId": …}


def path(user: str) -> str:
    """The user's conversation document (history, daily counters, voice choice)."""
    return f"{COLLECTION}/{doc_id(user)}"


def ref(db: firestore.Client, user: str) -> firestore.DocumentReference:
    return db.document(path(user))


@dataclass(frozen=True, slots=True)
class Budget:
    max_turns: int  # messages kept (user and assistant each count one)
    max_chars: int  # total characters kept, a cheap stand-in for tokens (~4 chars per token)

    def trim(self, turns: list[Turn]) -> list[Turn]:
        """Drop the oldest turns until both limits hold. The newest user turn and what follows it
        are always kept, and what is kept starts with a user turn: never a lone assistant turn."""
        users = [i for i, t in enumerate(turns) if t.get("role") == "user"]
        if not users:
            return []
        last_user = users[-1]
        start = min(max(0, len(turns) - max(self.max_turns, 1)), last_user)
        total = sum(len(t["content"]) for t in turns[start:])
        while start < last_user and (total > self.max_chars or turns[start].get("role") != "user"):
            total -= len(turns[start]["content"])
            start += 1
        return turns[start:]


@dataclass(frozen=True, slots=True)
class Conversation:
    turns: list[Turn]
    version: datetime | None  # the document's update time, for a conditional write; None if it does not exist
    reset_by: str | None = None  # hash of the /reset message that last emptied it
    counters: dict[str, Any] = field(default_factory=dict)  # the usage* fields (guardrails)
    voice: str | None = None  # the user's `/voice on|off` (common/responder/voice_reply.py)

    def reply_to(self, message_id: str) -> str | None:
        """The stored answer to a message, if an earlier attempt got that far."""
        turn = self.answer_to(message_id)
        return None if turn is None else turn["content"]

    def answer_to(self, message_id: str) -> Turn | None:
        """The stored assistant turn answering a message, with what it carries (a question's mark)."""
        for turn in reversed(self.turns):
            if turn.get("role") == "assistant" and turn.get("messageId") == message_id:
                return turn
        return None


class History:
    def __init__(self, db: firestore.Client, budget: Budget, ttl: timedelta) -> None:
        self.db, self.budget, self.ttl = db, budget, ttl

    def load(self, user: str) -> Conversation:
        snapshot = ref(self.db, user).get(**reading())  # 1 read
        data = snapshot.to_dict() or {}
        turns = [
            t for t in data.get("turns", []) if isinstance(t, dict) and isinstance(t.get("content"), str)
        ]
        reset_by = data.get("resetBy") if isinstance(data.get("resetBy"), str) else None
        counters = {k: v for k, v in data.items() if k.startswith("usage")}
        voice = data.get("voice") if isinstance(data.get("voice"), str) else None
        version = snapshot.update_time if snapshot.exists else None
        return Conversation(turns, version, reset_by, counters, voice)

    def append(
        self,
        user: str,
        conversation: Conversation,
        new_turns: list[Turn],
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Add the new turns in 1 write; trim to the budget when the document has not moved.
        `fields` (the guardrails' daily counters) go into the same write."""
        document, now, fields = ref(self.db, user), datetime.now(UTC), fields or {}
        kept = self.budget.trim([*conversation.turns, *new_turns])
        if conversation.version is not None and len(kept) < len(conversation.turns) + len(new_turns):
            try:
                trimmed = {"turns": kept, "expireAt": now + self.ttl, **fields}
                option = self.db.write_option(last_update_time=conversation.version)
                document.update(trimmed, option=option, **writing())
                return
            except FailedPrecondition:
                pass  # another turn landed since we read: append now, trim next time
        added = {"turns": firestore.ArrayUnion(new_turns), "expireAt": now + self.ttl, **fields}
        document.set(added, merge=True, **writing())

    def reset(self, user: str, message_id: str, retry: bool = False) -> None:
        """Forget the user's turns (1 write), marking which /reset did it. A retried /reset (a
        takeover) whose first attempt got that far does nothing (1 read more): turns added since
        then stay."""
        mark = doc_id(message_id)
        if retry and self.load(user).reset_by == mark:
            return
        expire = datetime.now(UTC) + self.ttl
        # merged: the day's usage counters survive a /reset (it is no way around a daily limit);
        # the /voice choice goes with the conversation
        emptied = {"turns": [], "resetBy": mark, "expireAt": expire, "voice": firestore.DELETE_FIELD}
        ref(self.db, user).set(emptied, merge=True, **writing())

    def choose_voice(self, user: str, choice: str) -> None:
        """Store the user's `/voice on|off` with their conversation (1 write)."""
        chosen = {"voice": choice, "expireAt": datetime.now(UTC) + self.ttl}
        ref(self.db, user).set(chosen, merge=True, **writing())

    def voice(self, user: str) -> str | None:
        """The user's `/voice` choice alone (1 read of one field), when no turn loaded it."""
        snapshot = ref(self.db, user).get(field_paths=["voice"], **reading())
        choice = (snapshot.to_dict() or {}).get("voice")
        return choice if isinstance(choice, str) else None
