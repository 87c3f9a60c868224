"""The webhook function, served by functions-framework, publishing to the Pub/Sub emulator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from common.bus.envelope import Envelope
from common.bus.part_sent import PartSent
from common.meta.signature import sign
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import APP_SECRET, PROJECT, TOPIC_AUDIO, TOPIC_TEXT, VERIFY_TOKEN, function_env
from tests.support.meta import fixture, fixture_bytes, signed_headers
from tests.support.pubsub import Topics


def post_fixture(webhook: FunctionProcess, name: str) -> requests.Response:
    body = fixture_bytes(name)
    return requests.post(webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30)


def envelopes(received: list) -> list[Envelope]:
    return [Envelope.from_bytes(r.data) for r in received]


# --- the handshake ---------------------------------------------------------------------------


def test_handshake_answers_the_challenge_as_plain_text(webhook: FunctionProcess) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    answer = requests.get(webhook.url, params=params, timeout=10)
    assert answer.status_code == 200
    assert answer.text == "1158201444"
    assert answer.headers["Content-Type"].startswith("text/plain")


def test_handshake_with_a_wrong_token_is_forbidden(webhook: FunctionProcess) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "42"}
    answer = requests.get(webhook.url, params=params, timeout=10)
    assert answer.status_code == 403
    assert "42" not in answer.text
    assert answer.json()["status"] == "error"


def test_handshake_without_parameters_is_a_bad_request(webhook: FunctionProcess) -> None:
    answer = requests.get(webhook.url, timeout=10)
    assert answer.status_code == 400
    assert "hub.challenge" in answer.json()["reason"]


def test_other_methods_are_not_allowed(webhook: FunctionProcess) -> None:
    answer = requests.put(webhook.url, data=b"{}", timeout=10)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, POST"
    assert answer.json()["status"] == "error"


# --- what gets published ---------------------------------------------------------------------


def test_text_is_published_to_the_transcribers_topic(webhook: FunctionProcess, topics: Topics) -> None:
    """Every message enters by the transcriber's ordered topic, which hands text on unchanged."""
    answer = post_fixture(webhook, "messages/text")
    assert answer.status_code == 200
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    message = fixture("messages/text")["entry"][0]["changes"][0]["value"]["messages"][0]
    envelope = Envelope.from_bytes(received.data)
    assert received.attributes == {"message_id": message["id"], "type": "text"}
    assert received.ordering_key == message["from"] == envelope.user == envelope.to
    assert envelope.text == message["text"]["body"]
    assert envelope.phone_number_id == "106540352242922"
    assert topics.nothing_on(TOPIC_TEXT, wait=0)


def test_voice_note_is_published_to_the_audio_topic(webhook: FunctionProcess, topics: Topics) -> None:
    assert post_fixture(webhook, "messages/audio_voice").status_code == 200
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    envelope = Envelope.from_bytes(received.data)
    audio = fixture("messages/audio_voice")["entry"][0]["changes"][0]["value"]["messages"][0]["audio"]
    assert received.attributes["type"] == "audio"
    assert envelope.media is not None
    assert (envelope.media.id, envelope.media.voice) == (audio["id"], True)
    assert envelope.media.mime_type == "audio/ogg; codecs=opus"
    assert topics.nothing_on(TOPIC_TEXT, wait=0)


def test_image_goes_the_same_way_for_the_responder_to_answer(
    webhook: FunctionProcess, topics: Topics
) -> None:
    assert post_fixture(webhook, "messages/image").status_code == 200
    [envelope] = envelopes(topics.pull(TOPIC_AUDIO, expect=1))
    assert envelope.type == "image"
    assert envelope.media is not None


