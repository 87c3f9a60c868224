"""Answers from the business's documents through the real responder (functions-framework, the
Firestore emulator, the loopback Graph API and OpenAI): the passage in the model's prompt and the
document's title in the reply, nothing for an unrelated question, a follow-up found through the
previous turn, a re-sync answered from at once, passages never stored, and no embeddings request
at all without a knowledge base.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope
from common.knowledge import grounding
from common.knowledge.embeddings import Embedder
from common.knowledge.sync import Sync
from common.responder.texts import DEFAULTS
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import OPENAI_KEY, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI, echo_model
from tests.support.knowledge import write

BUSINESS = "106540352242922"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "harbour-bikes" / "knowledge"
SATURDAY = "When are you open on Saturday?"


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    env = stand_in_env(
        emulators,
        graph,
        model,
        KNOWLEDGE_MIN_SIMILARITY="0.2",  # the stand-in's scale (word overlap)
        KNOWLEDGE_CACHE_SECONDS="0",  # every turn sees the latest sync
        ATTEMPT_TIMEOUT_SECONDS="10",
        CLAIM_LEASE_SECONDS="12",
        CLAIM_LEASE_MARGIN_SECONDS="1",
    )
    function = serve("responder", env)
    yield function
    function.stop()


def sync(db: firestore.Client, model: FakeOpenAI, folder: Path = EXAMPLE) -> None:
    sdk = openai.OpenAI(base_url=model.base_url, api_key=OPENAI_KEY, max_retries=0)
    Sync(db, Embedder("text-embedding-3-small", sdk=sdk), say=lambda line: None).run(folder)
    model.reset()


def text(words: str, user: str = "15550002222") -> Envelope:
    return Envelope(f"wamid.{uuid.uuid4().hex}", user, user, BUSINESS, "text", int(time.time()), words)


def cites(messages: list[dict[str, Any]]) -> str:
    """A model that answers from its first passage, and names it as asked."""
    passages = grounding.quoted(messages[0]["content"])
    return f"{passages[0][1].splitlines()[0]}\n[sources: 1]" if passages else echo_model(messages)


def test_a_question_is_answered_from_its_passage_with_the_documents_title(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    sync(db, model)
    model.answer = cites
    envelope = text(SATURDAY)
    assert deliver(responder, envelope) == 200
    [chat] = model.chats()
    system = chat["messages"][0]["content"]
    assert system.startswith(DEFAULTS["SYSTEM_PROMPT"] + "\n\n" + grounding.RULES)
    assert (
        '[1] from "Opening hours", section "Opening hours > Weekend":\nSaturday: open from 9:00 to 17:00.'
        in system
    )
    assert chat["messages"][1:] == [{"role": "user", "content": SATURDAY}]  # passages: system only
    [sent] = graph.sent()
    assert sent["text"]["body"] == "Saturday: open from 9:00 to 17:00.\n\n_Source: Opening hours_"
    [query] = model.embeddings()  # one embeddings call for the turn
    assert query["input"] == [SATURDAY]
    stored = db.collection("conversations").document(doc_id(envelope.user)).get().to_dict() or {}
    assert [t["content"] for t in stored["turns"]] == [SATURDAY, sent["text"]["body"]]
    assert "Sunday" not in str(stored)  # the passage's other lines were never stored


def test_an_unrelated_question_gets_no_passage_and_no_sources(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    sync(db, model)
    assert deliver(responder, text("Do you sell cars?")) == 200
    [chat] = model.chats()
    system = chat["messages"][0]["content"]
    assert system == f"{DEFAULTS['SYSTEM_PROMPT']}\n\n{grounding.NOTHING}"  # no facts to invent from
    assert "<<<BUSINESS DOCUMENTS" not in system
    [sent] = graph.sent()
    assert sent["text"]["body"] == "echo: Do you sell cars? (turns seen: 2)"  # no sources line


def test_a_follow_up_finds_its_passage_through_the_previous_turn(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    sync(db, model)
    model.answer = cites
    assert deliver(responder, text(SATURDAY, user="15550003333")) == 200
    assert deliver(responder, text("and the day after?", user="15550003333")) == 200
    first, second = model.chats()
    reply = {"role": "assistant", "content": graph.sent()[0]["text"]["body"]}
    assert second["messages"][1:3] == [first["messages"][1], reply]  # the history, no passage in it
    [(title, passage), *_] = grounding.quoted(second["messages"][0]["content"])
    assert title == "Opening hours" and "Sunday: open from 10:00 to 16:00." in passage
    assert model.embeddings()[-1]["input"] == ["and the day after?", SATURDAY]


def test_a_resync_is_answered_from_at_once(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client, tmp_path: Path
) -> None:
    folder = write(tmp_path / "docs", {"hours.md": "# Opening hours\n\nSaturday: open from 9:00 to 17:00."})
    sync(db, model, folder)
    write(folder, {"hours.md": "# Opening hours\n\nSaturday: open from 8:00 to 12:00."})
    sync(db, model, folder)
    model.answer = cites
    assert deliver(responder, text(SATURDAY, user="15550004444")) == 200
    [sent] = graph.sent()
    assert sent["text"]["body"] == "Saturday: open from 8:00 to 12:00.\n\n_Source: Opening hours_"


def test_without_a_knowledge_base_a_turn_makes_no_embeddings_request_and_with_one_it_makes_one(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(responder, text(SATURDAY, user="15550005555")) == 200
    assert model.embeddings() == []  # no knowledge base: no embeddings call, no vector query
    [chat] = model.chats()
    assert chat["messages"][0] == {"role": "system", "content": DEFAULTS["SYSTEM_PROMPT"]}
    assert graph.sent()[0]["text"]["body"] == f"echo: {SATURDAY} (turns seen: 2)"
    sync(db, model)  # the same instance (KNOWLEDGE_CACHE_SECONDS=0 here): the next turn is grounded
    assert deliver(responder, text(SATURDAY, user="15550005555")) == 200
    assert len(model.embeddings()) == 1


def test_a_redelivery_of_an_answered_message_makes_no_second_embeddings_request(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    """Meta's retries and an ordered redelivery bring answered messages back: their reply is in the
    conversation read beside the claim, so nothing is looked up for them."""
    sync(db, model)
    envelope = text(SATURDAY, user="15550006666")
    assert deliver(responder, envelope) == 200
    assert deliver(responder, envelope) == 200
    assert len(graph.sent()) == 1
    assert len(model.embeddings()) == 1
