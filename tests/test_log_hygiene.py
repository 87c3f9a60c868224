"""What the logs never hold, over one whole pipeline run of this module's own.

Its own webhook, transcriber and responder on the emulators, wired by ordered push subscriptions
as in `make dev`, get text, a voice note (real audio), an image, a status, a reaction, a
malformed batch, Graph errors (one retried, whose text quotes the number and the id), model
errors, a dead letter, undecodable events, a Firestore outage under the responder (refused
connections: the client's errors quote addresses) and a transcriber killed mid-note and replaced.
Then every process's log (the killed one's too) is searched for phone numbers, business-scoped
ids (and the hashes that name their documents), words, tokens and secrets, in clear or inside any
id-like token that decodes from base64. No process logs a traceback: its chained causes quote
what the sink never sees.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from common.bus.envelope import Envelope
from common.bus.events import DEAD_LETTER_ATTRIBUTE
from common.log import digest
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from local.topics import wire_push
from tests.conftest import (
    APP_SECRET,
    OPENAI_KEY,
    PROJECT,
    TOPIC_AUDIO,
    TOPIC_TEXT,
    VERIFY_TOKEN,
    stand_in_env,
)
from tests.support.delivery import deliver, redeliver_until_answered
from tests.support.fakes import FakeGraph, FakeOpenAI, graph_error
from tests.support.meta import fixture, signed_headers
from tests.support.relay import Relay
from tests.support.wait import wait_for

AUDIO = Path(__file__).resolve().parent / "audio"
PHONES = {
    "ana": "15550101234",
    "ben": "4915201234567",
    "dead": "447700900123",
    "cleo": "15550107788",
    "dan": "15550109901",
    "eve": "33612345678",
}
BSUID = "US.13491208655302741918"  # a business-scoped user id: no phone number in the webhook
PROFILE = "Ana Privata"
TRANSCRIPT = "remind me to call the clinic about my test results"
SPOKEN = {
    "text": "my card number is 4111 and my flat is 5B",
    "graph_error": "please send the invoice to my office",
    "model_error": "tell me the dosage for my medicine",
    "retried": "what was my balance yesterday",
    "dead": "cancel my subscription please",
    "caption": "photo of my passport",
    "graph_retry": "where is my parcel from the pharmacy",
    "outage": "book me a table for two tonight",
}


def wamid(user: str) -> str:
    """A message id shaped like Meta's: base64 of a record that holds the user's number."""
    digits = re.sub(r"\D", "", user)[:11]
    record = b"\x1c\x18" + bytes([len(digits)]) + digits.encode() + b"\x15\x02\x00\x12\x18\x14"
    return "wamid." + base64.b64encode(record + uuid.uuid4().hex[:20].upper().encode() + b"\x00").decode()


def message_body(name: str, user: str, **message: Any) -> tuple[str, bytes]:
    """A corpus payload re-addressed to `user` with a fresh wamid; returns (wamid, body)."""
    body = fixture(name)
    value = body["entry"][0]["changes"][0]["value"]
    item = value["messages"][0]
    for key in ("from", "from_user_id", "user_id"):
        item.pop(key, None)
    if user.startswith("US."):
        item["from_user_id"] = user
        value["contacts"] = [{"profile": {"name": PROFILE}, "user_id": user}]
    else:
        item["from"] = user
        value["contacts"] = [{"profile": {"name": PROFILE}, "wa_id": user}]
    item.update(id=wamid(user), **message)
    return item["id"], json.dumps(body).encode()


@dataclass
class Run:
    """What the run did: the logs of every process it started, and what must not be in them."""

    logs: dict[str, str] = field(default_factory=dict)  # "transcriber#1 (killed)" -> text
    ids: dict[str, str] = field(default_factory=dict)  # scenario -> wamid
    replies: list[str] = field(default_factory=list)
    nacked: int = 0  # deliveries of the message that met the Firestore outage, nacked

    def all_logs(self) -> str:
        return "\n".join(self.logs.values())


def post_signed(webhook: FunctionProcess, body: bytes) -> requests.Response:
    return requests.post(webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30)


def sent_to(graph: FakeGraph, user: str) -> list[str]:
    return [s["text"]["body"] for s in graph.sent() if user in (s.get("to"), s.get("recipient"))]


def kill(function: FunctionProcess) -> Callable[[], None]:
    return lambda: os.killpg(function.process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def run(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[Run]:
    emulators.wipe(PROJECT)
    graph.reset()
    model.reset()
    model.transcript = TRANSCRIPT
    env = stand_in_env(emulators, graph, model, OPENAI_MAX_RETRIES="0", TRANSCRIBE_BACKEND="openai")
    started: list[FunctionProcess] = []
    result = Run()
    firestore = Relay(emulators.firestore.address, up=True)  # the responder's, for an outage
    try:
        webhook, transcriber = (serve(name, env) for name in ("webhook", "transcriber"))
        # an attempt short enough that the outage below (retried by the Firestore client until
        # the attempt's deadline) nacks within a delivery's wait
        timing = {
            "ATTEMPT_TIMEOUT_SECONDS": "8",
            "CLAIM_LEASE_SECONDS": "11",
            "CLAIM_LEASE_MARGIN_SECONDS": "3",
        }
        responder = serve("responder", {**env, "FIRESTORE_EMULATOR_HOST": firestore.address, **timing})
        started += [webhook, transcriber, responder]
        wire_push(
            emulators.pubsub.address, PROJECT, {TOPIC_AUDIO: transcriber.url, TOPIC_TEXT: responder.url}
        )
        ana, ben, cleo, dead = PHONES["ana"], PHONES["ben"], PHONES["cleo"], PHONES["dead"]

        # the handshake and a text, answered
        params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "31337"}
        assert requests.get(webhook.url, params=params, timeout=10).text == "31337"
        result.ids["text"], body = message_body("messages/text", ana, text={"body": SPOKEN["text"]})
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: len(sent_to(graph, ana)) == 1, 60)

        # a voice note with real audio: webhook -> transcriber -> responder
        graph.add_media("1908647269898587", (AUDIO / "en_weather.ogg").read_bytes(), "audio/ogg; codecs=opus")
        result.ids["voice"], body = message_body("messages/audio_voice", ana)
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: len(sent_to(graph, ana)) == 2, 60)

        # an image with a caption from a business-scoped user; a reaction; a status; a malformed batch
        result.ids["image"], body = message_body(
            "messages/image", BSUID, image={"id": "1003383421387256", "caption": SPOKEN["caption"]}
        )
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: len(sent_to(graph, BSUID)) == 1, 60)
        _, body = message_body(
            "messages/reaction", ana, reaction={"message_id": result.ids["text"], "emoji": "\U0001f44d"}
        )
        assert post_signed(webhook, body).status_code == 200
        status = fixture("statuses/failed")
        item = status["entry"][0]["changes"][0]["value"]["statuses"][0]
        item.update(id=wamid(ana), recipient_id=ana)
        assert post_signed(webhook, json.dumps(status).encode()).status_code == 200
        malformed = fixture("batches/one_malformed")
        for item in malformed["entry"][0]["changes"][0]["value"]["messages"]:
            item["from"] = cleo
            if "id" in item:
                item["id"] = wamid(cleo)
        malformed["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"] = cleo
        graph.add_media(
            "9195254092169348", (AUDIO / "en_reminder.ogg").read_bytes(), "audio/ogg; codecs=opus"
        )
        assert post_signed(webhook, json.dumps(malformed).encode()).status_code == 200
        assert wait_for(lambda: len(sent_to(graph, cleo)) == 2, 60)

        # a Graph error on the reply (outside the 24 h window: acknowledged, not retried)
        graph.fail("/messages", 400, graph_error(131047, "Re-engagement message"), times=2)
        result.ids["graph_error"], body = message_body(
            "messages/text", ben, text={"body": SPOKEN["graph_error"]}
        )
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: not any(f.times for f in graph.failures), 60)
        # the model refuses (4xx: an apology), then fails once (5xx: Pub/Sub redelivers)
        model.fail("/chat/completions", 400, {"error": {"message": "bad request", "type": "invalid"}})
        result.ids["model_error"], body = message_body(
            "messages/text", ben, text={"body": SPOKEN["model_error"]}
        )
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: len(sent_to(graph, ben)) == 1, 60)
        model.fail("/chat/completions", 503, {"error": {"message": "overloaded", "type": "server"}})
        result.ids["retried"], body = message_body("messages/text", ben, text={"body": SPOKEN["retried"]})
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: len(sent_to(graph, ben)) == 2, 90)

        # Meta's error text is not ours: this one quotes the number and the id, and is retried
        dan = PHONES["dan"]
        result.ids["graph_retry"], body = message_body(
            "messages/text", dan, text={"body": SPOKEN["graph_retry"]}
        )
        quoted = f"Something went wrong sending {result.ids['graph_retry']} to +{dan}"
        graph.fail("/messages", 500, graph_error(131000, quoted), times=3)
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: len(sent_to(graph, dan)) == 1, 90)

        # a dead letter, delivered straight to the responder as Pub/Sub would; undecodable events
        result.ids["dead"] = wamid(dead)
        lost = Envelope(
            result.ids["dead"], dead, dead, "106540352242922", "text", 1_779_400_000, SPOKEN["dead"]
        )
        dead_letter = {DEAD_LETTER_ATTRIBUTE: "projects/p/subscriptions/whatsapp-text"}
        assert deliver(responder, lost, dead_letter) == 200
        assert len(sent_to(graph, dead)) == 1
        garbage = {"message": {"data": "bm90IGpzb24=", "messageId": "1"}, "subscription": "projects/p/s"}
        for function in (transcriber, responder):
            assert requests.post(function.url, json=garbage, timeout=30).status_code == 200

        # Firestore is down for the responder (connections refused) while it takes a message
        eve = PHONES["eve"]
        result.ids["outage"] = wamid(eve)
        waiting = Envelope(
            result.ids["outage"], eve, eve, "106540352242922", "text", int(time.time()), SPOKEN["outage"]
        )
        firestore.outage(refuse=True)
        assert deliver(responder, waiting) == 500  # retried by the client until the deadline: nacked
        firestore.restore()
        codes = redeliver_until_answered(responder, waiting)  # gRPC reconnects after its back-off
        assert codes[-1] == 200
        result.nacked = 1 + codes.count(500)
        assert len(sent_to(graph, eve)) == 1

        # the transcriber dies while OpenAI transcribes; a replacement on its port finishes the note
        model.on(lambda r: r.path.endswith("/audio/transcriptions"), kill(transcriber))
        result.ids["killed"], body = message_body("messages/audio_voice", BSUID)
        assert post_signed(webhook, body).status_code == 200
        assert wait_for(lambda: transcriber.process.poll() is not None, 60)
        result.logs["transcriber#1 (killed)"] = transcriber.log_text()
        replacement = serve("transcriber", env, port=transcriber.port)
        started.append(replacement)
        assert wait_for(lambda: len(sent_to(graph, BSUID)) == 2, 120)

        result.replies = [s["text"]["body"] for s in graph.sent()]
        for function in (webhook, responder, replacement):
            function.stop()
        result.logs.update(
            {
                "webhook": webhook.log_text(),
                "responder": responder.log_text(),
                "transcriber#2": replacement.log_text(),
            }
        )
        yield result
    finally:
        for function in started:
            function.stop()
        firestore.close()
        graph.failures.clear()
        model.failures.clear()
        model.hooks.clear()


# --- what a log may not hold -------------------------------------------------------------------

ID_LIKE = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")


def decodings(token: str) -> Iterator[bytes]:
    """`token` read as base64 (standard or URL-safe), from each of the 4 offsets a cut id may have."""
    core = token.removeprefix("wamid.").rstrip("=")
    for start in range(4):
        chunk = core[start:]
        chunk = chunk[: len(chunk) - len(chunk) % 4]
        for alphabet in (None, b"-_"):
            try:
                yield base64.b64decode(chunk, altchars=alphabet, validate=True)
            except (binascii.Error, ValueError):
                continue


def personal_digits() -> list[str]:
    """Every run of 8 digits of every phone number and business-scoped id of the run."""
    numbers = [*PHONES.values(), re.sub(r"\D", "", BSUID)]
    return sorted({n[i : i + 8] for n in numbers for i in range(len(n) - 7)})


def leaks(text: str, forbidden: list[str]) -> list[str]:
    """What `text` gives away: forbidden strings in clear, personal digits in clear or in base64."""
    found = [f"in clear: {word!r}" for word in forbidden if word in text]
    runs = personal_digits()
    found += [f"digits in clear: {run}" for run in runs if run in text]
    for token in set(re.findall(r"wamid\.[A-Za-z0-9+/=_-]+", text) + ID_LIKE.findall(text)):
        for decoded in decodings(token):
            plain = decoded.decode("latin-1")
            hits = [run for run in runs if run in plain]
            if hits:
                found.append(f"{token[:24]}… decodes to {hits[0]}")
                break
    return found


def forbidden_words(run: Run, graph: FakeGraph) -> list[str]:
    return [
        *PHONES.values(),
        BSUID,
        *(doc_id(user) for user in [*PHONES.values(), BSUID]),  # a phone's unsalted hash names its documents
        PROFILE,
        TRANSCRIPT,
        *SPOKEN.values(),
        *run.ids.values(),
        *(reply for reply in run.replies if len(reply) > 8),
        APP_SECRET,
        VERIFY_TOKEN,
        graph.token,
        OPENAI_KEY,
    ]


def test_no_log_of_any_process_holds_a_number_an_id_words_a_token_or_a_secret(
    run: Run, graph: FakeGraph
) -> None:
    assert set(run.logs) == {"webhook", "transcriber#1 (killed)", "transcriber#2", "responder"}
    found = []
    for name, text in run.logs.items():
        assert text.strip(), f"{name} logged nothing"
        found += [f"{name}: {leak}" for leak in leaks(text, forbidden_words(run, graph))]
    assert not found, "the logs give away:\n" + "\n".join(found)


def test_a_failure_is_one_line_naming_its_causes_never_a_traceback(run: Run) -> None:
    for name, text in run.logs.items():
        assert "Traceback" not in text, f"{name} logged a traceback"
    outage = digest(run.ids["outage"])
    failed = [
        line
        for line in records(run.logs["responder"])
        if line.get("message_id") == outage and line["severity"] == "ERROR"
    ]
    assert len(failed) == run.nacked  # each delivery until Firestore answered again
    for line in failed:  # the Firestore client's retries ran out at the attempt's deadline
        assert line["error"].startswith("RetryError < ServiceUnavailable"), line
        assert "retry_unary.py" in line["where"], line
        assert "last exception: 503" in line["reason"], line


def records(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a log (functions-framework's own lines and tracebacks are plain text)."""
    found = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def test_one_message_can_be_followed_through_the_three_functions_by_its_digest(run: Run) -> None:
    voice = digest(run.ids["voice"])
    for name in ("webhook", "transcriber#1 (killed)", "responder"):
        assert any(line.get("message_id") == voice for line in records(run.logs[name])), name


def test_undecodable_events_are_logged_where_they_are_dropped(run: Run) -> None:
    for name in ("transcriber#1 (killed)", "responder"):
        dropped = [line for line in records(run.logs[name]) if "dropped" in line["message"]]
        assert dropped, f"{name} dropped an event without a word"
        assert all(line["severity"] == "ERROR" and line.get("reason") for line in dropped), name


# --- the checker itself: it must see what it is there to see -------------------------------------


def test_the_checker_finds_a_raw_id_a_number_and_a_base64_fragment() -> None:
    raw = wamid(PHONES["ana"])
    assert leaks(json.dumps({"message_id": raw}), [])
    assert leaks(f"user {PHONES['ben']}", [])
    assert leaks(f"event_id={raw[9:40]}", [])  # a fragment, cut off the base64 grid
    assert leaks(json.dumps({"message_id": digest(raw), "user": "***1234"}), []) == []
