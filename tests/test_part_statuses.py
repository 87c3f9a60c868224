"""The last duplicate window: a part Meta accepted just before the instance died is not sent again.

Each part goes out with callback data; the loopback Graph API reports every accepted message to
the real webhook as Meta does (`sent`, then `delivered`, signed), the webhook publishes our
parts' statuses to the status topic (no ordering key), and its push subscription on the
Pub/Sub emulator hands them to the responder, which records them. `doomed` dies (SIGKILL) right
after Meta accepted a part, before its progress was written; the redelivery to `responder`
takes over and sends only what Meta did not report taken.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope
from common.meta.chunks import split_text
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from local.topics import wire_push
from tests.conftest import APP_SECRET, PROJECT, stand_in_env
from tests.support.delivery import deliver, doomed_responder, killer, redeliver_until_answered
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.tool_model import calling
from tests.support.wait import wait_for

SENDER = "15550008888"
TOPIC_STATUS = "test-status"
# Short leases, so that a killed attempt's lease lapses within a test (valid before renewals too).
TIMING = {"ATTEMPT_TIMEOUT_SECONDS": "8", "CLAIM_LEASE_SECONDS": "10", "CLAIM_LEASE_MARGIN_SECONDS": "1"}
GRAPH = {"GRAPH_TIMEOUT_SECONDS": "1"}  # a send Meta answers late times out
CALLBACK = re.compile(r"wb1:[0-9a-f]{40}:\d")


@pytest.fixture(scope="module")
def env(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    return stand_in_env(
        emulators, graph, model, TOPIC_STATUS=TOPIC_STATUS, HISTORY_MAX_TURNS="100", **TIMING, **GRAPH
    )


@pytest.fixture(scope="module")
def responder(env: dict[str, str]) -> Iterator[FunctionProcess]:
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture(scope="module")
def statuses(
    emulators: emu.Emulators, env: dict[str, str], graph: FakeGraph, responder: FunctionProcess
) -> Iterator[FunctionProcess]:
    """Meta's statuses reach the real webhook; its status topic pushes to the responder."""
    emu.wipe_pubsub(emulators.pubsub, PROJECT)
    wire_push(emulators.pubsub.address, PROJECT, {}, unordered={TOPIC_STATUS: responder.url})
    webhook = serve("webhook", env)
    graph.report_statuses(webhook.url, APP_SECRET)
    yield webhook
    graph.report_statuses(None)
    webhook.stop()


@pytest.fixture
def doomed(env: dict[str, str]) -> Iterator[FunctionProcess]:
    with doomed_responder(env) as function:
        yield function


def envelope(words: str) -> Envelope:
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", SENDER, SENDER, "106540352242922", "text", int(time.time()), words
    )


def bodies(graph: FakeGraph) -> list[str]:
    return [s["text"]["body"] for s in graph.sent()]


def recorded(db: firestore.Client, item: Envelope) -> list[int]:
    found = db.collection("sent").document(doc_id(item.message_id)).get().to_dict() or {}
    return sorted(found.get("parts", []))


def claim_of(db: firestore.Client, item: Envelope) -> dict[str, Any]:
    return db.collection("claims").document(doc_id(item.message_id)).get().to_dict() or {}


