"""Confirmation with reply buttons: a `confirm: true` action runs only on the user's yes.

When the model asks for such a call, nothing is called: `ask` stores the pending call (1 write,
`confirmations/{key}`, the call's idempotency key, so a redelivery of that message finds the
same document) and the responder sends the question with a yes and a no button whose ids carry
the key. The action runs only for the `button_reply` whose id is that key's yes, from the same
user, within CONFIRM_MINUTES; `decide` records the first decision under a precondition (1 read,
1 conditional write), so of two taps on yes only one runs it (the other finds it decided), and
a redelivery of the tap that won finds its own mark and goes on (the call's result, once made,
is in the same document: `ran`). No, a late yes, or any other message while the question is the
last turn (`asked_in`: the mark is in the stored assistant turn, no extra read) declines it.
The document survives restarts and expires a day after its question (`expireAt`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import AlreadyExists, FailedPrecondition
from google.cloud import firestore

from common import config
from common.actions.caller import Caller
from common.actions.ledger import canonical
from common.actions.loop import Confirmation, ToolCall, assistant, refused, tool
from common.actions.spec import Catalog
from common.store.claims import doc_id
from common.store.db import reading, writing

COLLECTION = "confirmations"
PREFIX = "wb-confirm"  # the button ids: wb-confirm:<key>:yes | :no
TURN_MARK = "confirm"  # the stored assistant turn that asked carries the key under this name
DEFAULT_TITLES = ("Yes, go ahead", "No")


class Decision(enum.StrEnum):
    RUN = "run"  # this message's yes: run it (or use `ran`, stored by an earlier attempt)
    DECLINED = "declined"  # this message's no, or anything else: tell the model
    EXPIRED = "expired"  # a yes after CONFIRM_MINUTES: not run; tell the model
    TAKEN = "taken"  # another message decided already (a double tap): nothing to do
    UNKNOWN = "unknown"  # no such question for this user


@dataclass(frozen=True, slots=True)
class Pending:
    key: str
    action: str
    arguments: dict[str, Any]
    call_id: str
    expires: datetime
    ran: str | None = None  # the tool message of the call, once it ran


def button_ids(key: str) -> tuple[str, str]:
    return f"{PREFIX}:{key}:yes", f"{PREFIX}:{key}:no"


def tapped(reply_id: str | None) -> tuple[str, bool] | None:
    """(key, yes?) of a tap on one of our buttons; None for any other reply id."""
    parts = (reply_id or "").split(":")
    if len(parts) != 3 or parts[0] != PREFIX or parts[2] not in ("yes", "no"):
        return None
    return parts[1], parts[2] == "yes"


def asked_in(turns: list[dict[str, Any]]) -> str | None:
    """The key of the question the conversation ends with (its last turn asked), if any."""
    last = turns[-1] if turns else {}
    mark = last.get(TURN_MARK) if last.get("role") == "assistant" else None
    return mark if isinstance(mark, str) else None


class Confirmations:
    def __init__(self, db: firestore.Client, minutes: float | None = None) -> None:
        self.db = db
        self.window = timedelta(minutes=minutes or config.number("CONFIRM_MINUTES", 15))
        yes = config.get("CONFIRM_YES_TEXT") or DEFAULT_TITLES[0]
        no = config.get("CONFIRM_NO_TEXT") or DEFAULT_TITLES[1]
        if any(not 0 < len(t) <= 20 for t in (yes, no)):
            raise RuntimeError("CONFIRM_YES_TEXT and CONFIRM_NO_TEXT: 1 to 20 characters (a button title)")
        self.titles = (yes, no)

    def ref(self, key: str) -> firestore.DocumentReference:
        return self.db.collection(COLLECTION).document(key)

    def buttons(self, key: str) -> list[tuple[str, str]]:
        """(id, title) of the yes and the no button."""
        return list(zip(button_ids(key), self.titles, strict=True))

    def ask(self, user: str, call: Confirmation) -> Pending:
        """Store the pending call (1 write; on a redelivery the refused create and 1 read)."""
        now = datetime.now(UTC)
        data = {
            "user": doc_id(user),
            "action": call.action.name,
            "arguments": call.arguments,
            "callId": call.call_id,
            "state": "pending",
            "askedAt": now,
            "expires": now + self.window,
            "expireAt": now + timedelta(days=1),
        }
        try:
            self.ref(call.key).create(data, **writing())
        except AlreadyExists:
            data = self.ref(call.key).get(**reading()).to_dict() or data
        return _pending(call.key, data)

    def decide(self, key: str, user: str, message_id: str, yes: bool) -> tuple[Decision, Pending | None]:
        """The first decision on the question wins (1 read, 1 conditional write)."""
        ref, mark = self.ref(key), doc_id(message_id)
        for _ in range(2):
            snapshot = ref.get(**reading())
            data = snapshot.to_dict() or {}
            if not snapshot.exists or data.get("user") != doc_id(user):
                return Decision.UNKNOWN, None
            pending = _pending(key, data)
            if data.get("by") == mark:  # this message decided in an earlier attempt
                return Decision(data.get("decision") or Decision.DECLINED), pending
            if data.get("state") != "pending":
                return Decision.TAKEN, pending
            late = yes and datetime.now(UTC) > pending.expires
            decision = Decision.EXPIRED if late else Decision.RUN if yes else Decision.DECLINED
            change = {
                "state": "decided",
                "decision": decision.value,
                "by": mark,
                "decidedAt": datetime.now(UTC),
            }
            try:
                ref.update(
                    change, option=self.db.write_option(last_update_time=snapshot.update_time), **writing()
                )
                return decision, pending
            except FailedPrecondition:
                continue  # another tap (or this one's lost answer): read again and see who won
        return Decision.TAKEN, None

    def settle(
        self,
        decision: Decision,
        pending: Pending,
        catalog: Catalog,
        caller: Caller,
        user: str,
        deadline: float | None = None,
    ) -> list[dict[str, Any]]:
        """What the model is told of the question, as the call it asked for and its result: run
        on this message's yes (once: a result stored by an earlier attempt is used), else not run
        and why. The caller puts these between the history and the user's turn."""
        name, content = pending.action, pending.ran
        if decision is Decision.RUN and content is None:
            action = catalog.actions.get(name)
            if action is None:
                content = refused(name, "not run: the action is no longer offered")
            else:
                content = caller.call(action, pending.arguments, pending.key, user, deadline).for_model(name)
                self.ran(pending.key, content)
        elif decision is Decision.EXPIRED:
            minutes = round(self.window.total_seconds() / 60)
            content = refused(name, f"not run: confirmed after {minutes} minutes; ask again if still wanted")
        elif decision is not Decision.RUN:
            content = refused(name, "not run: the user did not confirm")
        call = ToolCall(pending.call_id or f"call_{pending.key[:12]}", name, canonical(pending.arguments))
        return [assistant(None, [call]), tool(call.id, content or "")]

    def ran(self, key: str, content: str) -> None:
        """The call's result (the tool message), stored before the model reads it (1 write)."""
        self.ref(key).update({"ran": content}, **writing())


def _pending(key: str, data: dict[str, Any]) -> Pending:
    arguments = data.get("arguments") if isinstance(data.get("arguments"), dict) else {}
    expires = data.get("expires") if isinstance(data.get("expires"), datetime) else datetime.now(UTC)
    ran = data.get("ran") if isinstance(data.get("ran"), str) else None
    return Pending(key, str(data.get("action") or ""), arguments, str(data.get("callId") or ""), expires, ran)
