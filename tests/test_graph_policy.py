"""Meta's Graph error codes, table-driven, through the running transcriber and responder.

The loopback Graph API answers each code of the policy table in docs/architecture.md; the functions
must retry (500: Pub/Sub redelivers) or acknowledge (200) exactly as the table says. Token and
permission codes are an outage in both: retried, with one ERROR line with `alert="graph_auth"` an
alert can match, never a failure envelope or an apology. A Graph API that stalls past
GRAPH_TIMEOUT_SECONDS counts as a timeout (retried). A media url that names another host or plain
http never gets the token, and the user still hears the voice-failure reply.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.bus.envelope import Envelope, MediaRef
from common.meta.graph import classify
from common.responder.texts import DEFAULTS
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import PROJECT, TOPIC_TEXT, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI, graph_error
from tests.support.pubsub import Topics

OGG = (Path(__file__).resolve().parent / "audio" / "en_weather.ogg").read_bytes()
BUSINESS = "106540352242922"
USER = "15550002222"
GRAPH_TIMEOUT = 1  # seconds: GRAPH_TIMEOUT_SECONDS of both functions here; stalls last 3 s

RETRIABLE_CODES = [1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131048, 131056]
AUTH_CODES = [0, 10, 190, 200, 250, 299]
FINAL_CODES = [100, 131008, 131009, 131021, 131026, 131047, 131051, 131052, 131053, 368]
# (HTTP status, error code or None): how Meta answers each.
RETRIED = [(400, c) for c in RETRIABLE_CODES] + [(429, 4), (429, None), (500, None), (503, None)]
AUTH = [(401, 190), (403, 10), (400, 0), (403, 200), (403, 250), (403, 299)]
ACKNOWLEDGED = [(400, c) for c in FINAL_CODES] + [(404, None), (400, None)]
_ids = itertools.count(2 * 10**15)


def label(row: tuple[int, int | None]) -> str:
    return f"http{row[0]}-code{row[1]}"


def body(status: int, code: int | None) -> dict[str, Any]:
    return graph_error(code, f"test {code}") if code is not None else {"error": {"message": f"HTTP {status}"}}


def alerts(function: FunctionProcess, code: int) -> list[dict[str, Any]]:
    """The function's ERROR log lines an alert on `alert="graph_auth"` would match for `code`."""
    lines = []
    for line in function.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and record.get("severity") == "ERROR"
            and record.get("alert") == "graph_auth"
            and record.get("code") == code
        ):
            lines.append(record)
    return lines


@pytest.fixture(scope="module")
def transcriber(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    env = stand_in_env(
        emulators, graph, model, TRANSCRIBE_BACKEND="openai", GRAPH_TIMEOUT_SECONDS=str(GRAPH_TIMEOUT)
    )
    function = serve("transcriber", env)
    yield function
    function.stop()


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    env = stand_in_env(
        emulators, graph, model, OPENAI_MODEL="test-model", GRAPH_TIMEOUT_SECONDS=str(GRAPH_TIMEOUT)
    )
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture(autouse=True)
def _fresh(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> None:
    emu.wipe_firestore(emulators.firestore, PROJECT)
    graph.reset()
    model.reset()


def voice_note(graph: FakeGraph) -> Envelope:
    media_id = str(next(_ids))
    graph.add_media(media_id, OGG, "audio/ogg; codecs=opus")
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", USER, USER, BUSINESS, "audio", int(time.time()), media=MediaRef(media_id)
    )


def text() -> Envelope:
    return Envelope(f"wamid.{uuid.uuid4().hex}", USER, USER, BUSINESS, "text", int(time.time()), "hello")


def published(topics: Topics) -> Envelope:
    [received] = topics.pull(TOPIC_TEXT, expect=1)
    return Envelope.from_bytes(received.data)


def sends(graph: FakeGraph) -> list[Any]:
    """Every send attempt (accepted or not), read receipts left out."""
    return [r for r in list(graph.requests) if FakeGraph.is_text_send(r)]


# --- the table itself, as the client reads it ------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "retriable", "auth"),
    [(r, True, False) for r in RETRIED]
    + [(r, False, True) for r in AUTH]
    + [(r, False, False) for r in ACKNOWLEDGED],
    ids=lambda value: label(value) if isinstance(value, tuple) else str(value),
)
def test_each_code_is_classified_as_the_policy_table_says(
    row: tuple[int, int | None], retriable: bool, auth: bool
) -> None:
    error = classify(row[0], body(*row))
    assert (error.retriable, error.auth, error.code) == (retriable, auth, row[1])


