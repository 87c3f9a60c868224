"""Operator outages through the running transcriber and responder (issue 23, item 3).

A revoked OpenAI key (401), a key without access (403), a mistyped model (404, or 400
model_not_found), a spent quota (429 insufficient_quota) and the Graph API's token errors are
nobody's message's fault: every message is retried (500, so Pub/Sub redelivers it until the
dead-letter topic), each attempt writes one ERROR line whose `alert` names the cause, and no
apology (MODEL_ERROR_TEXT, VOICE_FAILED_TEXT) goes out while the outage lasts. Once it is fixed
the redelivery is answered as if nothing had happened.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.bus.envelope import Envelope, MediaRef
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import PROJECT, TOPIC_TEXT, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI, graph_error
from tests.support.pubsub import Topics

OGG = (Path(__file__).resolve().parent / "audio" / "en_weather.ogg").read_bytes()
BUSINESS = "106540352242922"
USER = "15550003333"
# (status, OpenAI error body, the alert it must raise), as OpenAI answers each outage.
OPENAI_OUTAGES = {
    "revoked-key-401": (401, {"message": "Incorrect API key", "code": "invalid_api_key"}, "openai_auth"),
    "no-access-403": (
        403,
        {"message": "Project lacks access", "type": "insufficient_permissions"},
        "openai_auth",
    ),
    "no-model-404": (
        404,
        {"message": "The model does not exist", "code": "model_not_found"},
        "openai_config",
    ),
    "no-model-400": (
        400,
        {"message": "The model does not exist", "code": "model_not_found"},
        "openai_config",
    ),
    "quota-429": (429, {"message": "Exceeded your quota", "type": "insufficient_quota"}, "openai_quota"),
}
_media_ids = itertools.count(3 * 10**15)


def errors(function: FunctionProcess) -> list[dict[str, Any]]:
    """The function's ERROR lines so far (what a log-based alert on severity=ERROR sees)."""
    lines = []
    for text in function.log_text().splitlines():
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("severity") == "ERROR":
            lines.append(record)
    return lines


def new_errors(function: FunctionProcess, before: int) -> list[dict[str, Any]]:
    return errors(function)[before:]


