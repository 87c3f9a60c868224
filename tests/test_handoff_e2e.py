"""Handoff through the real responder: /human and the model's handoff, one notification per
admin, forwarding, /reply, /resume, and the alert when Meta refuses a notification."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI, graph_error
from tests.support.tool_model import calling

USER, BUSINESS = "15550004444", "106540352242922"
ADMINS = ("15550000001", "15550000002")
HANDOFF_TEXT = "A colleague will answer you here shortly."


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    settings = {
        "ADMIN_USERS": ",".join(ADMINS),
        "HANDOFF_TEXT": HANDOFF_TEXT,
        "GUARDRAILS_CACHE_SECONDS": "0",
    }
    function = serve("responder", stand_in_env(emulators, graph, model, OPENAI_MAX_RETRIES="0", **settings))
    yield function
    function.stop()


def message(words: str, user: str = USER, name: str | None = "Ann") -> Envelope:
    return Envelope(f"wamid.{uuid.uuid4().hex}", user, user, BUSINESS, "text", int(time.time()), words, name)


def sent_to(graph: FakeGraph, to: str) -> list[str]:
    return [m["text"]["body"] for m in graph.sent() if m["to"] == to]


def turns(db: firestore.Client) -> list[dict[str, Any]]:
    return (db.collection("conversations").document(doc_id(USER)).get().to_dict() or {}).get("turns", [])


def handed_over(responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, how: str) -> None:
    if how == "model":
        model.answer = lambda messages: calling(("handoff", {"reason": "wants a refund"}))
        words = "I want my money back"
    else:
        words = "/human"
    assert deliver(responder, message(words)) == 200
    assert sent_to(graph, USER) == [HANDOFF_TEXT]
    for admin in ADMINS:
        (told,) = sent_to(graph, admin)
        assert told.startswith(f"Ann ({USER}) asks for a person: {words}")
        assert f"/reply {USER} <text>" in told
    if how == "model":
        assert "Why: wants a refund" in sent_to(graph, ADMINS[0])[0]


@pytest.mark.parametrize("how", ["human", "model"])
def test_a_handoff_forwards_the_users_messages_until_an_admin_resumes(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client, how: str
) -> None:
    handed_over(responder, graph, model, how)
    asked = len(model.chats())
    graph.reset()
    later = message("are you there?")
    assert deliver(responder, later) == 200 and deliver(responder, later) == 200  # and its redelivery
    assert not sent_to(graph, USER) and len(model.chats()) == asked, "the model answered a handed-over chat"
    for admin in ADMINS:
        assert sent_to(graph, admin) == [f"Ann ({USER}): are you there?\n(/reply {USER} <text> answers)"]
    assert deliver(responder, message("/human")) == 200  # handed over already: no second handoff
    assert not sent_to(graph, USER) and all(len(sent_to(graph, a)) == 2 for a in ADMINS)
    graph.reset()
    assert (
        deliver(responder, message(f"/reply {USER} Hello Ann, Bob here.", user=ADMINS[0], name="Bob")) == 200
    )
    assert sent_to(graph, USER) == ["Hello Ann, Bob here."]
    assert sent_to(graph, ADMINS[0]) == [f"Sent to Ann ({USER})."]
    human = [t for t in turns(db) if t.get("author") == "human"]
    assert [t["content"] for t in human] == ["Hello Ann, Bob here."]
    assert deliver(responder, message(f"/resume {USER}", user=ADMINS[1], name="Cy")) == 200
    assert sent_to(graph, ADMINS[1]) == [f"Resumed: the bot answers Ann ({USER}) again."]
    model.reset()
    assert deliver(responder, message("thanks!")) == 200
    assert sent_to(graph, USER)[-1].startswith("echo: thanks!"), "a resumed chat is answered by the model"


def test_an_admin_outside_the_24_hour_window_writes_the_handoff_alert(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    outside = graph_error(131047, "Re-engagement message")
    to_first_admin = lambda request: request.json().get("to") == ADMINS[0]  # noqa: E731
    graph.fail("/messages", 400, outside, times=1, when=to_first_admin)
    offset = len(responder.log_text())
    assert deliver(responder, message("/human")) == 200
    lines = [json.loads(line) for line in responder.log_text()[offset:].splitlines() if line.startswith("{")]
    alerts = [line for line in lines if line.get("alert") == "handoff"]
    assert len(alerts) == 1 and alerts[0]["severity"] == "ERROR" and alerts[0]["code"] == 131047
    assert sent_to(graph, ADMINS[1]) and sent_to(graph, USER) == [HANDOFF_TEXT]