# --- the transcriber: media metadata answered with each code ---------------------------------------


@pytest.mark.parametrize("row", RETRIED, ids=label)
def test_transcriber_retries_what_the_table_retries(
    transcriber: FunctionProcess, graph: FakeGraph, topics: Topics, row: tuple[int, int | None]
) -> None:
    note = voice_note(graph)
    graph.fail(f"/{graph.version}/{note.media.id}", row[0], body(*row))  # type: ignore[union-attr]
    assert deliver(transcriber, note) == 500
    assert topics.nothing_on(TOPIC_TEXT)
    assert deliver(transcriber, note) == 200  # the redelivery gets the media
    assert published(topics).text == "a transcript from the fake"


@pytest.mark.parametrize("row", ACKNOWLEDGED, ids=label)
def test_transcriber_answers_media_unavailable_for_what_a_retry_cannot_fix(
    transcriber: FunctionProcess, graph: FakeGraph, topics: Topics, row: tuple[int, int | None]
) -> None:
    note = voice_note(graph)
    graph.fail(f"/{graph.version}/{note.media.id}", row[0], body(*row))  # type: ignore[union-attr]
    assert deliver(transcriber, note) == 200
    assert published(topics).transcription_error == "media_unavailable"
    assert graph.downloads() == []


@pytest.mark.parametrize("row", AUTH, ids=label)
def test_transcriber_raises_on_token_or_permission_errors_with_one_alert_line(
    transcriber: FunctionProcess, graph: FakeGraph, topics: Topics, row: tuple[int, int | None]
) -> None:
    """An outage, not a bad note: no failure envelope (no apology), redelivered until it is fixed."""
    before = len(alerts(transcriber, row[1]))  # type: ignore[arg-type]
    note = voice_note(graph)
    graph.fail(f"/{graph.version}/{note.media.id}", row[0], body(*row))  # type: ignore[union-attr]
    assert deliver(transcriber, note) == 500
    assert len(alerts(transcriber, row[1])) == before + 1  # type: ignore[arg-type]
    assert topics.nothing_on(TOPIC_TEXT)
    assert deliver(transcriber, note) == 200  # the token works again
    assert published(topics).transcript is True


@pytest.mark.parametrize("where", ["info", "download"])
def test_transcriber_retries_a_graph_api_that_stalls_past_its_timeout(
    transcriber: FunctionProcess, graph: FakeGraph, topics: Topics, where: str
) -> None:
    note = voice_note(graph)
    path = f"/{graph.version}/{note.media.id}" if where == "info" else f"/download/{note.media.id}"  # type: ignore[union-attr]
    graph.fail(path, 200, OGG if where == "download" else {"url": "late"}, delay=3 * GRAPH_TIMEOUT)
    assert deliver(transcriber, note) == 500
    assert topics.nothing_on(TOPIC_TEXT)
    assert deliver(transcriber, note) == 200
    assert published(topics).transcript is True


# --- the responder: the reply's send answered with each code ----------------------------------------


@pytest.mark.parametrize("row", RETRIED, ids=label)
def test_responder_retries_what_the_table_retries(
    responder: FunctionProcess, graph: FakeGraph, row: tuple[int, int | None]
) -> None:
    graph.fail("/messages", 200, {"success": True})  # the read receipt passes
    graph.fail("/messages", row[0], body(*row))
    envelope = text()
    assert deliver(responder, envelope) == 500
    assert deliver(responder, envelope) == 200
    assert len(graph.sent()) == 1


