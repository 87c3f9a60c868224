"""Meta's word that one part of a reply went out: the callback data a send carries, and its message.

Every part the responder sends carries `biz_opaque_callback_data` = "wb1:<claim id>:<part>" (the
claim's document id is a hash of the user's message id: no wamid, no phone number); Meta hands it
back in that part's `sent` and `delivered` statuses. The webhook publishes each as a PartSent to
TOPIC_STATUS without an ordering key, so it waits behind none of the user's messages, and the
responder records it (common/store/sent_parts.py). Callback data of any other shape (a template
the business sent with its own) is not ours and is left alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

KIND = "part_sent"  # the `type` attribute of a PartSent on the bus (no message type of Meta)
TAKEN = frozenset({"sent", "delivered"})  # statuses that say Meta took the part
_CALLBACK = re.compile(r"wb1:([0-9a-f]{40}):(\d{1,2})")


def callback_data(claim_id: str, part: int) -> str:
    """What a send carries so that its statuses name the message and the part (51 characters)."""
    return f"wb1:{claim_id}:{part}"


@dataclass(frozen=True, slots=True)
class PartSent:
    claim_id: str  # the claim's document id (common/store/claims.py, doc_id)
    part: int  # the part's index in the reply, from 0
    status: str  # sent or delivered
    user: str = ""  # no ordering key: it never waits behind the user's messages

    @classmethod
    def of(cls, callback: str | None, status: str) -> PartSent | None:
        """What a status says of a part of ours; None if it says nothing of one."""
        found = _CALLBACK.fullmatch(callback or "")
        if status not in TAKEN or found is None:
            return None
        return cls(found.group(1), int(found.group(2)), status)

    @property
    def message_id(self) -> str:
        """What a log line names it by (common.log digests it like any message id)."""
        return self.claim_id

    @property
    def attributes(self) -> dict[str, str]:
        return {"type": KIND}

    def to_bytes(self) -> bytes:
        return json.dumps({"claim": self.claim_id, "part": self.part, "status": self.status}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartSent:
        """ValueError for anything that is not a PartSent we published."""
        try:
            data = json.loads(raw)
            made = cls.of(callback_data(str(data["claim"]), int(data["part"])), str(data["status"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"not a part's status: {type(exc).__name__}") from exc
        if made is None:
            raise ValueError("not a part's status: unknown claim id, part or status")
        return made
