"""A user's messages reach the model in the order they were sent, whatever their types.

The whole pipeline runs for real, wired as deploy.sh and `make dev` wire it (the transcriber's
topic pushes to the transcriber, the text topic to the responder, both ordered by user): webhook →
transcriber (openai backend, real audio) → responder, with a slow transcription so that a text sent
after a voice note would overtake it if it could.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from common.bus.envelope import Envelope, MediaRef
from common.responder.texts import DEFAULTS
from local import emulators as emu
from local.functions import FunctionProcess, serve
from local.topics import DeadLetters, subscriptions, wire_push
from tests.conftest import APP_SECRET, PROJECT, TOPIC_AUDIO, TOPIC_TEXT, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.meta import fixture, signed_headers
from tests.support.pubsub import Topics
from tests.support.wait import wait_for

AUDIO = Path(__file__).resolve().parent / "audio"
USER = "15550004444"
TRANSCRIPT = "what is the weather like in london tomorrow morning"
SLOW = 2.5  # seconds the transcription takes: ample time for a text to overtake it, were it able to
TIMING = {"ATTEMPT_TIMEOUT_SECONDS": "8", "CLAIM_LEASE_SECONDS": "9", "CLAIM_LEASE_MARGIN_SECONDS": "1"}


@pytest.fixture(scope="module")
def env(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    return stand_in_env(
        emulators, graph, model, TRANSCRIBE_BACKEND="openai", OPENAI_MAX_RETRIES="0", **TIMING
    )


@pytest.fixture(scope="module")
def functions(env: dict[str, str]) -> Iterator[dict[str, FunctionProcess]]:
    started = {name: serve(name, env) for name in ("webhook", "transcriber", "responder")}
    yield started
    for function in started.values():
        function.stop()


@pytest.fixture
def pipeline(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, functions: dict[str, FunctionProcess]
) -> dict[str, FunctionProcess]:
    """Fresh emulators and stand-ins, and the deployed topology's two ordered push subscriptions."""
    emulators.wipe(PROJECT)
    graph.reset()
    model.reset()
    routes = {TOPIC_AUDIO: functions["transcriber"].url, TOPIC_TEXT: functions["responder"].url}
    wire_push(emulators.pubsub.address, PROJECT, routes)
    return functions


def message(kind: str, media_id: str = "", words: str = "") -> dict[str, Any]:
    """One message of USER's, as Meta sends it (ids fresh; the corpus's timestamp is kept)."""
    body = fixture(f"messages/{kind}")
    item = body["entry"][0]["changes"][0]["value"]["messages"][0]
    item.update({"id": f"wamid.{uuid.uuid4().hex}", "from": USER})
    if kind == "audio_voice":
        item["audio"]["id"] = media_id
    else:
        item["text"] = {"body": words}
    return item


def post(webhook: FunctionProcess, *items: dict[str, Any]) -> None:
    body = fixture("messages/text")
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = USER
    value["messages"] = list(items)
    raw = json.dumps(body).encode()
    answer = requests.post(webhook.url, data=raw, headers=signed_headers(raw, APP_SECRET), timeout=30)
    assert answer.status_code == 200


def voice_note(graph: FakeGraph) -> dict[str, Any]:
    media_id = str(uuid.uuid4().int % 10**15)
    graph.add_media(media_id, (AUDIO / "en_weather.ogg").read_bytes(), "audio/ogg; codecs=opus")
    return message("audio_voice", media_id)


def user_turns(chat: dict[str, Any]) -> list[str]:
    return [m["content"] for m in chat["messages"] if m["role"] == "user"]


@pytest.mark.parametrize("posts", ["one POST", "two POSTs"])
def test_a_voice_note_then_a_text_are_answered_in_that_order_with_the_transcript_before_the_text(
    pipeline: dict[str, FunctionProcess], graph: FakeGraph, model: FakeOpenAI, posts: str
) -> None:
    model.fail("/audio/transcriptions", 200, {"text": TRANSCRIPT}, delay=SLOW)  # a slow success
    note, text = voice_note(graph), message("text", words="what do you think?")
    if posts == "one POST":
        post(pipeline["webhook"], note, text)
    else:
        post(pipeline["webhook"], note)
        post(pipeline["webhook"], text)
    assert wait_for(lambda: len(graph.sent()) >= 2, timeout=60)
    assert [s["context"]["message_id"] for s in graph.sent()] == [note["id"], text["id"]]
    first, second = model.chats()
    assert TRANSCRIPT in user_turns(first)[-1]
    *earlier, last = user_turns(second)  # the second prompt holds the transcript of the first
    assert last == "what do you think?"
    assert len(earlier) == 1 and TRANSCRIPT in earlier[0]


