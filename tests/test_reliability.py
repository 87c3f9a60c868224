"""Reliability: Meta's retries, crashes at every step, bursts, failing neighbours and bad input.

The whole text path runs for real: webhook → Pub/Sub emulator (ordered push) → transcriber (which
hands text on) → ordered push → responder → loopback Graph API, with Firestore on its emulator
and a loopback OpenAI.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.cloud import firestore

from common.bus.envelope import Envelope
from common.bus.events import DEAD_LETTER_ATTRIBUTE
from common.responder.texts import DEFAULTS
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from local.topics import wire_push
from tests.conftest import APP_SECRET, PROJECT, TOPIC_AUDIO, TOPIC_TEXT, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.meta import fixture, signed_headers
from tests.support.wait import wait_for

SENDER = "15550007777"
# Short leases, so that a dead attempt's runs out within a test (20 s renewed every 5 s in production).
TIMING = {"ATTEMPT_TIMEOUT_SECONDS": "4", "CLAIM_LEASE_SECONDS": "5", "CLAIM_LEASE_MARGIN_SECONDS": "1"}


@pytest.fixture(scope="module")
def env(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    return stand_in_env(
        emulators,
        graph,
        model,
        OPENAI_MAX_RETRIES="2",
        HISTORY_MAX_TURNS="100",
        HISTORY_MAX_CHARS="100000",
        **TIMING,
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


@pytest.fixture(scope="module")
def transcriber(env: dict[str, str]) -> Iterator[FunctionProcess]:
    function = serve("transcriber", env)
    yield function
    function.stop()


@pytest.fixture
def clean(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> None:
    emulators.wipe(PROJECT)
    graph.reset()
    model.reset()


@pytest.fixture
def pipeline(
    clean: None,
    emulators: emu.Emulators,
    webhook: FunctionProcess,
    transcriber: FunctionProcess,
    responder: FunctionProcess,
) -> None:
    """Both topics push to their function, in order per user, as in `make dev`."""
    wire_push(emulators.pubsub.address, PROJECT, {TOPIC_AUDIO: transcriber.url, TOPIC_TEXT: responder.url})


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


def outcomes(function: FunctionProcess, offset: int) -> int:
    """Deliveries the function finished for good (replied or acknowledged) since `offset`."""
    text = function.log_text()[offset:]
    return text.count('"reply sent"') + text.count('"already answered: redelivery acknowledged"')


# --- Meta's retries and bursts through the whole pipeline -------------------------------------


def test_meta_retrying_the_same_webhook_three_times_and_in_parallel_gives_one_reply(
    pipeline: None, webhook: FunctionProcess, responder: FunctionProcess, graph: FakeGraph
) -> None:
    body = text_payload("hello, are you there?")
    logged_before = len(responder.log_text())
    assert [post_signed(webhook, body) for _ in range(3)] == [200] * 3
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(lambda _: post_signed(webhook, body), range(3))) == [200] * 3
    # Six copies were published: wait until every one was answered or acknowledged for good.
    assert wait_for(lambda: outcomes(responder, logged_before) >= 6, timeout=60)
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
    turns = db.collection("conversations").document(doc_id(SENDER)).get().to_dict()["turns"]
    assert [t["content"] for t in turns if t["role"] == "user"] == [f"burst message {i}" for i in range(20)]


def push_subscription_as_deployed(address: str, topic: str, endpoint: str) -> None:
    """The text topic's subscription as deploy.sh creates it: push, ordered by user, dead-letter
    topic after a few attempts, retry back-off, ack deadline = the function's timeout."""
    from google.cloud import pubsub_v1
    from google.protobuf import duration_pb2

    with emu.pubsub_host(address):
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        for name in (topic, f"{topic}-dead-letter"):
            publisher.create_topic(request={"name": publisher.topic_path(PROJECT, name)})
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PROJECT, f"{topic}-deployed"),
                "topic": publisher.topic_path(PROJECT, topic),
                "push_config": {"push_endpoint": endpoint},
                "enable_message_ordering": True,
                "ack_deadline_seconds": 10,
                "dead_letter_policy": {
                    "dead_letter_topic": publisher.topic_path(PROJECT, f"{topic}-dead-letter"),
                    "max_delivery_attempts": 5,
                },
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=1),
                    "maximum_backoff": duration_pb2.Duration(seconds=10),
                },
                "message_retention_duration": duration_pb2.Duration(seconds=7 * 24 * 3600),
            }
        )
    finally:
        subscriber.close()
        publisher.transport.close()


def test_twenty_messages_through_the_deployed_push_subscription_are_answered_in_order_with_context(
    clean: None, emulators: emu.Emulators, responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    from google.cloud import pubsub_v1

    push_subscription_as_deployed(emulators.pubsub.address, TOPIC_TEXT, responder.url)
    items = [envelope(f"ordered message {i}") for i in range(20)]
    with emu.pubsub_host(emulators.pubsub.address):
        publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
    topic = publisher.topic_path(PROJECT, TOPIC_TEXT)
    futures = [
        publisher.publish(topic, item.to_bytes(), ordering_key=item.user, **item.attributes) for item in items
    ]
    for future in futures:
        future.result(timeout=30)
    publisher.transport.close()
    assert wait_for(lambda: len(graph.sent()) >= 20, timeout=120)
    assert [s["context"]["message_id"] for s in graph.sent()] == [i.message_id for i in items]
    chats = model.chats()
    assert len(chats) == 20
    for n, chat in enumerate(chats):  # each prompt holds every earlier turn, in order
        user_turns = [m["content"] for m in chat["messages"] if m["role"] == "user"]
        assert user_turns == [f"ordered message {i}" for i in range(n + 1)]
        assert len(chat["messages"]) == 1 + 2 * n + 1


# --- helpers ------------------------------------------------------------------------------------


def envelope(words: str = "what time is it?", user: str = SENDER) -> Envelope:
    message_id = f"wamid.{uuid.uuid4().hex}"
    return Envelope(message_id, user, user, "106540352242922", "text", int(time.time()), words)


# --- failing neighbours -----------------------------------------------------------------------


def test_model_429_three_times_then_success_gives_one_reply(
    clean: None, responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    model.fail("/chat/completions", 429, {"error": {"message": "slow down", "type": "rate_limit"}}, times=3)
    item = envelope()
    assert deliver(responder, item) == 500  # the model's 3 attempts all throttled: redeliver
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
