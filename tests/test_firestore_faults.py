"""Firestore failing under the real responder, through a relay in front of the emulator: refused
for a moment right after a part went out, or an answer lost after a write landed. Each part of
the reply still reaches the Graph stand-in exactly once, and none is cut off."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud import firestore

from common.bus.envelope import Envelope
from common.meta.chunks import split_text
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import stand_in_env
from tests.support.delivery import deliver, redeliver_until_answered
from tests.support.fakes import FakeGraph, FakeOpenAI, Recorded
from tests.support.relay import Relay

SENDER = "15550005555"
# Room for the client's retries within an attempt; a lease that runs out within a test.
TIMING = {"ATTEMPT_TIMEOUT_SECONDS": "8", "CLAIM_LEASE_SECONDS": "10", "CLAIM_LEASE_MARGIN_SECONDS": "2"}
STORY = " ".join(f"Sentence {i} tells a little more of the story." for i in range(400))[:9000]
PARTS = split_text(STORY)


@pytest.fixture(scope="module")
def relay(emulators: emu.Emulators) -> Iterator[Relay]:
    relay = Relay(emulators.firestore.address, up=True)
    yield relay
    relay.close()


@pytest.fixture(scope="module")
def responder(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, relay: Relay
) -> Iterator[FunctionProcess]:
    """The responder's Firestore is the relay; the test's own client goes straight to the emulator."""
    env = stand_in_env(emulators, graph, model, **TIMING)
    function = serve("responder", {**env, "FIRESTORE_EMULATOR_HOST": relay.address})
    yield function
    function.stop()


@pytest.fixture
def story(db: firestore.Client, model: FakeOpenAI, relay: Relay) -> list[str]:
    """The model answers with a story of three parts."""
    assert len(PARTS) == 3
    relay.restore()
    model.answer = lambda messages: STORY
    return PARTS


def envelope(words: str = "tell me a long story") -> Envelope:
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", SENDER, SENDER, "106540352242922", "text", int(time.time()), words
    )


def bodies(graph: FakeGraph) -> list[str]:
    return [s["text"]["body"] for s in graph.sent()]


def claim_of(db: firestore.Client, item: Envelope) -> dict[str, Any]:
    return db.collection("claims").document(doc_id(item.message_id)).get().to_dict() or {}


def sends(body: str) -> Callable[[Recorded], bool]:
    """Matches the Graph request that sends this text."""
    return lambda r: FakeGraph.is_text_send(r) and r.json()["text"]["body"] == body


@pytest.mark.parametrize("write", ["progress", "done"])
def test_firestore_refusing_for_a_moment_after_a_part_went_out_sends_every_part_once(
    db: firestore.Client,
    responder: FunctionProcess,
    graph: FakeGraph,
    relay: Relay,
    story: list[str],
    write: str,
) -> None:
    """Meta has accepted the part; the write that records it (progress after the first part, done
    after the last) meets refused connections for 1.5 s."""
    accepted = story[0] if write == "progress" else story[-1]
    graph.on(sends(accepted), lambda: relay.refuse_for(1.5), after_answer=True)
    item = envelope()
    assert redeliver_until_answered(responder, item)[-1] == 200
    assert not graph.hooks  # the refusal happened
    assert bodies(graph) == story
    assert claim_of(db, item)["state"] == "done"
    assert deliver(responder, item) == 200  # a later redelivery sends nothing
    assert bodies(graph) == story


def test_a_progress_write_that_landed_but_whose_answer_was_lost_sends_the_whole_reply_once(
    db: firestore.Client,
    responder: FunctionProcess,
    graph: FakeGraph,
    relay: Relay,
    story: list[str],
) -> None:
    """The fenced write after the first part commits, its answer never arrives: the client's retry
    finds the claim changed, and the read-back shows our own token in it."""
    graph.on(sends(story[0]), relay.lose_answer, after_answer=True)
    offset = len(responder.log_text())
    item = envelope()
    assert deliver(responder, item) == 200
    assert bodies(graph) == story
    assert claim_of(db, item)["state"] == "done"
    assert relay.lost  # an answer was dropped
    assert "fenced write had landed" in responder.log_text()[offset:]


def test_a_claim_created_but_whose_answer_was_lost_is_still_ours(
    db: firestore.Client, responder: FunctionProcess, graph: FakeGraph, relay: Relay, story: list[str]
) -> None:
    """The create lands, its answer is lost, the retry is refused (ALREADY_EXISTS): the token in
    the claim is ours, so the first delivery answers instead of waiting out its own lease."""
    relay.lose_answer()
    offset = len(responder.log_text())
    item = envelope()
    assert deliver(responder, item) == 200
    assert relay.lost
    assert "claim had landed" in responder.log_text()[offset:]
    assert bodies(graph) == story
    assert claim_of(db, item)["state"] == "done"
