"""Confirmation: a `confirm: true` call runs only on the user's yes, once, however often they tap
(emulator + loopback business endpoint); the buttons go out as Meta's reply buttons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import firestore

from common.actions.caller import Caller
from common.actions.confirm import Confirmations, Decision, asked_in, button_ids, tapped
from common.actions.ledger import Ledger
from common.actions.loop import Loop
from common.actions.spec import Action, Catalog
from common.bus.envelope import Envelope
from common.meta.graph import GraphClient
from common.meta.payload import parse_notification
from local.example_business import DEFAULT_TOKEN
from tests.support.business import FakeBusiness
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.tool_model import ask, calling

ASKED = "wamid.HBgLMTU1NTAwMDg4ODgVAgASGBQzQ09ORklSTTAwMDAwMDAwMDAwMQA="
USER = "15550008888"
BOOK = {
    "type": "object",
    "properties": {"date": {"type": "string"}, "people": {"type": "integer"}},
    "required": ["date", "people"],
}
ARGUMENTS = {"date": "2026-05-01", "people": 2}


@pytest.fixture(scope="module")
def business() -> Iterator[FakeBusiness]:
    server = FakeBusiness()
    yield server
    server.close()


@pytest.fixture
def shop(business: FakeBusiness, db: firestore.Client) -> FakeBusiness:
    business.reset()
    return business


def catalog(shop: FakeBusiness) -> Catalog:
    book = Action(
        "book_table", "Book a table.", f"{shop.url}/bookings", parameters=BOOK, token=DEFAULT_TOKEN,
        confirm=True, confirm_text="Book a table for {people} on {date}?",
    )  # fmt: skip
    return Catalog({book.name: book})


def asked(shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client, confirmations: Confirmations) -> str:
    """The model asks to book: nothing is called, the question is stored; its key."""
    model.answer = lambda messages: calling(("book_table", ARGUMENTS))
    outcome = Loop(catalog(shop), Ledger(db), Caller(timeout=2, tries=1)).run(
        ask(model), [{"role": "user", "content": "book for 2"}], ASKED, USER
    )
    assert outcome.confirm is not None and outcome.reply is None and not shop.requests
    pending = confirmations.ask(USER, outcome.confirm)
    assert pending.key == outcome.confirm.key and pending.arguments == ARGUMENTS
    assert confirmations.ask(USER, outcome.confirm) == pending  # a redelivery: the same question
    return pending.key


def test_one_yes_runs_the_action_once_however_often_it_is_tapped(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    confirmations = Confirmations(db, minutes=15)
    key = asked(shop, model, db, confirmations)
    taps = [f"wamid.TAP{n}" for n in range(4)]
    with ThreadPoolExecutor(4) as pool:  # a double (quadruple) tap: four deliveries at once
        decisions = list(pool.map(lambda tap: confirmations.decide(key, USER, tap, yes=True), taps))
    kinds = sorted(d for d, _ in decisions)
    assert kinds == [Decision.RUN, Decision.TAKEN, Decision.TAKEN, Decision.TAKEN]
    winner = taps[[d for d, _ in decisions].index(Decision.RUN)]
    decision, pending = confirmations.decide(key, USER, winner, yes=True)  # its redelivery
    assert decision is Decision.RUN and pending is not None
    caller = Caller(timeout=2, tries=1)
    told = confirmations.settle(decision, pending, catalog(shop), caller, USER)
    assert [m["role"] for m in told] == ["assistant", "tool"]
    assert json.loads(told[0]["tool_calls"][0]["function"]["arguments"]) == ARGUMENTS
    assert json.loads(told[1]["content"])["data"]["booking_id"] == "B-0001"
    _, again = confirmations.decide(key, USER, winner, yes=True)  # a redelivery after the call
    assert again is not None and again.ran == told[1]["content"]
    confirmations.settle(Decision.RUN, again, catalog(shop), caller, USER)
    assert len(shop.calls("/bookings")) == 1, "the confirmed booking was made twice"
    assert shop.calls("/bookings")[0].headers["Idempotency-Key"] == key


def test_no_or_anything_else_declines_and_a_later_yes_runs_nothing(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    confirmations = Confirmations(db, minutes=15)
    key = asked(shop, model, db, confirmations)
    decision, pending = confirmations.decide(key, USER, "wamid.SOMETHINGELSE", yes=False)
    assert decision is Decision.DECLINED and pending is not None
    told = confirmations.settle(decision, pending, catalog(shop), Caller(timeout=2), USER)
    assert json.loads(told[1]["content"]) == {
        "action": "book_table",
        "ok": False,
        "error": "not run: the user did not confirm",
    }
    assert confirmations.decide(key, USER, "wamid.LATEYES", yes=True)[0] is Decision.TAKEN
    assert not shop.requests


def test_a_late_yes_or_a_stranger_runs_nothing(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    late = Confirmations(db, minutes=1e-6)
    key = asked(shop, model, db, late)
    assert late.decide(key, "15550001111", "wamid.OTHER", yes=True)[0] is Decision.UNKNOWN
    decision, pending = late.decide(key, USER, "wamid.YES", yes=True)
    assert decision is Decision.EXPIRED and pending is not None
    told = late.settle(decision, pending, catalog(shop), Caller(timeout=2), USER)
    assert "not run: confirmed after" in json.loads(told[1]["content"])["error"]
    assert late.decide("0" * 32, USER, "wamid.X", yes=True)[0] is Decision.UNKNOWN
    assert not shop.requests


def test_the_buttons_and_the_tap_that_answers_them(graph: FakeGraph, db: firestore.Client) -> None:
    confirmations = Confirmations(db, minutes=15)
    client = GraphClient(token=graph.token, base=graph.url)
    buttons = confirmations.buttons("k" * 32)
    sent = client.send_buttons("106540352242922", USER, "Book a table for 2?", buttons, reply_to=ASKED)
    (payload,) = graph.messages()
    assert payload["type"] == "interactive" and payload["context"] == {"message_id": ASKED}
    interactive = payload["interactive"]
    assert interactive["type"] == "button" and interactive["body"] == {"text": "Book a table for 2?"}
    replies = [b["reply"] for b in interactive["action"]["buttons"]]
    assert [(r["id"], r["title"]) for r in replies] == list(
        zip(button_ids("k" * 32), ("Yes, go ahead", "No"), strict=True)
    )
    with pytest.raises(ValueError, match="1 to 3"):
        client.send_buttons("106540352242922", USER, "?", [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])
    with pytest.raises(ValueError, match="20 characters"):
        client.send_buttons("106540352242922", USER, "?", [("a", "a title of twenty-one")])
    assert len(graph.messages()) == 1
    # The tap, as Meta delivers it: interactive.button_reply with our id, context.id the buttons.
    tap = {
        "from": USER,
        "id": "wamid.HBgLMTU1NTAwMDg4ODgVAgASGBQzVEFQMDAwMDAwMDAwMDAwMDAwMQA=",
        "timestamp": "1778000000",
        "type": "interactive",
        "context": {"from": "15550783881", "id": sent},
        "interactive": {
            "type": "button_reply",
            "button_reply": {"id": replies[0]["id"], "title": "Yes, go ahead"},
        },
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"phone_number_id": "106540352242922"},
            "contacts": [{"wa_id": USER, "profile": {"name": "Ann"}}], "messages": [tap],
        }}]}],
    }  # fmt: skip
    (message,) = parse_notification(body).messages
    envelope = Envelope.from_bytes(Envelope.from_message(message).to_bytes())
    assert envelope.reply_id == replies[0]["id"] and envelope.context_id == sent
    assert envelope.text == "Yes, go ahead" and envelope.type == "interactive"
    assert tapped(envelope.reply_id) == ("k" * 32, True)
    assert tapped(replies[1]["id"]) == ("k" * 32, False) and tapped("some-list-row") is None


def test_the_question_is_found_in_the_stored_turns_without_a_read() -> None:
    question = {"role": "assistant", "content": "Book?", "messageId": ASKED, "confirm": "k" * 32}
    assert asked_in([{"role": "user", "content": "book"}, question]) == "k" * 32
    assert asked_in([question, {"role": "user", "content": "no"}]) is None
    assert asked_in([]) is None