def test_batch_publishes_one_envelope_per_message_and_none_for_statuses(
    webhook: FunctionProcess, topics: Topics
) -> None:
    body = fixture("batches/mixed_3_messages_2_statuses")
    expected = {
        m["id"]: m
        for entry in body["entry"]
        for change in entry["changes"]
        for m in change["value"].get("messages", [])
    }
    assert len(expected) == 3
    assert post_fixture(webhook, "batches/mixed_3_messages_2_statuses").status_code == 200
    received = topics.pull(TOPIC_AUDIO, expect=3)
    assert sorted(r.attributes["message_id"] for r in received) == sorted(expected)
    for item in received:
        message = expected[item.attributes["message_id"]]
        assert item.attributes["type"] == message["type"]
        assert item.ordering_key == message["from"]
    assert topics.nothing_on(TOPIC_AUDIO)
    assert topics.nothing_on(TOPIC_TEXT, wait=0)


def test_audio_and_text_of_one_user_go_on_one_topic_in_order_under_one_ordering_key(
    webhook: FunctionProcess, topics: Topics
) -> None:
    """Pub/Sub orders per topic and key: on one topic, a note and a text keep the order they were sent in."""
    assert post_fixture(webhook, "batches/audio_and_text").status_code == 200
    text, audio = topics.pull(TOPIC_AUDIO, expect=2)
    assert (text.attributes["type"], audio.attributes["type"]) == ("text", "audio")
    assert text.ordering_key == audio.ordering_key != ""
    assert topics.nothing_on(TOPIC_TEXT, wait=0)


@pytest.mark.parametrize(
    "name", ["statuses/sent", "statuses/failed", "messages/reaction", "messages/system", "errors/value_error"]
)
def test_statuses_reactions_system_and_errors_are_acknowledged_not_published(
    webhook: FunctionProcess, topics: Topics, name: str
) -> None:
    answer = post_fixture(webhook, name)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "published": 0}
    assert topics.nothing_on(TOPIC_AUDIO)
    assert topics.nothing_on(TOPIC_TEXT, wait=0)


def statuses_post(*items: tuple[str, str | None]) -> bytes:
    """One POST of statuses of the bot's own messages: (status, callback data or None) each."""
    body = fixture("statuses/sent")
    [template] = body["entry"][0]["changes"][0]["value"]["statuses"]
    statuses = []
    for status, callback in items:
        item = {**template, "status": status}
        if callback is not None:
            item["biz_opaque_callback_data"] = callback
        statuses.append(item)
    body["entry"][0]["changes"][0]["value"]["statuses"] = statuses
    return json.dumps(body).encode()


def test_statuses_of_our_parts_go_to_the_status_topic_with_no_ordering_key(
    webhook: FunctionProcess, topics: Topics
) -> None:
    """Meta's sent/delivered of a part we sent, named by its callback data, reach the responder
    without waiting behind the user's messages; nothing else of a status is published."""
    topics.create("whatsapp-status")  # TOPIC_STATUS's default
    claim = "ab" * 20
    body = statuses_post(
        ("sent", f"wb1:{claim}:0"),
        ("delivered", f"wb1:{claim}:0"),
        ("read", f"wb1:{claim}:0"),  # says nothing more
        ("failed", f"wb1:{claim}:1"),  # not taken
        ("sent", "campaign-42"),  # a template the business sent with callback data of its own
        ("sent", None),
    )
    answer = requests.post(webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30)
    assert answer.json() == {"status": "ok", "published": 2}
    received = topics.pull("whatsapp-status", expect=2)
    assert [PartSent.from_bytes(r.data) for r in received] == [
        PartSent(claim, 0, "sent"),
        PartSent(claim, 0, "delivered"),
    ]
    assert {r.ordering_key for r in received} == {""}
    assert {r.attributes["type"] for r in received} == {"part_sent"}
    assert topics.nothing_on(TOPIC_AUDIO, wait=0) and topics.nothing_on(TOPIC_TEXT, wait=0)


def test_a_part_status_that_cannot_be_published_does_not_fail_the_post(
    webhook: FunctionProcess, topics: Topics
) -> None:
    """Best effort (no status topic here): a lost status only reopens the duplicate window."""
    logged_before = len(webhook.log_text())
    body = statuses_post(("sent", f"wb1:{'cd' * 20}:0"))
    answer = requests.post(webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "published": 0}
    assert "part statuses not queued" in webhook.log_text()[logged_before:]


