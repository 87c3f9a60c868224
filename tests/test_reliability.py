"""Reliability: Meta's retries, crashes at every step, bursts, failing neighbours and bad input.

The whole text path runs for real: webhook → Pub/Sub emulator (ordered push) → responder →
loopback Graph API, with Firestore on its emulator and a loopback OpenAI.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.cloud import firestore

from common.envelope import Envelope
from common.events import DEAD_LETTER_ATTRIBUTE, event_for
from common.texts import DEFAULTS
from local import emulators as emu
from local.functions import FunctionProcess, serve
from local.topics import wire_push
from tests.conftest import APP_SECRET, PROJECT, TOPIC_TEXT, stand_in_env
from tests.support.fakes import FakeGraph, FakeOpenAI, echo_model
from tests.support.meta import fixture, signed_headers

LEASE_SECONDS = 2
SENDER = "15550007777"


@pytest.fixture(scope="module")
def env(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    return stand_in_env(
        emulators,
        graph,
        model,
        OPENAI_MAX_RETRIES="2",
        HISTORY_MAX_TURNS="100",
        HISTORY_MAX_CHARS="100000",
        CLAIM_LEASE_SECONDS=str(LEASE_SECONDS),
    )


@pytest.fixture(scope="module")
def webhook(env: dict[str, str]) -> Iterator[FunctionProcess]:
    function = serve("webhook", env)
    yield function
    function.stop()


@pytest.fixture(scope="module")
def responder(env: dict[str, str]) -> Iterator[FunctionProcess]:
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture
def clean(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> None:
    emulators.wipe(PROJECT)
    graph.reset()
    model.reset()
    model.answer = echo_model


@pytest.fixture
def pipeline(
    clean: None, emulators: emu.Emulators, webhook: FunctionProcess, responder: FunctionProcess
) -> None:
    """The text topic pushes to the responder, in order per user, as in `make dev`."""
    wire_push(emulators.pubsub.address, PROJECT, {TOPIC_TEXT: responder.url})


def text_payload(words: str, user: str = SENDER) -> bytes:
    body = fixture("messages/text")
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = user
    message = value["messages"][0]
    message.update({"id": f"wamid.{uuid.uuid4().hex}", "from": user, "text": {"body": words}})
    return json.dumps(body).encode()


def post_signed(webhook: FunctionProcess, body: bytes) -> int:
    return requests.post(
        webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30
    ).status_code


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# --- Meta's retries and bursts through the whole pipeline -------------------------------------


def test_meta_retrying_the_same_webhook_three_times_and_in_parallel_gives_one_reply(
    pipeline: None, webhook: FunctionProcess, graph: FakeGraph
) -> None:
    body = text_payload("hello, are you there?")
    assert [post_signed(webhook, body) for _ in range(3)] == [200] * 3
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(lambda _: post_signed(webhook, body), range(3))) == [200] * 3
    assert wait_for(lambda: len(graph.sent()) >= 1)
    time.sleep(LEASE_SECONDS + 1)  # long enough for any duplicate to have been answered
    assert len(graph.sent()) == 1


def test_twenty_messages_from_one_user_are_all_kept_and_answered_in_order(
    pipeline: None, webhook: FunctionProcess, graph: FakeGraph
) -> None:
    bodies = [text_payload(f"burst message {i}") for i in range(20)]
    for body in bodies:
        assert post_signed(webhook, body) == 200
    assert wait_for(lambda: len(graph.sent()) == 20, timeout=60)
    ids = [json.loads(b)["entry"][0]["changes"][0]["value"]["messages"][0]["id"] for b in bodies]
    assert [s["context"]["message_id"] for s in graph.sent()] == ids  # the ordering key's promise
    db = firestore.Client(project=PROJECT)
    from common.claims import doc_id

    turns = db.collection("conversations").document(doc_id(SENDER)).get().to_dict()["turns"]
    assert [t["content"] for t in turns if t["role"] == "user"] == [f"burst message {i}" for i in range(20)]


# --- crashes at each step, then Pub/Sub's redelivery ------------------------------------------


def envelope(words: str = "what time is it?") -> Envelope:
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", SENDER, SENDER, "106540352242922", "text", int(time.time()), words
    )


def deliver(function: FunctionProcess, item: Envelope, attributes: dict[str, str] | None = None) -> int:
    push = event_for(item)
    push["message"]["attributes"].update(attributes or {})
    try:
        return requests.post(function.url, json=push, timeout=60).status_code
    except requests.ConnectionError:
        return 0  # the function died while handling it


def killer(function: FunctionProcess) -> Callable[[], None]:
    return lambda: os.killpg(function.process.pid, signal.SIGKILL)


@pytest.mark.parametrize("step", ["after the claim", "after the model", "after the send"])
def test_a_crash_at_each_step_never_gives_two_replies_nor_none(
    clean: None, env: dict[str, str], graph: FakeGraph, model: FakeOpenAI, step: str
) -> None:
    crashing = serve("responder", env)
    item = envelope()
    if step == "after the claim":  # dies while the model is thinking
        model.on(lambda r: r.path.endswith("/chat/completions"), killer(crashing))
    elif step == "after the model":  # dies as the reply goes out, before the Graph API accepts it
        graph.on(FakeGraph.is_text_send, killer(crashing))
    first = deliver(crashing, item)
    if step == "after the send":  # answered, then died before Pub/Sub got the ack
        assert first == 200
    else:
        assert first == 0  # the connection died with the function
    crashing.stop()

    replacement = serve("responder", env)
    try:
        codes = [deliver(replacement, item)]  # Pub/Sub redelivers, with backoff while it fails
        while codes[-1] != 200 and len(codes) < 4:
            assert codes[-1] == 500  # the dead attempt's lease is still live: retry later
            time.sleep(LEASE_SECONDS)
            codes.append(deliver(replacement, item))
        assert codes[-1] == 200
    finally:
        replacement.stop()
    assert len(graph.sent()) == 1
    if step == "after the model":
        assert len(model.chats()) == 1  # the stored reply was resent, the model not asked again


# --- failing neighbours -----------------------------------------------------------------------


def test_model_429_three_times_then_success_gives_one_reply(
    clean: None, responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    model.fail("/chat/completions", 429, {"error": {"message": "slow down", "type": "rate_limit"}}, times=3)
    item = envelope()
    assert deliver(responder, item) == 500  # the SDK's 3 attempts all throttled: redeliver
    assert deliver(responder, item) == 200
    assert len(model.chats()) == 4
    assert len(graph.sent()) == 1


def test_graph_5xx_then_success_gives_one_reply(
    clean: None, responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    graph.fail("/messages", 502, b"<html>bad gateway</html>", times=2)  # the receipt and the reply
    item = envelope()
    assert deliver(responder, item) == 500
    assert deliver(responder, item) == 200
    assert len(graph.sent()) == 1
    assert len(model.chats()) == 1


def test_a_message_the_model_never_answers_ends_on_the_dead_letter_path_with_one_apology(
    clean: None, responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    model.fail("/chat/completions", 503, {"error": {"message": "down"}}, times=1000)
    item = envelope()
    assert [deliver(responder, item) for _ in range(3)] == [500] * 3  # every attempt fails
    dead_letter = {DEAD_LETTER_ATTRIBUTE: "projects/p/subscriptions/whatsapp-text", "type": "text"}
    assert deliver(responder, item, dead_letter) == 200
    assert deliver(responder, item, dead_letter) == 200  # the dead-letter delivery repeated
    assert [s["text"]["body"] for s in graph.sent()] == [DEFAULTS["MODEL_ERROR_TEXT"]]
    model.failures.clear()
