"""Steps that read: the conversation so far (and a reply an earlier attempt stored), then what
the user sent, made into the model's turn (media is downloaded here, and only here).

Firestore: the conversation is 1 read, started alongside the claim (common/responder/overlap.py);
a redelivery whose reply is stored ends here, without asking the model again.
"""

from __future__ import annotations

from dataclasses import replace

from common import log
from common.actions.confirm import TURN_MARK
from common.meta.graph import GraphError
from common.responder.inputs import Unanswerable
from common.responder.media_memory import NoRoom
from common.responder.overlap import Overlap
from common.responder.steps import Draft, RetryLater
from common.responder.texts import Texts
from common.responder.turn import Kind
from common.store.history import History

MAY_HAVE_A_STORED_REPLY = frozenset({Kind.WORDS, Kind.MEDIA, Kind.ADMIN})  # what went to the model


class Recall:
    """The conversation; an earlier attempt that answered but did not finish sending left its
    reply in it: that reply is sent (from the first part not yet sent), the model is not asked."""

    def __init__(self, history: History, overlap: Overlap) -> None:
        self.history, self.overlap = history, overlap

    def __call__(self, draft: Draft) -> Draft:
        conversation = self.overlap.take(draft.turn.user, self.history.load)
        stored = conversation.answer_to(draft.turn.message_id)
        draft = replace(draft, conversation=conversation)
        if stored is None:
            return draft
        mark = stored.get(TURN_MARK)  # a question: sent again with its buttons
        return replace(draft.finish(stored["content"]), confirm=mark if isinstance(mark, str) else None)


class Read:
    """What the user sent as the model's turn: their words, or parts made from media
    (common/responder/inputs.py). Media that cannot be read for good gets the reply that says why;
    media that is read holds its share of the instance's memory (media_memory.py) until `Release`."""

    def __call__(self, draft: Draft) -> Draft:
        request = draft.turn.request
        assert request is not None, "only a turn for the model gets here"
        try:
            said = draft.holding.enter_context(request.reading(draft.deadline))
        except Unanswerable as exc:
            return draft.finish(exc.reply)
        except GraphError as exc:  # media info or download: retriable, or a token error (alerted)
            raise RetryLater(f"media not fetched: {exc}") from exc
        except NoRoom as exc:  # the instance holds all the media it may: another instance, or later
            raise RetryLater(str(exc)) from exc
        return replace(draft, said=said)


class Release:
    """The model has answered: the media's memory goes back to the instance, its parts emptied
    (the history keeps the stand-in), before anything is stored or sent."""

    def __call__(self, draft: Draft) -> Draft:
        draft.holding.close()
        return draft


class LastWord:
    """The dead-letter path: every retry is spent. The stored reply if there is one, else the
    apology (a refused message, an echo: nothing to apologise for)."""

    def __init__(self, history: History, overlap: Overlap, texts: Texts) -> None:
        self.recall, self.texts = Recall(history, overlap), texts

    def __call__(self, draft: Draft) -> Draft:
        if draft.turn.kind in (Kind.REFUSED, Kind.ECHO, Kind.SILENT):
            return draft.finish(None)
        if draft.turn.kind in MAY_HAVE_A_STORED_REPLY:
            draft = self.recall(draft)
        what = "sending the stored reply" if draft.finished else "apologising"
        log.error(f"giving up after every retry: {what}", message_id=draft.turn.message_id)
        return draft if draft.finished else draft.finish(self.texts.model_error, from_start=True)