@pytest.fixture(scope="module")
def transcriber(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    function = serve("transcriber", stand_in_env(emulators, graph, model, TRANSCRIBE_BACKEND="openai"))
    yield function
    function.stop()


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    function = serve("responder", stand_in_env(emulators, graph, model, OPENAI_MODEL="test-model"))
    yield function
    function.stop()


@pytest.fixture(scope="module")
def voiced(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    env = stand_in_env(emulators, graph, model, OPENAI_MODEL="test-model", VOICE_REPLY="voice")
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture(autouse=True)
def _fresh(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> None:
    emu.wipe_firestore(emulators.firestore, PROJECT)
    graph.reset()
    model.reset()


def voice_note(graph: FakeGraph) -> Envelope:
    media_id = str(next(_media_ids))
    graph.add_media(media_id, OGG, "audio/ogg; codecs=opus")
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", USER, USER, BUSINESS, "audio", int(time.time()), media=MediaRef(media_id)
    )


def transcribed(words: str) -> Envelope:
    """A voice note as the transcriber hands it on to the responder."""
    media = MediaRef("1234567890", "audio/ogg; codecs=opus", voice=True)
    return Envelope(
        f"wamid.{uuid.uuid4().hex}",
        USER,
        USER,
        BUSINESS,
        "audio",
        int(time.time()),
        words,
        media=media,
        transcript=True,
    )


def text(words: str = "hello") -> Envelope:
    return Envelope(f"wamid.{uuid.uuid4().hex}", USER, USER, BUSINESS, "text", int(time.time()), words)


def assert_one_alert(lines: list[dict[str, Any]], alert: str, **fields: Any) -> dict[str, Any]:
    """One ERROR line for the attempt, and it is the alert (nothing else at ERROR)."""
    assert [line.get("alert") for line in lines] == [alert], lines
    for key, value in fields.items():
        assert lines[0].get(key) == value, (key, lines[0])
    return lines[0]


# --- the transcriber: a voice note waits out the outage, never becomes an apology ------------------


@pytest.mark.parametrize("case", ["revoked-key-401", "no-model-404", "no-access-403", "quota-429"])
def test_an_openai_outage_in_the_transcriber_is_retried_with_one_alert_and_no_apology(
    transcriber: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, topics: Topics, case: str
) -> None:
    status, error, alert = OPENAI_OUTAGES[case]
    note = voice_note(graph)
    model.fail("/audio/transcriptions", status, {"error": error}, times=100)
    for _ in range(2):  # every delivery while the outage lasts
        before = len(errors(transcriber))
        assert deliver(transcriber, note) == 500  # nacked: Pub/Sub redelivers
        line = assert_one_alert(new_errors(transcriber, before), alert, status=status)
        assert line["request_id"].startswith("req_fake")  # what OpenAI's support asks for
        assert topics.nothing_on(
            TOPIC_TEXT
        )  # no failure envelope: nothing for the responder to apologise for
    model.failures.clear()  # the operator fixed it
    assert deliver(transcriber, note) == 200
    [received] = topics.pull(TOPIC_TEXT, expect=1)
    assert Envelope.from_bytes(received.data).text == "a transcript from the fake"


@pytest.mark.parametrize(("status", "code"), [(401, 190), (403, 10), (403, 200)], ids=["190", "10", "200"])
def test_a_graph_token_error_in_the_transcriber_is_retried_with_one_alert_and_no_apology(
    transcriber: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, topics: Topics, status: int, code: int
) -> None:
    note = voice_note(graph)
    graph.fail(
        f"/{graph.version}/{note.media.id}", status, graph_error(code, "Invalid OAuth access token."), times=2
    )  # type: ignore[union-attr]
    for _ in range(2):
        before = len(errors(transcriber))
        assert deliver(transcriber, note) == 500
        assert_one_alert(new_errors(transcriber, before), "graph_auth", code=code)
        assert topics.nothing_on(TOPIC_TEXT)
    assert graph.downloads() == [] and model.transcriptions() == []
    assert deliver(transcriber, note) == 200  # the token works again
    [received] = topics.pull(TOPIC_TEXT, expect=1)
    assert Envelope.from_bytes(received.data).transcript is True


# --- the responder: the message waits, the user hears no apology ---------------------------------------


@pytest.mark.parametrize("case", list(OPENAI_OUTAGES))
def test_an_openai_outage_in_the_responder_is_retried_with_one_alert_and_no_apology(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, case: str
) -> None:
    status, error, alert = OPENAI_OUTAGES[case]
    model.fail("/chat/completions", status, {"error": error}, times=100)
    envelope = text("are you there?")
    for attempt in range(1, 3):
        before = len(errors(responder))
        assert deliver(responder, envelope) == 500
        assert_one_alert(new_errors(responder, before), alert, status=status, model="test-model")
        assert len(model.chats()) == attempt  # an outage is not retried within the attempt
        assert graph.sent() == []  # no MODEL_ERROR_TEXT while it lasts
    model.failures.clear()
    assert deliver(responder, envelope) == 200
    [sent] = graph.sent()
    assert sent["text"]["body"].startswith("echo: are you there?")


@pytest.mark.parametrize("case", ["revoked-key-401", "no-model-404"])
def test_a_speech_outage_holds_the_voice_reply_with_one_alert(
    voiced: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, case: str
) -> None:
    status, error, alert = OPENAI_OUTAGES[case]
    model.fail("/audio/speech", status, {"error": error}, times=100)
    envelope = transcribed("say something")
    before = len(errors(voiced))
    assert deliver(voiced, envelope) == 500
    assert_one_alert(new_errors(voiced, before), alert, status=status)
    assert graph.messages() == []  # neither a voice note nor a text in its place
    model.failures.clear()
    assert deliver(voiced, envelope) == 200
    assert [m["type"] for m in graph.messages()] == ["audio"]
    assert len(model.chats()) == 1  # the stored reply was spoken, the model not asked again