def test_a_malformed_item_does_not_drop_its_neighbours(webhook: FunctionProcess, topics: Topics) -> None:
    logged_before = len(webhook.log_text())
    answer = post_fixture(webhook, "batches/one_malformed")
    assert answer.json() == {"status": "ok", "published": 2}
    items = fixture("batches/one_malformed")["entry"][0]["changes"][0]["value"]["messages"]
    text, audio = topics.pull(TOPIC_AUDIO, expect=2)
    assert [text.attributes["message_id"], audio.attributes["message_id"]] == [items[0]["id"], items[2]["id"]]
    skipped = [
        json.loads(line)
        for line in webhook.log_text()[logged_before:].splitlines()
        if "skipped malformed item" in line
    ]
    assert [line["where"] for line in skipped] == ["entry[0].changes[0].messages[1]"]


def test_business_scoped_user_is_keyed_on_the_user_id(webhook: FunctionProcess, topics: Topics) -> None:
    assert post_fixture(webhook, "messages/text_user_id").status_code == 200
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    assert received.ordering_key == "US.13491208655302741918" == Envelope.from_bytes(received.data).to


def test_logs_never_hold_message_text_or_full_numbers(webhook: FunctionProcess, topics: Topics) -> None:
    assert post_fixture(webhook, "messages/text").status_code == 200
    assert len(topics.pull(TOPIC_AUDIO, expect=1)) == 1
    message = fixture("messages/text")["entry"][0]["changes"][0]["value"]["messages"][0]
    logs = webhook.log_text()
    # docs/logs.md: a message id is logged as "m-" and the first 12 hex digits of its SHA-256.
    assert "m-" + hashlib.sha256(message["id"].encode()).hexdigest()[:12] in logs
    assert message["id"] not in logs
    assert message["text"]["body"] not in logs
    assert message["from"] not in logs
    assert APP_SECRET not in logs


# --- refusals --------------------------------------------------------------------------------


