"""How envelopes reach Pub/Sub: one request per topic and user, in order, tried again while it can."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import requests

from common.bus.envelope import Envelope
from common.bus.publisher import MAX_MESSAGES, by_request
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import APP_SECRET, PROJECT, TOPIC_AUDIO, TOPIC_TEXT, function_env
from tests.support.grpc_relay import GrpcRelay
from tests.support.meta import fixture, signed_headers
from tests.support.pubsub import Topics
from tests.support.relay import Relay
from tests.support.wait import poll

ALICE, BOB = "16505550001", "16505550002"
REPO = Path(__file__).resolve().parent.parent


def envelope(message_id: str, user: str) -> Envelope:
    return Envelope(message_id=message_id, user=user, to=user, phone_number_id="1", type="text", timestamp=1)


def one_post(messages: list[tuple[str, str, str]]) -> bytes:
    """One notification holding (id, user, type) messages, in this order, sent now."""
    body = fixture("messages/text")
    value = body["entry"][0]["changes"][0]["value"]
    now = str(int(time.time()))
    value["contacts"] = [{"profile": {"name": "A"}, "wa_id": user} for user in (ALICE, BOB)]
    value["messages"] = [_message(*message, now) for message in messages]
    return json.dumps(body).encode()


def _message(message_id: str, user: str, kind: str, now: str) -> dict[str, Any]:
    content = {"audio": {"id": "1234", "mime_type": "audio/ogg; codecs=opus", "voice": True}}
    return {
        "from": user,
        "id": message_id,
        "timestamp": now,
        "type": kind,
        **(content if kind == "audio" else {"text": {"body": "hi"}}),
    }


def test_one_request_per_topic_and_user_each_in_the_order_given() -> None:
    """Google's Pub/Sub refuses a publish that mixes ordering keys; the emulator would not tell."""
    items = [
        ("text", envelope("a1", ALICE)),
        ("text", envelope("b1", BOB)),
        ("audio", envelope("a2", ALICE)),
        ("text", envelope("a3", ALICE)),
        ("text", envelope("b2", BOB)),
    ]
    groups = by_request(items, "p")
    assert {group: [e.message_id for e in envelopes] for group, envelopes in groups.items()} == {
        ("projects/p/topics/text", ALICE, 0): ["a1", "a3"],
        ("projects/p/topics/text", BOB, 0): ["b1", "b2"],
        ("projects/p/topics/audio", ALICE, 0): ["a2"],
    }


def test_a_user_with_more_messages_than_one_request_takes_gets_parts_in_order() -> None:
    items = [("text", envelope(f"a{i}", ALICE)) for i in range(MAX_MESSAGES * 2 + 1)]
    parts = by_request(items, "p")
    assert [len(part) for part in parts.values()] == [MAX_MESSAGES, MAX_MESSAGES, 1]
    assert [e.message_id for part in parts.values() for e in part] == [e.message_id for _, e in items]


def test_each_users_messages_of_one_post_are_published_in_their_order(
    webhook: FunctionProcess, topics: Topics
) -> None:
    sent = [(f"wamid.order{i:02d}", ALICE if i % 3 else BOB, "text") for i in range(30)]
    sent.insert(7, ("wamid.voice", ALICE, "audio"))
    body = one_post(sent)
    answer = requests.post(webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30)
    assert answer.json() == {"status": "ok", "published": 31}
    received = topics.pull(TOPIC_AUDIO, expect=31)  # the voice note among them, in its place
    for user in (ALICE, BOB):
        expected = [i for i, u, _ in sent if u == user]
        got = [r.attributes["message_id"] for r in received if r.ordering_key == user]
        assert got == expected
    assert topics.nothing_on(TOPIC_TEXT, wait=0)


def test_a_pubsub_back_within_the_publish_timeout_loses_no_message(
    emulators: emu.Emulators, topics: Topics
) -> None:
    """Pub/Sub cuts the first connections; the webhook tries again and answers 200, published once."""
    relay = Relay(emulators.pubsub.address)
    env = function_env(emulators, PUBSUB_EMULATOR_HOST=relay.address, PUBLISH_TIMEOUT_SECONDS="20")
    function = serve("webhook", env)
    answers: list[requests.Response] = []
    try:
        body = one_post([("wamid.comeback", ALICE, "text")])
        headers = signed_headers(body, APP_SECRET)
        post = threading.Thread(
            target=lambda: answers.append(requests.post(function.url, data=body, headers=headers, timeout=60))
        )
        post.start()
        poll(lambda: relay.cut >= 2, timeout=20, what="the webhook tried Pub/Sub and was cut off twice")
        assert not answers  # still trying, not answered 503
        relay.restore()
        post.join(timeout=60)
        assert [a.status_code for a in answers] == [200]
        assert "publish failed" not in function.log_text()
    finally:
        function.stop()
        relay.close()
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    assert received.attributes["message_id"] == "wamid.comeback"


def test_more_messages_of_one_user_than_pubsub_takes_in_a_request_are_all_published_in_order(
    webhook: FunctionProcess, topics: Topics
) -> None:
    """Pub/Sub refuses over 1,000 messages a request (the emulator too): parts, one after the other."""
    sent = [(f"wamid.many{i:04d}", ALICE, "text") for i in range(MAX_MESSAGES + 5)]
    body = one_post(sent)
    answer = requests.post(webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=60)
    assert answer.json() == {"status": "ok", "published": len(sent)}
    received = topics.pull(TOPIC_AUDIO, expect=len(sent), timeout=60)
    assert [r.attributes["message_id"] for r in received] == [message_id for message_id, _, _ in sent]


def test_each_publish_carries_the_headers_google_routes_and_counts_it_by(
    emulators: emu.Emulators, topics: Topics
) -> None:
    """The emulator ignores headers: a publish without the routing header or the client's own
    (`x-goog-api-client`) would pass here and first fail in production, so a relay records them."""
    relay = GrpcRelay(emulators.pubsub.address)
    function = serve("webhook", function_env(emulators, PUBSUB_EMULATOR_HOST=relay.address))
    try:
        body = one_post([("wamid.headers", ALICE, "text")])
        answer = requests.post(function.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30)
        assert answer.json() == {"status": "ok", "published": 1}
    finally:
        function.stop()
        relay.close()
    [(method, headers)] = relay.calls
    assert method == "/google.pubsub.v1.Publisher/Publish"
    # every message enters by the transcriber's ordered topic (order per user across types)
    assert headers["x-goog-request-params"] == f"topic=projects/{PROJECT}/topics/{TOPIC_AUDIO}"
    assert re.search(r"\bgax/\d.* gccl/\d", headers["x-goog-api-client"])  # api-core, the pubsub client
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    assert received.attributes["message_id"] == "wamid.headers"


def test_no_rpc_is_built_by_hand_on_a_grpc_channel() -> None:
    """Our code calls the clients' public methods, which bring their retries, headers and logging."""
    sources = [*(REPO / "common").rglob("*.py"), *(REPO / "functions").rglob("*.py")]
    by_hand = re.compile(r"\.(unary_unary|unary_stream|stream_unary|stream_stream)\(|grpc_channel")
    found = [str(p.relative_to(REPO)) for p in sources if by_hand.search(p.read_text())]
    assert not found