def test_a_text_waits_behind_a_voice_note_whose_transcription_is_retried(
    pipeline: dict[str, FunctionProcess], graph: FakeGraph, model: FakeOpenAI
) -> None:
    """A nacked voice note holds the user's later messages until it is through."""
    model.fail("/audio/transcriptions", 503, {"error": {"message": "busy"}}, times=1, delay=SLOW)
    model.transcript = TRANSCRIPT
    note, text = voice_note(graph), message("text", words="and what about friday?")
    post(pipeline["webhook"], note)
    post(pipeline["webhook"], text)
    assert wait_for(lambda: len(graph.sent()) >= 2, timeout=90)
    assert len(model.transcriptions()) == 2  # the first attempt failed, the redelivery went through
    assert [s["context"]["message_id"] for s in graph.sent()] == [note["id"], text["id"]]
    assert TRANSCRIPT in user_turns(model.chats()[1])[0]


def mapped_files(function: FunctionProcess) -> str:
    """Every file mapped by the function's processes (gunicorn serves in a forked worker)."""
    pids, maps = [function.process.pid], []
    while pids:
        pid = pids.pop()
        with contextlib.suppress(OSError):
            maps.append(Path(f"/proc/{pid}/maps").read_text())
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
    return "".join(maps)


def test_what_is_not_a_voice_note_is_handed_on_unchanged_with_no_graph_model_or_speech_library(
    emulators: emu.Emulators, env: dict[str, str], graph: FakeGraph, model: FakeOpenAI, topics: Topics
) -> None:
    """A text, an image, a stranger's stripped note and an echo: one publish each, nothing else (the
    sphinx backend, whose libraries take seconds to load, is not even built)."""
    graph.reset()
    model.reset()
    base = Envelope(f"wamid.{uuid.uuid4().hex}", USER, USER, "106540352242922", "text", 1, "hello")
    items = [
        base,
        replace(base, message_id="wamid.image", type="image", text=None, media=MediaRef("1003383421387256")),
        replace(base, message_id="wamid.stranger", type="audio", text=None, refused="not_allowed"),
        replace(base, message_id="wamid.echo", type="echo", text=None, refused="echo"),
    ]
    function = serve("transcriber", {**env, "TRANSCRIBE_BACKEND": "sphinx"})
    try:
        assert [deliver(function, item) for item in items] == [200] * 4
        handed_on = [Envelope.from_bytes(r.data) for r in topics.pull(TOPIC_TEXT, expect=4)]
        assert handed_on == items
        assert list(graph.requests) == [] and list(model.requests) == []
        assert "pocketsphinx" not in mapped_files(function)
    finally:
        function.stop()


def wire_unordered_with_dead_letters(address: str, routes: dict[str, str], dead: DeadLetters) -> None:
    """make dev's subscriptions (local/topics.py), but unordered: the emulator never dead-letters a
    message of an ordered push subscription (it stops pushing it after the last attempt; Google's
    Pub/Sub dead-letters it), and the dead-letter route is what this test is about."""
    from google.cloud import pubsub_v1

    with emu.pubsub_host(address):
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        for topic in (*routes, dead.topic):
            publisher.create_topic(request={"name": publisher.topic_path(PROJECT, topic)})
        for request in subscriptions(PROJECT, routes, 60, dead):
            subscriber.create_subscription(request={**request, "enable_message_ordering": False})
    finally:
        subscriber.close()
        publisher.transport.close()


def test_a_text_that_dead_letters_at_the_transcriber_still_gets_the_apology(
    emulators: emu.Emulators, env: dict[str, str], graph: FakeGraph, model: FakeOpenAI
) -> None:
    """A transcriber that cannot hand anything on (its text topic is missing): after every attempt,
    the dead-letter topic takes the text to the responder, which apologises once."""
    emulators.wipe(PROJECT)
    graph.reset()
    model.reset()
    broken = serve("transcriber", {**env, "TOPIC_TEXT": "no-such-topic"})
    webhook, responder = serve("webhook", env), serve("responder", env)
    try:
        dead = DeadLetters("test-dead-letter", responder.url, max_delivery_attempts=5, retry_seconds=(1, 2))
        routes = {TOPIC_AUDIO: broken.url, TOPIC_TEXT: responder.url}
        wire_unordered_with_dead_letters(emulators.pubsub.address, routes, dead)
        text = message("text", words="is anyone there?")
        post(webhook, text)
        assert wait_for(lambda: len(graph.sent()) >= 1, timeout=90)
        assert broken.log_text().count("will be redelivered") == 5  # every attempt, then the dead letter
        [apology] = graph.sent()
        assert apology["context"]["message_id"] == text["id"]
        assert apology["text"]["body"] == DEFAULTS["MODEL_ERROR_TEXT"]
        assert model.chats() == []
    finally:
        for function in (broken, webhook, responder):
            function.stop()