@pytest.mark.parametrize("row", ACKNOWLEDGED, ids=label)
def test_responder_acknowledges_what_a_retry_cannot_fix(
    responder: FunctionProcess, graph: FakeGraph, row: tuple[int, int | None]
) -> None:
    graph.fail("/messages", 200, {"success": True})
    graph.fail("/messages", row[0], body(*row))
    envelope = text()
    assert deliver(responder, envelope) == 200
    assert deliver(responder, envelope) == 200  # done: the redelivery sends nothing
    assert len(sends(graph)) == 1
    assert graph.sent() == []


@pytest.mark.parametrize("row", AUTH, ids=label)
def test_responder_raises_on_token_or_permission_errors_with_one_alert_line(
    responder: FunctionProcess, graph: FakeGraph, row: tuple[int, int | None]
) -> None:
    """Never acknowledged: the message waits (and finally reaches the dead-letter topic)."""
    before = len(alerts(responder, row[1]))  # type: ignore[arg-type]
    graph.fail("/messages", 200, {"success": True})
    graph.fail("/messages", row[0], body(*row))
    envelope = text()
    assert deliver(responder, envelope) == 500
    assert len(alerts(responder, row[1])) == before + 1  # type: ignore[arg-type]
    assert graph.sent() == []
    # The token works again: the redelivery is answered once, or still waits for its claim; it is
    # never acknowledged with nothing sent.
    assert (deliver(responder, envelope), len(graph.sent())) in ((200, 1), (500, 0))


def test_responder_retries_a_send_that_stalls_past_its_timeout(
    responder: FunctionProcess, graph: FakeGraph
) -> None:
    graph.fail("/messages", 200, {"success": True})
    graph.fail("/messages", 503, {"error": {"message": "late"}}, delay=3 * GRAPH_TIMEOUT)
    envelope = text()
    assert deliver(responder, envelope) == 500
    assert deliver(responder, envelope) == 200
    assert [r.status for r in sends(graph)] in ([503, 200], [0, 200])  # the stalled one may still hang


# --- where the token may go ---------------------------------------------------------------------------


@pytest.fixture
def other_loopback_host(graph: FakeGraph) -> Iterator[socket.socket]:
    """A listener on 127.0.0.2 at the Graph stand-in's own port: same port, another host."""
    port = int(graph.url.rsplit(":", 1)[1])
    with socket.create_server(("127.0.0.2", port)) as server:
        server.setblocking(False)
        yield server


@pytest.mark.parametrize("where", ["another-port", "another-host", "https-meta-host"])
def test_a_media_url_off_the_configured_host_never_gets_the_token(
    transcriber: FunctionProcess,
    responder: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
    topics: Topics,
    other_loopback_host: socket.socket,
    where: str,
) -> None:
    foreign = FakeGraph(token=graph.token)  # another port on 127.0.0.1: it would serve the download
    try:
        note = voice_note(graph)
        media_id = note.media.id  # type: ignore[union-attr]
        foreign.add_media(media_id, OGG, "audio/ogg")
        port = int(graph.url.rsplit(":", 1)[1])
        url = {
            "another-port": f"{foreign.url}/download/{media_id}",
            "another-host": f"http://127.0.0.2:{port}/download/{media_id}",
            "https-meta-host": f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}",
        }[where]
        graph.point_media(media_id, url)
        assert deliver(transcriber, note) == 200
        failure = published(topics)
        assert failure.transcription_error == "media_unavailable"
        assert foreign.requests == []
        with pytest.raises(BlockingIOError):
            other_loopback_host.accept()  # nobody connected to 127.0.0.2
        assert [r.path for r in graph.requests] == [f"/{graph.version}/{media_id}"]  # metadata only
        assert model.transcriptions() == []
        refused = [
            line for line in transcriber.log_text().splitlines() if "media download url refused" in line
        ]
        assert refused and json.loads(refused[-1])["host"] == url.split("/")[2].split(":")[0]
        assert deliver(responder, failure) == 200  # the user hears why
        assert [s["text"]["body"] for s in graph.sent()] == [DEFAULTS["VOICE_FAILED_TEXT"]]
    finally:
        foreign.close()
