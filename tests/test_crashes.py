"""Crashes, frozen attempts and outages at each step of a reply: fenced claims keep one reply.

Two responder processes share the Firestore emulator: `doomed` is killed (SIGKILL) or frozen
(SIGSTOP, as a paused VM or a stalled process) mid-reply by a hook of the loopback Graph API /
OpenAI; `responder` is the instance Pub/Sub redelivers to. The claim each test relies on is the
one the dying process left, never a hand-made one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope
from common.bus.events import DEAD_LETTER_ATTRIBUTE
from common.meta.chunks import split_text
from common.responder.texts import DEFAULTS
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import stand_in_env
from tests.support.delivery import deliver, doomed_responder, killer, redeliver_until_answered
from tests.support.fakes import FakeGraph, FakeOpenAI, graph_error
from tests.support.wait import wait_for

SENDER = "15550006666"
# An attempt may work 4 s, a claim's lease is 5 s (renewed every 1.25 s while the attempt works,
# which stops storing and sending 1 s before it could end) so that a dead attempt's lease runs out
# within a test, and no redelivery waits for it (the attempt is shorter than two leases).
LEASE_SECONDS = 5
TIMING = {"ATTEMPT_TIMEOUT_SECONDS": "4", "CLAIM_LEASE_SECONDS": "5", "CLAIM_LEASE_MARGIN_SECONDS": "1"}
DEAD_LETTER = {DEAD_LETTER_ATTRIBUTE: "projects/p/subscriptions/whatsapp-text", "type": "text"}


@pytest.fixture(scope="module")
def env(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    return stand_in_env(
        emulators, graph, model, HISTORY_MAX_TURNS="100", HISTORY_MAX_CHARS="100000", **TIMING
    )


@pytest.fixture(scope="module")
def responder(env: dict[str, str]) -> Iterator[FunctionProcess]:
    """The instance that gets the redeliveries."""
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture
def doomed(env: dict[str, str]) -> Iterator[FunctionProcess]:
    """A second instance, killed or frozen by the test."""
    with doomed_responder(env) as function:
        yield function


def envelope(words: str = "what time is it?", user: str = SENDER) -> Envelope:
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", user, user, "106540352242922", "text", int(time.time()), words
    )


def claim_of(db: firestore.Client, item: Envelope) -> dict[str, Any]:
    return db.collection("claims").document(doc_id(item.message_id)).get().to_dict() or {}


def turns_of(db: firestore.Client, user: str = SENDER) -> list[dict[str, Any]]:
    return (db.collection("conversations").document(doc_id(user)).get().to_dict() or {}).get("turns", [])


def bodies(graph: FakeGraph) -> list[str]:
    return [s["text"]["body"] for s in graph.sent()]


def completion(content: str) -> dict[str, Any]:
    """A chat completion in OpenAI's wire format (for an answer the fake delays)."""
    return {
        "id": "chatcmpl-slow",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def log_records(function: FunctionProcess, offset: int) -> list[dict[str, Any]]:
    """The structured log lines the function wrote after `offset` (other output is skipped)."""
    records = []
    for line in function.log_text()[offset:].splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def is_chat(request: Any) -> bool:
    return request.path.endswith("/chat/completions")


def test_a_redelivery_during_a_killed_attempts_lease_waits_and_one_after_it_is_answered(
    db: firestore.Client,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    model.on(is_chat, killer(doomed))  # dies while the model is thinking
    item = envelope()
    assert deliver(doomed, item) == 0  # the connection died with the function
    left = claim_of(db, item)
    assert left["state"] == "working" and left["leaseUntil"] > datetime.now(UTC)  # the dead one's lease
    assert deliver(responder, item) == 500  # live lease: Pub/Sub retries later
    codes = redeliver_until_answered(responder, item)
    assert codes[-1] == 200 and set(codes[:-1]) <= {500}
    assert len(graph.sent()) == 1
    assert claim_of(db, item)["state"] == "done"
    assert [t["role"] for t in turns_of(db)] == ["user", "assistant"]


def test_a_crash_as_the_reply_goes_out_resends_the_stored_reply_without_asking_again(
    db: firestore.Client,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    graph.on(FakeGraph.is_text_send, killer(doomed))  # dies before the Graph API accepts the reply
    item = envelope()
    assert deliver(doomed, item) == 0
    assert graph.sent() == []
    assert redeliver_until_answered(responder, item)[-1] == 200
    [sent] = graph.sent()
    assert sent["context"] == {"message_id": item.message_id}
    assert len(model.chats()) == 1  # the stored reply was resent, the model not asked again


def test_a_crash_right_after_the_graph_api_accepted_the_reply_resends_it_at_most_once(
    db: firestore.Client,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    """The window docs/architecture.md names: accepted by Meta, not yet recorded in the claim."""
    graph.on(FakeGraph.is_text_send, killer(doomed), after_answer=True)
    item = envelope()
    first = deliver(doomed, item)
    [accepted] = bodies(graph)
    recorded = claim_of(db, item)["state"]
    assert first == 0 or recorded == "done"
    assert redeliver_until_answered(responder, item)[-1] == 200
    if recorded == "working":  # killed before the claim said done: the one documented resend
        assert bodies(graph) == [accepted, accepted]
    else:
        assert bodies(graph) == [accepted]
    assert len(model.chats()) == 1
    sent = len(graph.sent())
    assert deliver(responder, item) == 200  # any later redelivery changes nothing
    assert len(graph.sent()) == sent


def test_a_crash_after_part_two_of_three_resends_only_part_three(
    db: firestore.Client,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    answer = " ".join(f"Sentence {i} tells a little more of the story." for i in range(400))[:9000]
    model.answer = lambda messages: answer
    parts = split_text(answer)
    assert len(parts) == 3
    # Parts 1 and 2 are accepted (and recorded); the process dies as part 3 goes out.
    graph.on(lambda r: FakeGraph.is_text_send(r) and r.json()["text"]["body"] == parts[2], killer(doomed))
    item = envelope("tell me a long story")
    assert deliver(doomed, item) == 0
    assert bodies(graph) == parts[:2]
    assert claim_of(db, item)["partsSent"] == 2
    assert redeliver_until_answered(responder, item)[-1] == 200
    assert bodies(graph) == parts  # part 3 only was resent
    assert len(model.chats()) == 1


def test_a_stale_attempt_frozen_past_its_lease_changes_nothing(
    db: firestore.Client,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    model.fail("/chat/completions", 200, completion("a late answer"), times=1, delay=2)
    item = envelope()
    with ThreadPoolExecutor(1) as pool:
        stale = pool.submit(deliver, doomed, item)
        assert wait_for(lambda: len(model.chats()) == 1)  # the first attempt waits for the model
        os.killpg(doomed.process.pid, signal.SIGSTOP)  # frozen past its lease
        codes = redeliver_until_answered(responder, item)
        assert codes[-1] == 200 and 500 in codes  # refused while the frozen attempt's lease lived
        taken_over = claim_of(db, item)
        os.killpg(doomed.process.pid, signal.SIGCONT)
        assert stale.result(timeout=60) == 200  # it lost its claim: acknowledged, nothing more done
    assert claim_of(db, item) == taken_over  # its release/done changed nothing
    [reply] = bodies(graph)
    assert reply.startswith("echo: what time is it?")
    assert [t["content"] for t in turns_of(db) if t["role"] == "assistant"] == [reply]
    assert "lost the claim to another attempt" in doomed.log_text()


def test_a_model_slower_than_the_lease_and_a_redelivery_give_one_reply(
    db: firestore.Client, responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    model.fail("/chat/completions", 200, completion("too late"), times=1, delay=LEASE_SECONDS + 2)
    item = envelope()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(deliver, responder, item)
        assert wait_for(lambda: len(model.chats()) == 1)
        codes = redeliver_until_answered(responder, item)  # Pub/Sub redelivering meanwhile
        assert codes[0] == 500 and codes[-1] == 200
        assert first.result(timeout=60) == 500  # stopped at its deadline, released the claim
    [reply] = bodies(graph)
    assert reply.startswith("echo: what time is it?")
    assert [t["content"] for t in turns_of(db) if t["role"] == "assistant"] == [reply]


def test_a_graph_token_error_reaches_the_dead_letter_path_and_is_never_marked_done(
    db: firestore.Client, responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    graph.fail("/messages", 401, graph_error(190, "Error validating access token"), times=1000)
    logged_before = len(responder.log_text())
    item = envelope()
    assert [deliver(responder, item) for _ in range(3)] == [500] * 3  # retried, never acknowledged
    assert deliver(responder, item, DEAD_LETTER) == 500  # the dead-letter delivery waits as well
    assert claim_of(db, item)["state"] == "working"
    alerts = [line for line in log_records(responder, logged_before) if line.get("alert") == "graph_auth"]
    assert len(alerts) == 4
    assert {(a["severity"], a["message"], a["code"]) for a in alerts} == {
        ("ERROR", "Graph API token or permission error", 190)
    }
    assert graph.sent() == []
    graph.failures.clear()  # the token is renewed: the next dead-letter delivery gets through
    assert deliver(responder, item, DEAD_LETTER) == 200
    assert bodies(graph) == [DEFAULTS["MODEL_ERROR_TEXT"]]
    assert claim_of(db, item)["state"] == "done"


def test_a_reset_redelivered_after_a_takeover_keeps_the_turns_added_since(
    db: firestore.Client, responder: FunctionProcess, doomed: FunctionProcess, graph: FakeGraph
) -> None:
    assert deliver(responder, envelope("I like green")) == 200
    reset = envelope("/reset")
    # The history is forgotten, then the process dies as the confirmation goes out.
    graph.on(
        lambda r: FakeGraph.is_text_send(r) and r.json()["text"]["body"] == DEFAULTS["RESET_TEXT"],
        killer(doomed),
    )
    assert deliver(doomed, reset) == 0
    assert turns_of(db) == []
    assert deliver(responder, envelope("I like blue now")) == 200
    assert redeliver_until_answered(responder, reset)[-1] == 200
    assert [t["content"] for t in turns_of(db) if t["role"] == "user"] == ["I like blue now"]
    assert bodies(graph)[-1] == DEFAULTS["RESET_TEXT"]
