"""Steps of the business's actions (common/actions/): the answer to a question with buttons, and
the model with the actions as tools.

`Confirmed` runs when the conversation ends with a question (its mark is in the stored turn: no
read) or the message is a tap on one of our buttons: the first decision wins (1 read, 1 write),
the yes runs the call once, and what happened reaches the model as the call and its result; a
second tap is silent. `Act` asks the model with the tools (common/actions/loop.py): every call is
stored before the model goes on (1 write each; a retried attempt reads them back, 1 read, and
never calls again); a `confirm: true` call becomes the question with buttons; the model's handoff
pauses the bot and tells the admins (common/actions/handoff.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from common import log
from common.actions import loop as tools
from common.actions.caller import Caller
from common.actions.confirm import Confirmations, Decision, asked_in, tapped
from common.actions.handoff import Handoffs, Handover, Started
from common.actions.loop import Loop, ModelReply
from common.actions.spec import Catalog
from common.ai.llm import ChatModel, ContextTooLong, ModelRefused, ModelUnavailable
from common.knowledge.grounding import Grounding
from common.responder.steps import Draft, RetryLater, left
from common.responder.steps.handoff import sending
from common.responder.texts import Texts
from common.store.claims import Outcome


class Confirmed:
    """The user's answer to the question with buttons the conversation ends with."""

    def __init__(self, confirmations: Confirmations, catalog: Catalog, caller: Caller) -> None:
        self.confirmations, self.catalog, self.caller = confirmations, catalog, caller

    def __call__(self, draft: Draft) -> Draft:
        assert draft.conversation is not None, "Confirmed runs after Recall"
        turn, tap = draft.turn, tapped(draft.turn.envelope.reply_id)
        key, yes = tap if tap is not None else (asked_in(draft.conversation.turns), False)
        if key is None:
            return draft
        decision, pending = self.confirmations.decide(key, turn.user, turn.message_id, yes)
        if tap is not None and decision in (Decision.TAKEN, Decision.UNKNOWN):
            log.info("a tap on a question already answered: silent", message_id=turn.message_id)
            return draft.finish(None)  # a double tap, or buttons of another time
        if pending is None or decision is Decision.TAKEN:
            return draft  # decided by another message meanwhile: nothing to tell
        told = self.confirmations.settle(
            decision, pending, self.catalog, self.caller, turn.user, draft.deadline
        )
        log.info(
            "question answered", decision=decision.value, action=pending.action, message_id=turn.message_id
        )
        return replace(draft, before=(*draft.before, *told))


class Act:
    """The model, with the business's actions as its tools."""

    def __init__(
        self,
        model: ChatModel,
        texts: Texts,
        loop: Loop,
        confirmations: Confirmations,
        handoffs: Handoffs,
    ) -> None:
        self.model, self.texts, self.loop = model, texts, loop
        self.confirmations, self.handoffs = confirmations, handoffs

    def __call__(self, draft: Draft) -> Draft:
        said, conversation, turn = draft.said, draft.conversation, draft.turn
        assert said is not None, "Act runs after Read"
        assert conversation is not None, "Act runs after Recall"
        history = [{"role": t["role"], "content": t["content"]} for t in conversation.turns]
        try:
            try:
                outcome = self._run(draft, history)
            except ContextTooLong:  # the calls already made are stored: the shorter prompt replays them
                log.warning("context too long: retrying with the last turns only", turns=len(history))
                outcome = self._run(draft, history[-2:], fresh=False)
        except ModelUnavailable as exc:
            raise RetryLater(f"model unavailable: {exc}") from exc
        except (ModelRefused, ContextTooLong) as exc:
            log.error("model refused the request: apologising", error=str(exc))
            return draft.answered(said.refused or self.texts.model_error)
        if outcome.confirm is not None:  # nothing was called: the user is asked first
            pending = self.confirmations.ask(turn.user, outcome.confirm)
            question = outcome.confirm.action.question(pending.arguments)
            return replace(draft, reply=question, tokens=outcome.tokens, confirm=pending.key)
        if outcome.handoff is not None:
            return replace(draft, reply=self._hand_over(draft, outcome.handoff), tokens=outcome.tokens)
        cited = (draft.grounding or Grounding()).cite(outcome.reply) if outcome.reply else None
        return replace(draft, reply=cited or self.texts.empty_answer, tokens=outcome.tokens)

    def _run(self, draft: Draft, history: list[dict[str, Any]], fresh: bool = True) -> tools.Outcome:
        said, turn = draft.said, draft.turn
        assert said is not None
        grounding = draft.grounding or Grounding()  # the business's documents, when there are any
        prompt = grounding.system(self.texts.system_prompt)  # and, with the actions, results are data
        system = {
            "role": "system",
            "content": f"{prompt}\n\n{tools.PROMPT}" if self.loop.catalog.actions else prompt,
        }
        messages = [system, *history, *draft.before, {"role": "user", "content": said.content}]

        def stopped() -> None:  # past the attempt's deadline: RetryLater before the next model call
            left(draft.deadline)

        def ask(prompt: list[dict[str, Any]], offered: list[dict[str, Any]]) -> ModelReply:
            answer = self.model.complete(prompt, draft.deadline, said.model, said.timeout, tools=offered)
            return ModelReply(str(answer) or None, answer.calls, answer.tokens)

        return self.loop.run(
            ask,
            messages,
            turn.message_id,
            turn.user,
            fresh=fresh and draft.owned.outcome is Outcome.OWNED,  # a fresh message has no stored calls
            deadline=draft.deadline,
            stopped=stopped,
            may_hand_over=lambda: self.handoffs.may_hand_over(turn.envelope.to),
        )

    def _hand_over(self, draft: Draft, reason: str) -> str:
        envelope, said = draft.turn.envelope, draft.said
        handover = Handover(
            draft.turn.user, envelope.to, envelope.profile_name or "", envelope.phone_number_id, reason
        )
        if self.handoffs.start(handover, envelope.message_id, by_model=True) is not Started.STARTED:
            return self.texts.model_error  # handed over or given back a moment ago: not again
        sending(draft.turn, lambda: self.handoffs.notify_once(handover, said.stand_in if said else ""))
        return self.handoffs.text
