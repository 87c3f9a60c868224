"""The step that asks the model: the system prompt (with the business's documents, when there is
a knowledge base: common/knowledge/grounding.py), the conversation, the user's turn; the answer
ends with the titles of the documents it drew on.

One chat completion (a second, trimmed, when the context is too long: common/ai/llm.py), its
timeout cut to what is left of the attempt. An outage is retried (Pub/Sub redelivers); a request
the model refuses gets the apology, which is stored like an answer, so a redelivery resends it.
"""

from __future__ import annotations

from dataclasses import replace

from common import log
from common.ai.llm import ChatModel, ContextTooLong, ModelRefused, ModelUnavailable
from common.knowledge.grounding import Grounding
from common.responder.steps import Draft, RetryLater
from common.responder.texts import Texts


class Ask:
    def __init__(self, model: ChatModel, texts: Texts) -> None:
        self.model, self.texts = model, texts

    def __call__(self, draft: Draft) -> Draft:
        said, conversation = draft.said, draft.conversation
        assert said is not None, "Ask runs after Read"
        assert conversation is not None, "Ask runs after Recall"
        grounding = draft.grounding or Grounding()  # none: the prompt as it is without documents
        try:
            reply = self.model.answer(
                grounding.system(self.texts.system_prompt),
                conversation.turns,
                said.content,
                draft.deadline,
                said.model,
                said.timeout,
            )
        except ModelUnavailable as exc:
            raise RetryLater(f"model unavailable: {exc}") from exc
        except (ModelRefused, ContextTooLong) as exc:
            log.error("model refused the request: apologising", error=str(exc))
            return draft.answered(said.refused or self.texts.model_error)
        if not reply:
            return draft.answered(self.texts.empty_answer)
        return replace(draft.answered(reply), reply=grounding.cite(reply) or self.texts.empty_answer)
