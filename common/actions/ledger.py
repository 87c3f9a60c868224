"""Each action call of a message, stored before the model goes on: the exactly-once of actions.

One document per message, `actions/{doc_id(message id)}`, one field per call (`calls.<index>`):
the call's round, name, canonical arguments, idempotency key and what the model was told. A
call is stored (1 write, a merge of its own field) as soon as its result is known and before
the model is asked again, so an attempt that takes over a crashed or failed one (the claim
says so: Outcome.TAKEN_OVER) reads the document once (1 read) and replays the calls already
made instead of making them again. A fresh message reads nothing. The document holds no
message id (its id is a hash) and expires with ACTION_RESULT_TTL_DAYS [7].

The idempotency key (`key`) is a hash of the message id, the action, its canonical arguments
and how many times the same call came before in the message: the same on every redelivery for
the same call, another for another call, and no wamid goes over the wire or into a log.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore

from common import config
from common.store.claims import doc_id
from common.store.db import reading, writing

COLLECTION = "actions"


def canonical(arguments: dict[str, Any]) -> str:
    """One spelling of the same arguments, whatever order or spacing the model wrote."""
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def key(message_id: str, name: str, arguments: dict[str, Any], occurrence: int = 0) -> str:
    """The call's Idempotency-Key: 32 hex characters, deterministic, never the wamid itself."""
    text = "\0".join(("whatsbot-action", message_id, name, canonical(arguments), str(occurrence)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Record:
    """One call as it was made: enough to replay it to the model without calling again."""

    index: int  # the call's place in the message (0, 1, ...)
    round: int  # the model answer that asked for it (calls of one answer share a round)
    call_id: str  # the model's tool_call id
    name: str
    arguments: str  # canonical JSON
    key: str
    ok: bool
    content: str  # the tool message the model read


class Ledger:
    def __init__(self, db: firestore.Client, ttl: timedelta | None = None) -> None:
        self.db, self.ttl = db, ttl or timedelta(days=config.number("ACTION_RESULT_TTL_DAYS", 7))

    def ref(self, message_id: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(doc_id(message_id))

    def load(self, message_id: str) -> list[Record]:
        """The calls an earlier attempt made, in order (1 read)."""
        data = self.ref(message_id).get(**reading()).to_dict() or {}
        calls = data.get("calls") if isinstance(data.get("calls"), dict) else {}
        records = []
        for raw in calls.values():
            try:
                records.append(Record(**{k: raw[k] for k in Record.__dataclass_fields__}))
            except (KeyError, TypeError):
                continue  # a field a newer version wrote differently: that call is not replayed
        return sorted(records, key=lambda r: r.index)

    def store(self, message_id: str, record: Record) -> None:
        """1 write: this call's field, merged (the other calls' fields stay)."""
        expire = datetime.now(UTC) + self.ttl
        change = {"calls": {str(record.index): asdict(record)}, "expireAt": expire}
        self.ref(message_id).set(change, merge=True, **writing())
