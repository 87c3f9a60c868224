"""make dev's side of actions: the simulator renders reply buttons and a tap is a real button_reply
webhook; the offline stand-in model calls an action when the user's words name it."""

from __future__ import annotations

import json
from typing import Any

from common.actions import spec
from common.actions.confirm import button_ids, tapped
from common.bus.envelope import Envelope
from local import offline_model
from local.functions import FunctionProcess
from local.simulator.server import create_app
from tests.conftest import APP_SECRET, TOPIC_AUDIO
from tests.support.pubsub import Topics
from tests.test_actions_file import ENV, EXAMPLE

USER = "15551234567"  # one of the simulator's default users
GRAPH = {"Authorization": "Bearer sim-graph-token"}
PAGE = {"X-Simulator-Token": "sim-token"}


def buttons(*pairs: tuple[str, str], body: str = "Book a table for 2?") -> dict[str, Any]:
    rows = [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in pairs]
    interactive = {"type": "button", "body": {"text": body}, "action": {"buttons": rows}}
    return {"messaging_product": "whatsapp", "to": USER, "type": "interactive", "interactive": interactive}


def test_a_tap_on_the_bots_button_reaches_the_responder_as_whatsapp_sends_it(
    webhook: FunctionProcess, topics: Topics
) -> None:
    app = create_app(webhook.url, APP_SECRET, "sim-graph-token", simulator_token="sim-token")
    client = app.test_client()
    yes, no = button_ids("k" * 32)
    sent = client.post(
        "/graph/v25.0/106540352242922/messages",
        json=buttons((yes, "Yes, go ahead"), (no, "No")),
        headers=GRAPH,
    )
    assert sent.status_code == 200, sent.json
    asked = sent.json["messages"][0]["id"]
    shown = app.extensions["store"].messages[asked]
    assert shown.type == "interactive" and shown.text == "Book a table for 2?"
    assert shown.extra["interactive"]["action"]["buttons"][0]["reply"]["title"] == "Yes, go ahead"
    refused = client.post(
        "/api/messages", json={"user": USER, "reply_id": "other", "context_id": asked}, headers=PAGE
    )
    assert refused.status_code == 400 and "no button" in refused.json["error"]
    tap = client.post(
        "/api/messages", json={"user": USER, "reply_id": yes, "context_id": asked}, headers=PAGE
    )
    assert tap.status_code == 200, tap.json
    [received] = topics.pull(TOPIC_AUDIO, expect=1)  # every message enters by the ordered topic
    envelope = Envelope.from_bytes(received.data)
    assert envelope.type == "interactive" and envelope.reply_id == yes and envelope.context_id == asked
    assert envelope.text == "Yes, go ahead" and tapped(envelope.reply_id) == ("k" * 32, True)


def test_the_simulator_refuses_buttons_meta_would_refuse(webhook: FunctionProcess) -> None:
    client = create_app(webhook.url, APP_SECRET, "sim-graph-token", simulator_token="sim-token").test_client()
    path = "/graph/v25.0/106540352242922/messages"
    cases = {
        "1 to 3 buttons": buttons(*[(f"b{n}", f"{n}") for n in range(4)]),
        "1 to 20 characters": buttons(("a", "a title of twenty-one")),
        "unique": buttons(("a", "Yes"), ("a", "No")),
        "at most 1024": buttons(("a", "Yes"), body="x" * 1025),
    }
    for reason, payload in cases.items():
        answer = client.post(path, json=payload, headers=GRAPH)
        assert answer.status_code == 400 and reason in answer.json["error"]["error_data"]["details"], reason


def test_the_offline_model_calls_the_action_the_words_name_then_says_what_it_answered() -> None:
    tools = spec.load(EXAMPLE, handoff=True, env=ENV).tools()

    def answer(words: str) -> dict[str, Any]:
        body = {"messages": [{"role": "user", "content": words}], "tools": tools}
        return offline_model.completion(body)["choices"][0]

    def call(words: str) -> tuple[str, dict[str, Any]]:
        choice = answer(words)
        assert choice["finish_reason"] == "tool_calls", words
        function = choice["message"]["tool_calls"][0]["function"]
        return function["name"], json.loads(function["arguments"])

    assert call("what is the order status of a1001?") == ("order_status", {"order_id": "A1001"})
    booked = call("book table on 2026-05-01 at 19:30 for 4 people")
    assert booked == ("book_table", {"date": "2026-05-01", "time": "19:30", "people": 4})
    assert call("can I talk to a person?")[0] == "handoff"
    assert answer("hello there")["message"]["content"].startswith(offline_model.LABEL)
    result = {"action": "order_status", "ok": True, "status": 200, "data": {"status": "shipped"}}
    after = [
        {"role": "user", "content": "order status A1001"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps(result)},
    ]
    said = offline_model.completion({"messages": after, "tools": tools})["choices"][0]["message"]["content"]
    assert said == f'{offline_model.LABEL} The action order_status answered: {{"status": "shipped"}}'
