"""Steps that answer without the model: the user's commands and the fixed replies.

They run after the gate (a paused chat never gets here: /reset wipes nothing a human relies on).
Firestore: /reset and /voice 1 write each (a /reset retried after a takeover 1 read more); the
fixed replies nothing.
"""

from __future__ import annotations

from common import log
from common.responder.steps import Draft
from common.responder.texts import Texts
from common.responder.turn import Kind
from common.responder.voice_reply import VoiceReplies
from common.store.claims import Outcome
from common.store.history import History


class Reset:
    """/reset: forget the user's turns (the day's usage stays), confirm it."""

    def __init__(self, history: History, texts: Texts) -> None:
        self.history, self.texts = history, texts

    def __call__(self, draft: Draft) -> Draft:
        if draft.turn.kind is not Kind.RESET:
            return draft
        retry = draft.owned.outcome is Outcome.TAKEN_OVER  # did the first attempt get that far?
        self.history.reset(draft.turn.user, draft.turn.message_id, retry=retry)
        return draft.finish(self.texts.reset)


class VoiceSwitch:
    """/voice on|off: the user's own choice of voice replies, stored with their conversation."""

    def __init__(self, voice: VoiceReplies) -> None:
        self.voice = voice

    def __call__(self, draft: Draft) -> Draft:
        command = draft.turn.command
        if draft.turn.kind is not Kind.VOICE_SWITCH or command is None:
            return draft
        choice = command.args[0].lower()
        self.voice.switch(draft.turn.user, choice)
        log.info("voice replies switched", voice=choice, message_id=draft.turn.message_id)
        return draft.finish(self.voice.confirmation(choice))


class FixedReply:
    """/help, a voice note that could not be transcribed, a message the bot cannot read."""

    def __init__(self, texts: Texts) -> None:
        self.replies = {
            Kind.HELP: texts.help,
            Kind.VOICE_FAILED: texts.voice_failed,
            Kind.UNSUPPORTED: texts.unsupported,
        }

    def __call__(self, draft: Draft) -> Draft:
        reply = self.replies.get(draft.turn.kind)
        return draft if reply is None else draft.finish(reply)
