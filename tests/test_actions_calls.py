"""Calling the business's endpoints: the headers, the caps, the retries with one key, and each
call stored before the model goes on, so a retried attempt never calls again (emulator + loopback
business endpoint + loopback model)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore

from common.actions import ledger as ledgers
from common.actions.caller import Caller
from common.actions.ledger import Ledger
from common.actions.loop import PROMPT, Loop
from common.actions.spec import Action, Catalog
from local.example_business import DEFAULT_TOKEN
from tests.support.business import FakeBusiness
from tests.support.fakes import FakeOpenAI
from tests.support.tool_model import ask, calling, last, tool_results

MESSAGE = "wamid.HBgLMTU1NTAwMDc3NzcVAgASGBQzQUNUSU9OUzAwMDAwMDAwMDAwMQA="
USER = "15550007777"
ORDER = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}


@pytest.fixture(scope="module")
def business() -> Iterator[FakeBusiness]:
    server = FakeBusiness()
    yield server
    server.close()


@pytest.fixture
def shop(business: FakeBusiness, db: firestore.Client) -> FakeBusiness:
    business.reset()
    return business


def action(
    business: FakeBusiness, name: str = "order_status", path: str = "/orders/status", **kw: Any
) -> Action:
    return Action(
        name, f"{name} of the shop", f"{business.url}{path}", parameters=ORDER, token=DEFAULT_TOKEN, **kw
    )


def loop(db: firestore.Client, *actions: Action, max_calls: int = 3, handoff: bool = False) -> Loop:
    catalog = Catalog({a.name: a for a in actions}, handoff)
    return Loop(catalog, Ledger(db), Caller(timeout=2, max_bytes=16384, tries=3), max_calls=max_calls)


def prompt(words: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": f"Be brief.\n{PROMPT}"}, {"role": "user", "content": words}]


def answer_with_results(messages: list[dict[str, Any]]) -> Any:
    """The scripted model: look up A1001 when asked, then say what the results were."""
    if last(messages).get("role") == "tool":
        return "results: " + json.dumps(tool_results(messages))
    return calling(("order_status", {"order_id": "A1001"}))


def test_a_call_carries_the_key_the_user_and_the_token_and_its_result_reaches_the_model(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.answer = answer_with_results
    outcome = loop(db, action(shop)).run(ask(model), prompt("where is A1001?"), MESSAGE, USER)
    (request,) = shop.calls("/orders/status")
    assert request.method == "POST" and request.json() == {"order_id": "A1001"}
    assert request.headers["Authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert request.headers["X-WhatsBot-User"] == USER
    key = request.headers["Idempotency-Key"]
    assert key == ledgers.key(MESSAGE, "order_status", {"order_id": "A1001"}) and "wamid" not in key
    assert outcome.calls == 1 and outcome.reply is not None and '"status": "shipped"' in outcome.reply
    tools = model.chats()[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["order_status"]
    result = tool_results(model.chats()[1]["messages"])[0]
    assert result["action"] == "order_status" and result["ok"] and result["data"]["carrier"] == "DHL"


def test_a_retried_attempt_replays_the_stored_call_and_never_calls_again(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.answer = answer_with_results
    first = loop(db, action(shop))
    calls = 0

    def dies_after_the_call(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the model fails once the result is stored: the attempt ends here
            raise RuntimeError("model outage")
        return ask(model)(messages, tools)

    with pytest.raises(RuntimeError):
        first.run(dies_after_the_call, prompt("where is A1001?"), MESSAGE, USER)
    assert len(shop.calls("/orders/status")) == 1
    stored = db.collection("actions").document(ledgers.doc_id(MESSAGE)).get().to_dict()
    assert MESSAGE not in json.dumps(stored, default=str) and stored["calls"]["0"]["name"] == "order_status"
    again = loop(db, action(shop)).run(ask(model), prompt("where is A1001?"), MESSAGE, USER, fresh=False)
    assert len(shop.calls("/orders/status")) == 1, "a redelivery called the endpoint again"
    replayed = model.chats()[-1]["messages"]
    assert [m["role"] for m in replayed] == ["system", "user", "assistant", "tool"]
    assert again.calls == 1 and again.reply and "shipped" in again.reply


BOOK = {"type": "object", "properties": {"date": {"type": "string"}, "people": {"type": "integer"}}}


def test_a_call_whose_result_was_lost_goes_again_with_the_same_key_and_happens_once(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    """The window only the endpoint can close: the business did the work, the attempt died before
    the result was stored (here: the retry does not see it). The same call gets the same key."""
    book = Action("book_table", "Book.", f"{shop.url}/bookings", parameters=BOOK, token=DEFAULT_TOKEN)
    model.answer = lambda messages: (
        "booked: " + messages[-1]["content"]
        if last(messages).get("role") == "tool"
        else calling(("book_table", {"people": 2, "date": "2026-05-01"}))
    )
    first = loop(db, book).run(ask(model), prompt("book for 2"), MESSAGE, USER)
    again = loop(db, book).run(ask(model), prompt("book for 2"), MESSAGE, USER, fresh=True)
    (key,) = shop.keys("/bookings")
    assert shop.keys("/bookings")[key] == 2 and len(shop.shop.bookings) == 1
    assert '"B-0001"' in (first.reply or "") and '"B-0001"' in (again.reply or "")
    other = loop(db, book).run(ask(model), prompt("book for 2"), MESSAGE.replace("MQA=", "Mg=="), USER)
    assert '"B-0002"' in (other.reply or ""), "another message's same call is another booking"


def test_an_invalid_call_is_answered_with_the_reason_and_never_made(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    def answer(messages: list[dict[str, Any]]) -> Any:
        results = tool_results(messages)
        if not results:
            return calling(("order_status", {"order_id": 1001}))
        if len(results) == 1:
            return calling(("order_status", {"order_id": "A1001"}))  # tries again, fixed
        return "fixed"

    model.answer = answer
    outcome = loop(db, action(shop)).run(ask(model), prompt("order 1001"), MESSAGE, USER)
    first = tool_results(model.chats()[1]["messages"])[0]
    assert not first["ok"] and "order_id: 1001 is not of type 'string'" in first["error"]
    assert [r.json() for r in shop.calls("/orders/status")] == [{"order_id": "A1001"}]
    assert outcome.reply == "fixed" and outcome.calls == 1


def test_at_most_max_action_calls_per_message(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    asked = iter(range(100))
    model.answer = lambda messages: calling(("order_status", {"order_id": f"A{next(asked)}"}))
    outcome = loop(db, action(shop), max_calls=2).run(ask(model), prompt("all orders"), MESSAGE, USER)
    assert len(shop.calls("/orders/status")) == 2 and outcome.calls == 2
    refused = [r for r in tool_results(model.chats()[-1]["messages"]) if not r["ok"]]
    assert "at most 2 action calls per message" in refused[-1]["error"]


def test_a_5xx_is_tried_again_with_the_same_key_and_what_still_fails_is_told(
    shop: FakeBusiness, db: firestore.Client
) -> None:
    caller = Caller(timeout=2, max_bytes=16384, tries=3)
    shop.fail("/orders/status", 503, {"error": "down"}, times=1)
    result = caller.call(action(shop), {"order_id": "A1002"}, "k-1", USER)
    assert result.ok and result.tries == 2 and shop.keys("/orders/status") == {"k-1": 2}
    shop.reset()
    shop.fail("/orders/status", 500, {"error": "down"}, times=5)
    failed = caller.call(action(shop), {"order_id": "A1002"}, "k-2", USER)
    assert not failed.ok and failed.status == 500 and shop.keys() == {"k-2": 3}
    told = json.loads(failed.for_model("order_status"))
    assert told["ok"] is False and told["error"] == "the endpoint answered HTTP 500"


def test_a_timeout_is_tried_again_and_a_4xx_is_not(shop: FakeBusiness, db: firestore.Client) -> None:
    caller = Caller(timeout=0.5, max_bytes=16384, tries=2)
    shop.fail("/orders/status", 200, {"late": True}, times=1, delay=1.5)
    started = time.monotonic()
    result = caller.call(action(shop), {"order_id": "A1001"}, "k-3", USER)
    assert result.ok and result.tries == 2 and shop.keys() == {"k-3": 2}
    assert time.monotonic() - started < 3
    shop.reset()
    missing = caller.call(action(shop), {"order_id": "Z9"}, "k-4", USER)
    assert not missing.ok and missing.status == 404 and shop.keys() == {"k-4": 1}
    assert "there is no order" in missing.for_model("order_status")  # the endpoint's reason: data


def test_redirects_are_not_followed_and_a_big_answer_is_capped(
    shop: FakeBusiness, db: firestore.Client
) -> None:
    caller = Caller(timeout=2, max_bytes=16384, tries=3)
    moved = caller.call(action(shop, path="/redirect"), {"order_id": "A1"}, "k-5", USER)
    assert not moved.ok and moved.status == 302 and "redirect" in (moved.error or "")
    assert [r.path for r in shop.requests] == ["/redirect"], "the redirect was followed"
    big = caller.call(action(shop, path="/big"), {"order_id": "A1"}, "k-6", USER)
    assert big.ok and big.truncated and isinstance(big.body, str) and len(big.body.encode()) <= 16384
    assert len(big.for_model("big")) < 17000


def test_get_sends_the_arguments_as_the_query_string(shop: FakeBusiness, db: firestore.Client) -> None:
    lookup = action(shop, name="booking_details", path="/bookings", method="GET")
    result = Caller(timeout=2, max_bytes=16384, tries=1).call(lookup, {"booking_id": "B-0009"}, "k-7", USER)
    (request,) = shop.requests
    assert request.method == "GET" and request.path == "/bookings?booking_id=B-0009" and not request.body
    assert result.status == 404


def test_the_handoff_ends_the_loop_with_the_models_reason(
    shop: FakeBusiness, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.answer = lambda messages: calling(("handoff", {"reason": "wants a refund"}))
    outcome = loop(db, action(shop), handoff=True).run(ask(model), prompt("a person please"), MESSAGE, USER)
    assert outcome.handoff == "wants a refund" and outcome.reply is None and not shop.requests