def test_a_crash_right_after_meta_accepted_the_only_part_sends_it_once(
    db: firestore.Client,
    statuses: FunctionProcess,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    graph.on(FakeGraph.is_text_send, killer(doomed), after_answer=True)  # accepted, then the crash
    item = envelope("what time is it?")
    assert deliver(doomed, item) == 0
    [accepted] = bodies(graph)
    assert claim_of(db, item)["state"] == "working"  # the crash came before `done`
    assert wait_for(lambda: recorded(db, item) == [0], timeout=20)  # Meta's status, recorded
    assert redeliver_until_answered(responder, item)[-1] == 200
    assert bodies(graph) == [accepted]  # not sent again
    assert claim_of(db, item)["state"] == "done"
    assert len(model.chats()) == 1
    [callback] = {m["biz_opaque_callback_data"] for m in graph.messages()}
    assert CALLBACK.fullmatch(callback) and SENDER not in callback and item.message_id not in callback
    for function in (statuses, responder, doomed):  # neither the wamid nor the number in any log
        assert item.message_id not in function.log_text() and SENDER not in function.log_text()


def test_a_crash_right_after_meta_accepted_part_two_of_three_sends_only_part_three(
    db: firestore.Client,
    statuses: FunctionProcess,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    answer = " ".join(f"Sentence {i} tells a little more of the story." for i in range(400))[:9000]
    model.answer = lambda messages: answer
    parts = split_text(answer)
    assert len(parts) == 3
    second = lambda r: FakeGraph.is_text_send(r) and r.json()["text"]["body"] == parts[1]  # noqa: E731
    graph.on(second, killer(doomed), after_answer=True)  # part 2 accepted, its progress never written
    item = envelope("tell me a long story")
    assert deliver(doomed, item) == 0
    assert bodies(graph) == parts[:2]
    assert claim_of(db, item)["partsSent"] == 1
    assert wait_for(lambda: recorded(db, item) == [0, 1], timeout=20)
    assert redeliver_until_answered(responder, item)[-1] == 200
    assert bodies(graph) == parts  # part 3 only was sent by the takeover
    assert [m["biz_opaque_callback_data"][-2:] for m in graph.messages()] == [":0", ":1", ":2"]
    assert len(model.chats()) == 1


def test_a_send_that_timed_out_after_meta_took_it_is_not_sent_again_once_its_late_status_comes(
    db: firestore.Client, statuses: FunctionProcess, responder: FunctionProcess, graph: FakeGraph
) -> None:
    """Meta accepts the part but answers too late (GRAPH_TIMEOUT_SECONDS=1): the attempt releases
    the claim with the send in flight; the redelivery takes over at once and waits (a bounded few
    seconds) for the status, which comes 2 s after the part."""
    graph.report_statuses(statuses.url, APP_SECRET, after=2)
    try:
        graph.on(FakeGraph.is_text_send, lambda: time.sleep(2.5), after_answer=True)
        item = envelope("what time is it?")
        assert deliver(responder, item) == 500  # the send timed out: released, redelivered
        [accepted] = bodies(graph)
        assert claim_of(db, item)["sending"] == 0
        started = time.monotonic()
        assert deliver(responder, item) == 200
        waited = time.monotonic() - started
    finally:
        graph.report_statuses(statuses.url, APP_SECRET)
    assert bodies(graph) == [accepted]
    assert recorded(db, item) == [0]
    assert waited < 5 + 3  # STATUS_WAIT_SECONDS, and the turn


def test_without_a_status_a_part_whose_fate_is_unknown_is_sent_again_after_the_wait(
    db: firestore.Client, statuses: FunctionProcess, responder: FunctionProcess, graph: FakeGraph
) -> None:
    graph.report_statuses(None)  # Meta says nothing (or its status is lost)
    try:
        graph.on(FakeGraph.is_text_send, lambda: time.sleep(2.5), after_answer=True)
        item = envelope("what time is it?")
        assert deliver(responder, item) == 500
        started = time.monotonic()
        assert deliver(responder, item) == 200
        waited = time.monotonic() - started
    finally:
        graph.report_statuses(statuses.url, APP_SECRET)
    assert len(bodies(graph)) == 2  # the documented resend: nothing said the first one went out
    assert recorded(db, item) == []
    assert 3 <= waited < 5 + 3  # the bounded wait (within half of the 8 s attempt), from the release


BOOKING = """
actions:
  - name: book_table
    description: Book a table.
    url: ${SHOP_URL}/bookings
    parameters:
      type: object
      properties: {date: {type: string}, people: {type: integer}}
      required: [date, people]
    confirm: true
    confirm_text: "Book a table for {people} on {date}?"
"""


def test_a_crash_right_after_meta_accepted_an_actions_question_does_not_ask_it_again(
    db: firestore.Client,
    statuses: FunctionProcess,
    env: dict[str, str],
    graph: FakeGraph,
    model: FakeOpenAI,
    tmp_path: Path,
) -> None:
    """A `confirm: true` action's question (one message with its buttons) is a part like any other."""
    (tmp_path / "actions.yaml").write_text(BOOKING)
    with_actions = {**env, "ACTIONS_FILE": str(tmp_path / "actions.yaml"), "SHOP_URL": "http://127.0.0.1:9"}
    doomed, taker = serve("responder", with_actions), serve("responder", with_actions)
    try:
        model.answer = lambda messages: calling(("book_table", {"date": "2026-05-01", "people": 2}))
        is_question = lambda r: r.path.endswith("/messages") and r.json().get("type") == "interactive"  # noqa: E731
        graph.on(is_question, killer(doomed), after_answer=True)
        item = envelope("a table for 2 on 1 May")
        assert deliver(doomed, item) == 0
        assert wait_for(lambda: recorded(db, item) == [0], timeout=20)
        assert redeliver_until_answered(taker, item)[-1] == 200
    finally:
        doomed.stop()
        taker.stop()
    assert [m["type"] for m in graph.messages()] == ["interactive"]  # asked once
