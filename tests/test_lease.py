"""A claim's short, renewed lease: a crashed attempt's message is answered in seconds, a slow but
living attempt is never taken over.

The first test runs on the local stack as make dev wires it: an ordered push subscription of
deploy.sh's shape on the Pub/Sub emulator, the production lease (20 s, renewed every 5 s), and a
responder SIGKILLed while the model thinks; Pub/Sub's retry then reaches a live instance (as Cloud
Run routes it to a new one).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.cloud import firestore, pubsub_v1

from common.bus.envelope import Envelope
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from local.topics import DeadLetters, wire_push
from tests.conftest import PROJECT, stand_in_env
from tests.support.delivery import deliver, doomed_responder, redeliver_until_answered
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.wait import wait_for

SENDER = "15550009999"
TOPIC = "lease-text"
THINKING = 6.0  # seconds the model thinks before the kill: one renewal is made meanwhile


@pytest.fixture(scope="module")
def env(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    return stand_in_env(emulators, graph, model)  # the production lease and attempt deadline


@pytest.fixture(scope="module")
def responder(env: dict[str, str]) -> Iterator[FunctionProcess]:
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture
def doomed(env: dict[str, str]) -> Iterator[FunctionProcess]:
    with doomed_responder(env) as function:
        yield function


def envelope(words: str = "what time is it?") -> Envelope:
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", SENDER, SENDER, "106540352242922", "text", int(time.time()), words
    )


def claim_of(db: firestore.Client, item: Envelope) -> dict[str, Any]:
    return db.collection("claims").document(doc_id(item.message_id)).get().to_dict() or {}


def is_chat(request: Any) -> bool:
    return request.path.endswith("/chat/completions")


def test_a_responder_killed_mid_model_call_is_answered_within_30_s_of_the_kill_exactly_once(
    db: firestore.Client,
    emulators: emu.Emulators,
    responder: FunctionProcess,
    doomed: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
) -> None:
    emu.wipe_pubsub(emulators.pubsub, PROJECT)
    dead_letters = DeadLetters("lease-dead-letter", responder.url)
    wire_push(emulators.pubsub.address, PROJECT, {TOPIC: doomed.url}, 120, dead_letters)
    with emu.pubsub_host(emulators.pubsub.address):
        subscriber = pubsub_v1.SubscriberClient()
        publisher = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        )
    killed: list[float] = []

    def crash() -> None:  # the model has been thinking a while; the instance dies
        time.sleep(THINKING)
        os.killpg(doomed.process.pid, signal.SIGKILL)
        killed.append(time.perf_counter())
        subscription = subscriber.subscription_path(PROJECT, f"{TOPIC}-push")
        subscriber.modify_push_config(
            request={"subscription": subscription, "push_config": {"push_endpoint": responder.url}}
        )

    model.on(is_chat, crash)
    item = envelope()
    try:
        publisher.publish(
            publisher.topic_path(PROJECT, TOPIC), item.to_bytes(), ordering_key=item.user, **item.attributes
        ).result(timeout=30)
        assert wait_for(lambda: graph.sent(), timeout=60)
        answered = next(r.at for r in graph.requests if FakeGraph.is_text_send(r) and r.status < 300)
        assert answered - killed[0] < 30  # a lease (20 s) and Pub/Sub's retry, not 180 s
        time.sleep(3)  # any second reply would come by now
    finally:
        subscriber.close()
        publisher.transport.close()
    [reply] = [s["text"]["body"] for s in graph.sent()]
    assert reply.startswith("echo: what time is it?")  # the model's answer, not an apology
    assert claim_of(db, item)["state"] == "done"
    assert len(model.chats()) == 2  # the dead attempt's question, and the takeover's
    assert "taking over an abandoned claim" in responder.log_text()


SLOW = {"ATTEMPT_TIMEOUT_SECONDS": "30", "CLAIM_LEASE_SECONDS": "4", "CLAIM_LEASE_MARGIN_SECONDS": "1"}


def test_a_living_attempt_slower_than_the_lease_is_never_taken_over(
    db: firestore.Client, emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI
) -> None:
    """The model thinks 10 s, more than twice the 4 s lease: the heartbeat keeps the claim, and
    another instance, delivered the same message again and again meanwhile, never takes it."""
    env = stand_in_env(emulators, graph, model, **SLOW)
    first, second = serve("responder", env), serve("responder", env)
    try:
        model.delay = 10
        item = envelope()
        with ThreadPoolExecutor(1) as pool:
            working = pool.submit(deliver, first, item)
            assert wait_for(lambda: len(model.chats()) == 1)
            codes, leases = [], set()
            while not working.done():
                leases.add(claim_of(db, item).get("leaseUntil"))
                codes.append(deliver(second, item))
            assert working.result() == 200
        assert len(leases) >= 3  # renewed while it worked (about once a second: CLAIM_LEASE_SECONDS / 4)
        # busy: the lease was renewed every time it looked; the last look may find it done
        assert codes and set(codes[:-1]) <= {500} and codes[-1] in (200, 500)
        assert redeliver_until_answered(second, item) == [200]  # done: acknowledged
    finally:
        first.stop()
        second.stop()
    assert len(graph.sent()) == 1
    assert len(model.chats()) == 1
    assert "taking over" not in second.log_text()
    assert claim_of(db, item)["state"] == "done"
