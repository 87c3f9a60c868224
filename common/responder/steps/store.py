"""The step that stores the model's turn before anything is sent, so a retry resends, not re-asks.

Firestore: 1 write (both turns, array union, with the user's daily counters as increments in the
same write), then, only when DAILY_TOKEN_BUDGET is set, 1 write to a budget shard. Once the turn
is stored the answer belongs to the user: a shard write that fails (a contended shard) is tried
again, then logged (common/responder/guardrails.py, `spent`), never a reason to retry the turn.
"""

from __future__ import annotations

from common import log
from common.actions.confirm import TURN_MARK
from common.responder.guardrails import Guard
from common.responder.overlap import Overlap
from common.responder.steps import Draft, left
from common.store.history import History, Turn


class Store:
    def __init__(self, history: History, guard: Guard, overlap: Overlap) -> None:
        self.history, self.guard, self.overlap = history, guard, overlap

    def __call__(self, draft: Draft) -> Draft:
        turn, said, conversation, reply = draft.turn, draft.said, draft.conversation, draft.reply
        assert said is not None, "Store runs after Read"
        assert conversation is not None, "Store runs after Recall"
        assert reply is not None, "Store runs after Ask"
        left(draft.deadline, draft.owned)  # a late answer is not stored: the retry asks again
        self.overlap.wait()  # a token error on the read receipt: nothing stored
        new_turns: list[Turn] = [
            {"role": "user", "content": said.stand_in, "messageId": turn.message_id},
            {"role": "assistant", "content": reply, "messageId": turn.message_id},
        ]
        if draft.confirm:  # a question with buttons: the next message answers it (steps/actions.py)
            new_turns[1][TURN_MARK] = draft.confirm
        counters = self.guard.counted(conversation, draft.tokens, turn.envelope.audio_seconds or 0)
        self.history.append(turn.user, conversation, new_turns, counters)
        self.guard.spent(draft.tokens, turn.message_id, draft.deadline)
        log.info("answered", message_id=turn.message_id, chars=len(reply))
        return draft.finish(reply)