def post(webhook: FunctionProcess, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(webhook.url, data=body, headers=headers, timeout=30)


def test_missing_signature_is_unauthorised(webhook: FunctionProcess, topics: Topics) -> None:
    answer = post(webhook, fixture_bytes("messages/text"), {"Content-Type": "application/json"})
    assert answer.status_code == 401
    assert "X-Hub-Signature-256" in answer.json()["reason"]
    assert topics.nothing_on(TOPIC_AUDIO)


def test_wrong_signature_is_forbidden(webhook: FunctionProcess, topics: Topics) -> None:
    body = fixture_bytes("messages/text")
    answer = post(webhook, body, signed_headers(body, "another-secret"))
    assert answer.status_code == 403
    assert topics.nothing_on(TOPIC_AUDIO)


def test_signature_over_a_reserialised_body_is_forbidden(webhook: FunctionProcess, topics: Topics) -> None:
    original = fixture_bytes("messages/text")
    reserialised = json.dumps(json.loads(original)).encode()  # same JSON, other bytes
    assert reserialised != original
    answer = post(webhook, original, {"X-Hub-Signature-256": sign(reserialised, APP_SECRET)})
    assert answer.status_code == 403
    assert topics.nothing_on(TOPIC_AUDIO)


def test_malformed_json_is_a_bad_request(webhook: FunctionProcess) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": ['
    answer = post(webhook, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 400
    assert "JSON" in answer.json()["reason"]


def test_other_objects_are_a_bad_request(webhook: FunctionProcess) -> None:
    body = json.dumps({"object": "page", "entry": []}).encode()
    answer = post(webhook, body, signed_headers(body, APP_SECRET))
    assert answer.status_code == 400
    assert "whatsapp_business_account" in answer.json()["reason"]


# docs/architecture.md, "How the webhook behaves": POSTs over MAX_BODY_BYTES, 3145728 by default, get a 413.
MAX_BODY_BYTES = 3145728


def padded_text(size: int, message_id: str) -> bytes:
    """A valid text notification padded with an extra field to exactly `size` bytes."""
    body = fixture("messages/text")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = message_id
    body["pad"] = ""
    bare = len(json.dumps(body).encode())
    body["pad"] = "x" * (size - bare)
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


def test_a_body_of_exactly_max_body_bytes_is_accepted_and_one_more_byte_refused(
    webhook: FunctionProcess, topics: Topics
) -> None:
    at_limit = padded_text(MAX_BODY_BYTES, "wamid.AT-THE-LIMIT")
    assert post(webhook, at_limit, signed_headers(at_limit, APP_SECRET)).json() == {
        "status": "ok",
        "published": 1,
    }
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    assert received.attributes["message_id"] == "wamid.AT-THE-LIMIT"
    over = padded_text(MAX_BODY_BYTES + 1, "wamid.OVER-THE-LIMIT")
    answer = post(webhook, over, signed_headers(over, APP_SECRET))
    assert answer.status_code == 413
    assert answer.json()["status"] == "error" and answer.json()["reason"]
    assert topics.nothing_on(TOPIC_AUDIO)


# --- bad input: each body has its expected answer -----------------------------------------------

REFUSED, SKIPPED, PUBLISHED = "400 with a reason", "200, skip logged", "200, published"
WRONG = [("None", None), ("0", 0), ("1.5", 1.5), ("True", True), ("[]", []), ("{}", {}), ("''", "")]
WRONG.append(("long", "x" * 10_000))
# Malformed items the parser can still answer safely: `from` absent (the one contact names the
# sender, as with business-scoped users), a long text, a broken optional contacts block, and a
# type Meta may add tomorrow (the responder says what it cannot read).
CONTACTS_WRONG = (None, 0, "x", {}, [None], [1])
STILL_ANSWERABLE = {"from=None", "from=''", "text.body=long", "unknown type"}
STILL_ANSWERABLE |= {f"contacts={wrong!r}" for wrong in CONTACTS_WRONG}


def bad_bodies() -> list[tuple[str, str, bytes, str]]:
    """(name, expected class, body, the message id a published envelope would carry)."""
    cases: list[tuple[str, str, bytes, str]] = [
        ("truncated", REFUSED, fixture_bytes("messages/text")[:-7], ""),
        ("deeply nested", REFUSED, b"[" * 100_000 + b"]" * 100_000, ""),
        (
            "deeply nested object",
            REFUSED,
            b'{"object":"whatsapp_business_account","entry":' + b"[" * 50_000,
            "",
        ),
        ("invalid utf-8", REFUSED, b'{"object": "whatsapp_business_account", "x": "\xff\xfe"}', ""),
        ("not an object", REFUSED, b'"whatsapp_business_account"', ""),
        ("null", REFUSED, b"null", ""),
        ("empty", REFUSED, b"", ""),
    ]

    def variant(name: str, change: Callable[[dict[str, Any]], None]) -> None:
        body = fixture("messages/text")
        message_id = f"wamid.BAD{len(cases):03d}"
        body["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = message_id
        change(body)
        expected = PUBLISHED if name in STILL_ANSWERABLE else SKIPPED
        cases.append((name, expected, json.dumps(body).encode(), message_id))

    def message(body: dict[str, Any]) -> dict[str, Any]:
        return body["entry"][0]["changes"][0]["value"]["messages"][0]

    for field in ("from", "id", "timestamp", "type", "text", "text.body"):
        for label, wrong in WRONG:
            if field == "text.body":
                variant(f"{field}={label}", lambda b, w=wrong: message(b)["text"].update(body=w))
            else:
                variant(f"{field}={label}", lambda b, f=field, w=wrong: message(b).update({f: w}))
    holders = {
        "entry": lambda b: b,
        "changes": lambda b: b["entry"][0],
        "value": lambda b: b["entry"][0]["changes"][0],
        "messages": lambda b: b["entry"][0]["changes"][0]["value"],
        "metadata": lambda b: b["entry"][0]["changes"][0]["value"],
        "contacts": lambda b: b["entry"][0]["changes"][0]["value"],
    }
    for path, holder in holders.items():
        for wrong in CONTACTS_WRONG:
            variant(f"{path}={wrong!r}", lambda b, h=holder, p=path, w=wrong: h(b).update({p: w}))
    variant("unknown type", lambda b: message(b).update(type="hologram"))
    return cases


def test_each_bad_body_gets_its_expected_answer_and_nothing_malformed_is_published(
    webhook: FunctionProcess, topics: Topics
) -> None:
    cases = bad_bodies()
    assert len(cases) > 80 and len({name for name, *_ in cases}) == len(cases)
    wrong = []
    for name, expected, body, _ in cases:
        logged_before = len(webhook.log_text())
        answer = post(webhook, body, signed_headers(body, APP_SECRET))
        new_log = webhook.log_text()[logged_before:]
        got = answer.json() if answer.headers.get("Content-Type") == "application/json" else {}
        if answer.status_code == 400 and got.get("reason"):
            outcome = REFUSED
        elif (
            answer.status_code == 200
            and got == {"status": "ok", "published": 0}
            and "skipped malformed" in new_log
        ):
            outcome = SKIPPED
        elif answer.status_code == 200 and got == {"status": "ok", "published": 1}:
            outcome = PUBLISHED
        else:
            outcome = f"{answer.status_code} {answer.text[:80]}"
        if outcome != expected:
            wrong.append(f"{name}: expected {expected}, got {outcome}")
    assert not wrong, "\n".join(wrong)
    assert webhook.process.poll() is None  # still alive
    answerable = sorted(message_id for _, expected, _, message_id in cases if expected == PUBLISHED)
    published = topics.pull(TOPIC_AUDIO, expect=len(answerable), timeout=30)
    assert sorted(r.attributes["message_id"] for r in published) == answerable
    assert topics.nothing_on(TOPIC_TEXT, wait=0)


def test_posts_are_refused_while_the_app_secret_is_unset(emulators: emu.Emulators) -> None:
    function = serve("webhook", function_env(emulators, WHATSAPP_APP_SECRET=""))
    try:
        body = fixture_bytes("messages/text")
        for _ in range(2):
            answer = post(function, body, signed_headers(body, APP_SECRET))
            assert answer.status_code == 500
            assert answer.json()["reason"] == "webhook is not configured"
        assert function.log_text().count("WHATSAPP_APP_SECRET is not set") == 1
    finally:
        function.stop()


def test_publish_failure_answers_503_so_meta_retries(emulators: emu.Emulators) -> None:
    """A Pub/Sub of its own, stopped before the POST: nothing can be confirmed, so no 200."""
    own_pubsub = emu.start_pubsub(emu.find_jars())
    own_pubsub.wait_ready()
    env = function_env(emulators, PUBSUB_EMULATOR_HOST=own_pubsub.address, PUBLISH_TIMEOUT_SECONDS="2")
    function = serve("webhook", env)
    try:
        own = Topics(PROJECT, host=own_pubsub.address)
        own.create(TOPIC_AUDIO)
        own.close()
        own_pubsub.stop()
        answer = post_fixture(function, "messages/text")
        assert answer.status_code == 503
        assert answer.json()["status"] == "error"
        assert "publish failed" in function.log_text()
    finally:
        function.stop()
        own_pubsub.stop()


def test_a_fault_of_ours_answers_500_in_json_and_logs_one_line_without_a_traceback(
    emulators: emu.Emulators,
) -> None:
    """A setting the guardrails cannot read fails the first POST: Meta retries a 500, and the log
    says what failed and where, not a traceback (whose causes may quote the body)."""
    function = serve("webhook", function_env(emulators, MAX_MESSAGE_AGE_HOURS="a day"))
    try:
        answer = post_fixture(function, "messages/text")
        assert answer.status_code == 500
        assert answer.json() == {"status": "error", "reason": "internal error"}
        text = function.log_text()
        [line] = [json.loads(row) for row in text.splitlines() if "request failed" in row]
        assert line["severity"] == "ERROR"
        assert line["error"] == "RuntimeError < ValueError"
        assert line["reason"] == "MAX_MESSAGE_AGE_HOURS must be a number, got 'a day'"
        assert "config.py" in line["where"]
        assert "Traceback" not in text
    finally:
        function.stop()
