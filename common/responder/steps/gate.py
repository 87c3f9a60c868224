"""Steps that decide whether the bot answers at all: before the claim (`Ignore`, `Echo`), before
the conversation is read (`Notice`, `AdminCommand`, `Paused`) and after it (`Limits`).

Each asks the guardrails (common/responder/guardrails.py) one question and, when the answer is
no, finishes the turn: silent, or with today's one notice. What each costs in Firestore is in
common/store/counters.py: mostly nothing but cached reads; a notice 1 write, an echo 1 per id.
"""

from __future__ import annotations

from common import log
from common.bus.envelope import NOT_ALLOWED
from common.guard.voice_quota import OVER_AUDIO_LIMIT  # Envelope.refused: no download
from common.responder import admin
from common.responder.guardrails import Guard
from common.responder.overlap import Overlap
from common.responder.steps import Draft
from common.responder.turn import Kind
from common.store.history import History, Turn


class Ignore:
    """Reactions, system messages, stale messages: acknowledged, nothing claimed or stored."""

    def __call__(self, draft: Draft) -> Draft:
        turn = draft.turn
        if turn.kind is Kind.SILENT:
            fields = {"type": turn.envelope.type, "user": log.mask(turn.user)}
            log.info("not answered", message_id=turn.message_id, **fields)
            return draft.finish(None)
        if turn.kind is Kind.STALE:
            log.info("stale message: acknowledged, not answered", message_id=turn.message_id)
            return draft.finish(None)
        return draft


class Echo:
    """The business answered from the WhatsApp Business app: a human has the chat, pause the bot
    (no claim needed: pausing twice is pausing)."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def __call__(self, draft: Draft) -> Draft:
        if draft.turn.kind is not Kind.ECHO:
            return draft
        self.guard.pause_chat(draft.turn.envelope)
        log.info("the business answered from the app: paused", message_id=draft.turn.message_id)
        return draft.finish(None)


class Notice:
    """A stranger, or a voice note over the day's limit: today's one notice, then silence."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def __call__(self, draft: Draft) -> Draft:
        if draft.turn.kind is not Kind.REFUSED:
            return draft
        envelope = draft.turn.envelope
        kind = "limit" if envelope.refused == OVER_AUDIO_LIMIT else NOT_ALLOWED
        return draft.finish(self.guard.notice(envelope, kind).text)


class AdminCommand:
    """/pause, /resume, /stats from an admin; a malformed one is handed on, to the model."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def __call__(self, draft: Draft) -> Draft:
        command = draft.turn.command
        if draft.turn.kind is not Kind.ADMIN or command is None:
            return draft
        answer = admin.run(command.typed, self.guard)  # as typed: ids keep their case
        return draft if answer is None else draft.finish(answer)


class Paused:
    """A human has this chat: the user's words are stored (once), so that the model knows what was
    said when the bot resumes, and nothing is answered: not even a command (/reset wipes nothing)."""

    def __init__(self, guard: Guard, history: History, overlap: Overlap) -> None:
        self.guard, self.history, self.overlap = guard, history, overlap

    def __call__(self, draft: Draft) -> Draft:
        if not draft.paused:
            return draft
        turn = draft.turn
        if turn.words is not None:  # 1 read (the one started with the claim) and 1 write
            conversation = self.overlap.take(turn.user, self.history.load)
            if not any(t.get("messageId") == turn.message_id for t in conversation.turns):
                said: Turn = {"role": "user", "content": turn.words, "messageId": turn.message_id}
                counted = self.guard.usage(conversation).fields(messages=1)
                self.history.append(turn.user, conversation, [said], counted)
        log.info("paused: stored, not answered", message_id=turn.message_id)
        return draft.finish(None)


class Limits:
    """/usage, then the user's daily limits and the whole bot's budget (the conversation is read)."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def __call__(self, draft: Draft) -> Draft:
        assert draft.conversation is not None, "Limits runs after Recall"
        usage = self.guard.usage(draft.conversation)
        if draft.turn.kind is Kind.USAGE:
            return draft.finish(admin.usage_text(usage, self.guard.policy))
        verdict = self.guard.limits(draft.turn.envelope, usage)
        return draft if verdict is None else draft.finish(verdict.text)
