"""The step that asks the model: the system prompt, the conversation, the user's turn.

One chat completion (a second, trimmed, when the context is too long: common/ai/llm.py), its
timeout cut to what is left of the attempt. An outage is retried (Pub/Sub redelivers); a request
the model refuses gets the apology, which is stored like an answer, so a redelivery resends it.
"""

from __future__ import annotations

from common import log
from common.ai.llm import ChatModel, ContextTooLong, ModelRefused, ModelUnavailable
from common.responder.steps import Draft, RetryLater
from common.responder.texts import Texts


class Ask:
    def __init__(self, model: ChatModel, texts: Texts) -> None:
        self.model, self.texts = model, texts

    def __call__(self, draft: Draft) -> Draft:
        said, conversation = draft.said, draft.conversation
        assert said is not None, "Ask runs after Read"
        assert conversation is not None, "Ask runs after Recall"
        try:
            reply = self.model.answer(
                self.texts.system_prompt,
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
        return draft.answered(reply or self.texts.empty_answer)
