"""The step that finds the business's documents for this turn (common/knowledge/): the passages
the model answers from, or none, or nothing at all without a knowledge base.

The retrieval (1 embeddings call and 1 vector query, or 1 cached read without a knowledge base)
starts as soon as the history is read, alongside the claim (`early`, called by the pipeline), and
is picked up here, after the media is read: the model is asked right after. The passages are
given to the model by `Ask` (Grounding.system) and never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from common.knowledge.grounding import Grounding
from common.knowledge.retrieval import Knowledge, KnowledgeUnavailable
from common.responder.overlap import Overlap
from common.responder.steps import Draft, RetryLater
from common.responder.turn import FOR_THE_MODEL, Turn
from common.store.history import Conversation


def words_of(turn: Turn) -> str | None:
    """What the query is made of: a text, a button's title, a transcript, a caption; None for a
    location, contacts, or media sent without words."""
    return (turn.envelope.text or "").strip() or None


class Ground:
    def __init__(self, knowledge: Knowledge, overlap: Overlap) -> None:
        self.knowledge, self.overlap = knowledge, overlap

    def early(self, draft: Draft) -> Callable[[Conversation], Grounding] | None:
        """The retrieval to start once the conversation is read; None when no model will be asked."""
        if draft.turn.kind not in FOR_THE_MODEL or draft.last_chance:
            return None
        words, message_id = words_of(draft.turn), draft.turn.message_id

        def retrieve(conversation: Conversation) -> Grounding:
            if conversation.reply_to(message_id) is not None:  # answered already: no model call
                return Grounding()  # so no embeddings call either (a redelivery of a done message)
            return self.knowledge.retrieve(conversation.turns, words, draft.deadline)

        return retrieve

    def __call__(self, draft: Draft) -> Draft:
        conversation = draft.conversation
        assert conversation is not None, "Ground runs after Recall"
        words = words_of(draft.turn)
        try:
            found = self.overlap.followed(
                lambda: self.knowledge.retrieve(conversation.turns, words, draft.deadline)
            )
        except KnowledgeUnavailable as exc:
            raise RetryLater(f"knowledge unavailable: {exc}") from exc
        return replace(draft, grounding=found)
