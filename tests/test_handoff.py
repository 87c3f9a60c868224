"""Handoff: the bot pauses for the user, each admin is told once, the user's messages reach the
admins, /reply and /resume; a refused notification alerts (emulator + loopback Graph API)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from common.actions.handoff import ALERT, Handoffs, Handover, Started
from common.meta.graph import GraphClient, GraphError
from common.store.counters import Pauses
from common.store.history import Budget, History
from tests.support.fakes import FakeGraph, graph_error

USER, ADMINS = "15550009999", frozenset({"15550000001", "15550000002"})
BUSINESS = "106540352242922"
ASKED = "wamid.HBgLMTU1NTAwMDk5OTkVAgASGBQzSEFORE9GRjAwMDAwMDAwMDAwMQA="
HANDOVER = Handover(USER, USER, "Ann", BUSINESS, "wants a refund")


def handoffs(graph: FakeGraph) -> Handoffs:
    db = firestore.Client()
    history = History(db, Budget(20, 12000), ttl=timedelta(days=30))
    client = GraphClient(token=graph.token, base=graph.url)
    return Handoffs(db, Pauses(db, 0), history, client, ADMINS)


def paused(hands: Handoffs, user: str = USER) -> bool:
    return hands.pauses.until(frozenset({user}), datetime.now(UTC)) is not None


def test_a_handoff_pauses_the_user_tells_each_admin_once_and_is_never_started_twice(
    graph: FakeGraph, db: firestore.Client
) -> None:
    hands = handoffs(graph)
    assert hands.start(HANDOVER, ASKED, by_model=False) is Started.STARTED
    assert paused(hands) and hands.current(USER) == HANDOVER
    assert hands.start(HANDOVER, ASKED, by_model=False) is Started.STARTED  # its redelivery
    assert hands.start(HANDOVER, "wamid.LATER", by_model=True) is Started.ALREADY  # no loop
    assert hands.start(HANDOVER, "wamid.HUMAN", by_model=False) is Started.ALREADY
    progress: list[int] = []
    assert hands.notify(HANDOVER, "I want my money back", progress=progress.append) == 2
    sent = graph.sent()
    assert sorted(m["to"] for m in sent) == sorted(ADMINS) and progress == [1]
    text = sent[0]["text"]["body"]
    assert "Ann (15550009999) asks for a person: I want my money back" in text
    assert "Why: wants a refund" in text and f"/reply {USER} <text>" in text and f"/resume {USER}" in text
    record = db.collection("handoffs").document(hands.ref(USER).id).get().to_dict()
    assert ASKED not in json.dumps(record, default=str)


def test_a_retry_tells_only_the_admins_not_yet_told(graph: FakeGraph, db: firestore.Client) -> None:
    hands = handoffs(graph)
    graph.fail("/messages", 503, graph_error(131000, "Something went wrong"), times=1)
    with pytest.raises(GraphError):
        hands.forward(HANDOVER, "hello?", start=1)
    assert hands.forward(HANDOVER, "hello?", start=1) == 2
    (one,) = graph.sent()
    assert one["to"] == sorted(ADMINS)[1] and one["text"]["body"].startswith("Ann (15550009999): hello?")


def test_an_admin_outside_the_window_writes_one_handoff_alert(
    graph: FakeGraph, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    hands = handoffs(graph)
    outside = graph_error(131047, "Re-engagement message: more than 24 hours have passed")
    graph.fail("/messages", 400, outside, times=1)
    capsys.readouterr()
    assert hands.notify(HANDOVER, "help") == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    alerts = [line for line in lines if line.get("alert") == "handoff"]
    assert len(alerts) == 1 and alerts[0]["severity"] == "ERROR" and alerts[0]["message"] == ALERT
    assert alerts[0]["code"] == 131047 and alerts[0]["admin"] == "***0001"
    assert [m["to"] for m in graph.sent()] == [sorted(ADMINS)[1]]  # the other admin still told


def test_reply_reaches_the_user_and_the_history_as_a_humans_turn_and_resume_gives_it_back(
    graph: FakeGraph, db: firestore.Client
) -> None:
    hands = handoffs(graph)
    assert hands.relay(USER, "Hello Ann", "wamid.ADMIN1") == f"No chat with {USER} is handed over " + (
        "(see /resume, or the notification's /reply line)."
    )
    hands.start(HANDOVER, ASKED, by_model=True)
    assert (
        hands.relay("+1 555 000 9999", "Hello Ann, Bob here.", "wamid.ADMIN2") == "Sent to Ann (15550009999)."
    )
    assert hands.relay(USER, "Hello Ann, Bob here.", "wamid.ADMIN2") == "Sent to Ann (15550009999)."
    (turn,) = hands.history.load(USER).turns  # a redelivered /reply is stored once
    assert turn == {
        "role": "assistant",
        "content": "Hello Ann, Bob here.",
        "messageId": "wamid.ADMIN2",
        "author": "human",
    }
    assert [m["to"] for m in graph.sent()] == [USER, USER]
    graph.fail("/messages", 400, graph_error(131047, "outside"), times=1)
    assert "more than 24 hours" in hands.relay(USER, "still there?", "wamid.ADMIN3")
    assert hands.resume(USER) == "Resumed: the bot answers Ann (15550009999) again."
    assert not paused(hands) and hands.current(USER) is None
    assert hands.resume(USER) is None  # not handed over any more: the plain /resume applies
    # The model may not hand it straight back (a loop); the user's own /human may.
    assert hands.start(HANDOVER, "wamid.MODEL", by_model=True) is Started.COOLING
    assert not paused(hands)
    assert hands.start(HANDOVER, "wamid.HUMAN2", by_model=False) is Started.STARTED and paused(hands)
