"""Per-user conversation history in Firestore, within a budget of turns and characters.

One document per user: {turns: [{role, content, messageId}], expireAt}. Appends are atomic
server-side array unions, so concurrent messages from one user lose nothing; the same commit
moves the message's claim to `sending` (see claims.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

from common.claims import doc_id

COLLECTION = "conversations"
Turn = dict[str, str]  # {"role": "user"|"assistant", "content": …, "messageId": …}


@dataclass(frozen=True, slots=True)
class Budget:
    max_turns: int  # messages kept (user and assistant each count one)
    max_chars: int  # total characters kept, a cheap stand-in for tokens (~4 chars per token)

    def trim(self, turns: list[Turn]) -> list[Turn]:
        """Drop the oldest turns until both limits hold; the newest turn is always kept."""
        kept = turns[-self.max_turns :] if self.max_turns > 0 else []
        total = sum(len(t["content"]) for t in kept)
        while len(kept) > 1 and total > self.max_chars:
            total -= len(kept.pop(0)["content"])
        if kept and kept[0]["role"] == "assistant" and len(kept) > 1:
            kept = kept[1:]  # a conversation starts with the user
        return kept


class History:
    def __init__(self, db: firestore.Client, budget: Budget, ttl: timedelta) -> None:
        self.db, self.budget, self.ttl = db, budget, ttl

    def ref(self, user: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(doc_id(user))

    def load(self, user: str) -> list[Turn]:
        """The stored turns (1 read); the prompt is built from these."""
        data = self.ref(user).get().to_dict() or {}
        return [t for t in data.get("turns", []) if isinstance(t, dict) and "content" in t]

    def append(
        self,
        user: str,
        stored: list[Turn],
        new_turns: list[Turn],
        claim_ref: firestore.DocumentReference,
        claim_fields: dict[str, Any],
    ) -> None:
        """Append turns and update the claim in one atomic batch: no read, no contention.

        ArrayUnion appends server-side, so concurrent messages of one user never overwrite each
        other (a read-modify-write transaction would, or would abort under contention). What the
        budget drops is removed with ArrayRemove, computed from the turns loaded for the prompt.
        """
        ref, now = self.ref(user), datetime.now(UTC)
        kept = self.budget.trim([*stored, *new_turns])
        dropped = [t for t in stored if t not in kept]
        batch = self.db.batch()
        batch.set(ref, {"turns": firestore.ArrayUnion(new_turns), "expireAt": now + self.ttl}, merge=True)
        if dropped:
            batch.update(ref, {"turns": firestore.ArrayRemove(dropped)})
        batch.update(claim_ref, claim_fields)
        batch.commit()

    def reset(self, user: str, claim_ref: firestore.DocumentReference, claim_fields: dict[str, Any]) -> None:
        """Forget the user's conversation; the claim update goes in the same commit."""
        batch = self.db.batch()
        batch.delete(self.ref(user))
        batch.update(claim_ref, claim_fields)
        batch.commit()
