"""The responder, served by functions-framework, on the Firestore emulator and loopback Graph/OpenAI."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests
from google.cloud import firestore

from common.bus.envelope import Envelope, MediaRef
from common.bus.events import DEAD_LETTER_ATTRIBUTE, event_for
from common.log import digest
from common.meta.chunks import split_text, units
from common.responder.texts import DEFAULTS
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionError, FunctionProcess, serve
from tests.conftest import OPENAI_KEY, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI, graph_error

BUSINESS = "106540352242922"
# An attempt may work 5 s; its claim's lease is 6 s (20 s in production), so that a dead attempt's
# lease runs out within a test.
TIMING = {"ATTEMPT_TIMEOUT_SECONDS": "5", "CLAIM_LEASE_SECONDS": "6", "CLAIM_LEASE_MARGIN_SECONDS": "1"}
DEAD_LETTER = {DEAD_LETTER_ATTRIBUTE: "projects/p/subscriptions/whatsapp-text", "type": "text"}


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    env = stand_in_env(
        emulators,
        graph,
        model,
        OPENAI_MODEL="test-model",
        HISTORY_MAX_TURNS="100",
        HISTORY_MAX_CHARS="100000",
        **TIMING,
    )
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture(scope="module")
def tuned(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    """A responder with every setting the tests below check moved off its default."""
    env = stand_in_env(
        emulators,
        graph,
        model,
        VOICE_MODE="conversation",
        HISTORY_MAX_CHARS="120",
        HISTORY_TTL_DAYS="5",
        CLAIM_TTL_DAYS="2",
        OPENAI_MAX_TOKENS="77",
        **TIMING,
    )
    function = serve("responder", env)
    yield function
    function.stop()


def text(words: str, user: str = "15550001111", **changes: object) -> Envelope:
    envelope = Envelope(
        message_id=f"wamid.{uuid.uuid4().hex}",
        user=user,
        to=user,
        phone_number_id=BUSINESS,
        type="text",
        timestamp=int(time.time()),
        text=words,
    )
    return replace(envelope, **changes)


def stored_turns(db: firestore.Client, user: str) -> list[dict]:
    return (db.collection("conversations").document(doc_id(user)).get().to_dict() or {}).get("turns", [])


def test_a_text_is_answered_once_quoted_after_a_read_receipt(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = text("What is the capital of France?")
    assert deliver(responder, envelope) == 200
    [sent] = graph.sent()
    assert sent["to"] == envelope.to
    assert sent["context"] == {"message_id": envelope.message_id}
    assert sent["text"]["body"] == "echo: What is the capital of France? (turns seen: 2)"
    [read] = graph.reads()
    assert read["message_id"] == envelope.message_id
    assert read["typing_indicator"] == {"type": "text"}
    [chat] = model.chats()
    assert chat["model"] == "test-model"
    assert chat["max_completion_tokens"] == 3072  # 3 parts (MAX_REPLY_PARTS) of 4096 chars, ~4 chars a token
    assert chat["messages"][0] == {"role": "system", "content": DEFAULTS["SYSTEM_PROMPT"]}


def test_the_next_turn_carries_the_history(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    first, second = text("My name is Ada."), text("What is my name?")
    assert deliver(responder, first) == 200
    assert deliver(responder, second) == 200
    prompt = model.chats()[1]["messages"]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1]["content"] == "My name is Ada."
    assert prompt[2]["content"] == graph.sent()[0]["text"]["body"]
    assert len(stored_turns(db, first.user)) == 4


def test_the_same_envelope_three_times_is_answered_once(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = text("hello")
    assert [deliver(responder, envelope) for _ in range(3)] == [200, 200, 200]
    assert len(graph.sent()) == 1
    assert len(model.chats()) == 1


def test_concurrent_redeliveries_give_one_reply(
    responder: FunctionProcess, graph: FakeGraph, db: firestore.Client
) -> None:
    envelope = text("hello at once")
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda _: deliver(responder, envelope), range(3)))
    assert codes.count(200) >= 1
    assert set(codes) <= {200, 500}  # a loser whose rival still holds the lease asks to be retried
    assert deliver(responder, envelope) == 200
    assert len(graph.sent()) == 1


def test_twenty_concurrent_messages_from_one_user_keep_every_turn(
    responder: FunctionProcess, graph: FakeGraph, db: firestore.Client
) -> None:
    envelopes = [text(f"message number {i}") for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda e: deliver(responder, e), envelopes))
    assert codes == [200] * 20
    turns = stored_turns(db, envelopes[0].user)
    assert len(turns) == 40
    assert {t.get("messageId") for t in turns if t["role"] == "user"} == {e.message_id for e in envelopes}
    assert len(graph.sent()) == 20


def test_reset_clears_only_the_senders_history(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    alice, bob = "15550002222", "15550003333"
    assert deliver(responder, text("I am Alice", user=alice)) == 200
    assert deliver(responder, text("I am Bob", user=bob)) == 200
    assert deliver(responder, text("  /RESET  ", user=alice)) == 200
    assert graph.sent()[-1]["text"]["body"] == DEFAULTS["RESET_TEXT"]
    assert stored_turns(db, alice) == []
    assert len(stored_turns(db, bob)) == 2
    assert deliver(responder, text("who am I?", user=alice)) == 200
    assert [m["role"] for m in model.chats()[-1]["messages"]] == ["system", "user"]


def test_help_answers_without_the_model(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(responder, text("/Help ")) == 200
    assert graph.sent()[0]["text"]["body"] == DEFAULTS["HELP_TEXT"]
    assert model.chats() == []


def test_a_long_answer_arrives_in_ordered_parts(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    long_answer = " ".join(
        f"Sentence number {i} says something about 🌍 and the weather." for i in range(170)
    )
    long_answer = long_answer[:10_000]
    assert len(long_answer) == 10_000
    model.answer = lambda messages: long_answer
    envelope = text("tell me everything")
    assert deliver(responder, envelope) == 200
    parts = [s["text"]["body"] for s in graph.sent()]
    assert len(parts) == 3
    assert all(units(p) <= 4096 for p in parts)
    assert "".join(parts) == long_answer
    assert graph.sent()[0]["context"] == {"message_id": envelope.message_id}


def test_openai_500_then_success_gives_one_reply(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.fail("/chat/completions", 500, {"error": {"message": "boom", "type": "server_error"}})
    assert deliver(responder, text("hi")) == 200
    assert len(model.chats()) == 2
    assert len(graph.sent()) == 1


def test_openai_400_gets_an_apology_and_no_retry_loop(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    error = {  # this request's own fault (a mistyped OPENAI_MODEL is an outage: test_openai_outages)
        "error": {"message": "Invalid content", "type": "invalid_request_error", "code": "invalid_value"}
    }
    model.fail("/chat/completions", 400, error, times=5)
    envelope = text("hi")
    assert deliver(responder, envelope) == 200
    assert len(model.chats()) == 1
    assert graph.sent()[0]["text"]["body"] == DEFAULTS["MODEL_ERROR_TEXT"]
    assert deliver(responder, envelope) == 200  # a redelivery changes nothing
    assert len(model.chats()) == 1


def test_an_over_long_context_is_trimmed_and_tried_once_more(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    for i in range(3):
        assert deliver(responder, text(f"turn {i}")) == 200
    error = {
        "error": {
            "message": "maximum context length",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    model.fail("/chat/completions", 400, error)
    assert deliver(responder, text("and now?")) == 200
    full, trimmed = model.chats()[-2:]
    assert full["max_completion_tokens"] == trimmed["max_completion_tokens"] == 3072
    assert len(full["messages"]) == 8
    assert len(trimmed["messages"]) == 4
    assert graph.sent()[-1]["text"]["body"].startswith("echo: and now?")


def test_model_down_raises_for_redelivery_and_answers_later(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.fail("/chat/completions", 503, {"error": {"message": "overloaded"}}, times=3)  # all the retries
    envelope = text("anyone?")
    assert deliver(responder, envelope) == 500
    assert graph.sent() == []
    assert deliver(responder, envelope) == 200  # redelivered at once: the claim was released
    assert len(graph.sent()) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, {"error": {"message": "unavailable"}}), (400, graph_error(130429, "Rate limit hit"))],
)
def test_graph_retriable_errors_are_retried_and_the_stored_reply_resent(
    responder: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
    db: firestore.Client,
    status: int,
    body: dict,
) -> None:
    graph.fail("/messages", 200, {"success": True})  # the read receipt passes
    graph.fail("/messages", status, body)
    envelope = text("hi there")
    assert deliver(responder, envelope) == 500
    assert deliver(responder, envelope) == 200
    [sent] = graph.sent()
    assert sent["text"]["body"].startswith("echo: hi there")
    assert len(model.chats()) == 1  # the redelivery resent the stored reply


def test_graph_131047_is_logged_and_acknowledged(
    responder: FunctionProcess, graph: FakeGraph, db: firestore.Client
) -> None:
    graph.fail("/messages", 200, {"success": True})
    graph.fail("/messages", 400, graph_error(131047, "Re-engagement message"))
    envelope = text("late reply")
    assert deliver(responder, envelope) == 200
    assert deliver(responder, envelope) == 200
    assert len([r for r in graph.requests if r.path.endswith("/messages")]) == 2  # read + one send
    assert "131047" in responder.log_text()


def test_a_video_gets_the_polite_reply(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db
) -> None:
    envelope = text("", type="video", text=None, media=MediaRef("1001", "video/mp4"))
    assert deliver(responder, envelope) == 200
    assert graph.sent()[0]["text"]["body"] == DEFAULTS["UNSUPPORTED_TEXT"]
    assert model.chats() == []


def test_a_reaction_gets_no_reply(responder: FunctionProcess, graph: FakeGraph, db: firestore.Client) -> None:
    assert deliver(responder, text("", type="reaction", text=None)) == 200
    assert graph.requests == []


def test_a_button_reply_is_read_as_the_user_words(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(responder, text("Yes, book it", type="interactive")) == 200
    assert model.chats()[0]["messages"][-1] == {"role": "user", "content": "Yes, book it"}


def test_a_voice_transcript_is_summarised_by_default(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = text("remind me to call my mother", type="audio", transcript=True)
    assert deliver(responder, envelope) == 200
    asked = model.chats()[0]["messages"][-1]["content"]
    assert asked.startswith("Please summarize the following voice message")
    assert asked.endswith("remind me to call my mother")


def test_a_failed_transcription_gets_an_apology(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = text("", type="audio", text=None, transcript=True, transcription_error="no speech")
    assert deliver(responder, envelope) == 200
    assert graph.sent()[0]["text"]["body"] == DEFAULTS["VOICE_FAILED_TEXT"]
    assert model.chats() == []


def test_an_undecodable_event_is_acknowledged(responder: FunctionProcess, graph: FakeGraph, db) -> None:
    push = {
        "message": {"data": "bm90IGpzb24=", "messageId": "1"},
        "subscription": "projects/p/subscriptions/s",
    }
    assert requests.post(responder.url, json=push, timeout=10).status_code == 200
    assert graph.requests == []
    assert "dropped an undecodable event" in responder.log_text()


def test_logs_hold_no_message_text_or_full_numbers(responder: FunctionProcess, db: firestore.Client) -> None:
    envelope = text("my secret plans", user="15559998888")
    assert deliver(responder, envelope) == 200
    logs = responder.log_text()
    assert f'"message_id": "{digest(envelope.message_id)}"' in logs  # followable, yet not the raw id
    assert envelope.message_id not in logs
    assert "my secret plans" not in logs
    assert "15559998888" not in logs
    assert OPENAI_KEY not in logs


def test_the_budget_trims_the_stored_history(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    env = stand_in_env(
        emulators,
        graph,
        model,
        HISTORY_MAX_TURNS="4",
    )
    small = serve("responder", env)
    try:
        envelopes = [text(f"message {i}") for i in range(4)]
        for envelope in envelopes:
            assert deliver(small, envelope) == 200
    finally:
        small.stop()
    turns = stored_turns(db, envelopes[0].user)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert [t["content"] for t in turns if t["role"] == "user"] == ["message 2", "message 3"]
    assert len(model.chats()[-1]["messages"]) == 1 + 4 + 1  # system, the budget, the new turn


def test_an_envelope_with_keys_a_newer_version_added_is_answered(
    responder: FunctionProcess, graph: FakeGraph, db: firestore.Client
) -> None:
    """A rolling deploy: a newer webhook adds keys at the top and inside `media`."""
    envelope = text("", type="video", text=None, media=MediaRef("1002", "video/mp4"))
    push = event_for(envelope)
    raw = json.loads(base64.b64decode(push["message"]["data"]))
    raw["media"].update({"caption_entities": [1, 2], "width": 640})
    raw["priority"] = "high"
    push["message"]["data"] = base64.b64encode(json.dumps(raw).encode()).decode()
    logged_before = len(responder.log_text())
    assert requests.post(responder.url, json=push, timeout=60).status_code == 200
    [sent] = graph.sent()
    assert sent["text"]["body"] == DEFAULTS["UNSUPPORTED_TEXT"]
    assert "dropped an undecodable event" not in responder.log_text()[logged_before:]


def test_a_reply_that_fails_at_part_two_is_resent_from_part_two(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    long_answer = " ".join(f"Sentence {i} tells a little more of the story." for i in range(400))[:9000]
    model.answer = lambda messages: long_answer
    parts = split_text(long_answer)
    assert len(parts) == 3
    graph.fail("/messages", 200, {"success": True}, times=1)  # the read receipt
    graph.fail("/messages", 200, {"messages": [{"id": "wamid.OUT1"}]}, times=1)  # part 1 accepted
    graph.fail("/messages", 503, {"error": {"message": "unavailable"}}, times=1)  # part 2 fails
    envelope = text("tell me a long story")
    assert deliver(responder, envelope) == 500
    assert deliver(responder, envelope) == 200
    assert [s["text"]["body"] for s in graph.sent()] == parts  # part 1 once, then 2 and 3
    assert graph.sent()[0]["context"] == {"message_id": envelope.message_id}
    assert "context" not in graph.sent()[1]
    assert len(model.chats()) == 1


def test_a_dead_letter_whose_reply_was_stored_sends_that_reply_not_the_apology(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    graph.fail("/messages", 503, {"error": {"message": "unavailable"}}, times=6)  # 3 x (receipt, send)
    envelope = text("is it raining?")
    assert [deliver(responder, envelope) for _ in range(3)] == [500] * 3
    assert graph.sent() == []
    assert deliver(responder, envelope, DEAD_LETTER) == 200
    assert deliver(responder, envelope, DEAD_LETTER) == 200  # the dead-letter delivery repeated
    [sent] = graph.sent()
    assert sent["text"]["body"].startswith("echo: is it raining?")
    assert sent["text"]["body"] != DEFAULTS["MODEL_ERROR_TEXT"]
    assert len(model.chats()) == 1


def test_voice_mode_conversation_makes_the_transcript_the_users_turn(
    tuned: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = text("what should I cook tonight", type="audio", transcript=True)
    assert deliver(tuned, envelope) == 200
    [chat] = model.chats()
    assert chat["messages"][-1] == {"role": "user", "content": "what should I cook tonight"}
    assert chat["max_completion_tokens"] == 77  # OPENAI_MAX_TOKENS


def test_claims_and_conversations_expire_and_claims_hold_no_message_id(
    tuned: FunctionProcess, graph: FakeGraph, db: firestore.Client
) -> None:
    envelope = text("remember me")
    before = datetime.now(UTC)
    assert deliver(tuned, envelope) == 200
    after = datetime.now(UTC)
    claim = db.collection("claims").document(doc_id(envelope.message_id)).get().to_dict()
    conversation = db.collection("conversations").document(doc_id(envelope.user)).get().to_dict()
    slack = timedelta(seconds=5)
    assert before + timedelta(days=2) - slack <= claim["expireAt"] <= after + timedelta(days=2) + slack
    assert before + timedelta(days=5) - slack <= conversation["expireAt"] <= after + timedelta(days=5) + slack
    assert claim["state"] == "done"
    assert envelope.message_id not in repr(claim)  # the id is hashed; a wamid holds a phone number


def test_history_max_chars_bounds_what_the_model_sees(
    tuned: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.answer = lambda messages: "x" * 20
    words = [f"{i}" * 30 for i in range(4)]  # each exchange: 30 + 20 characters
    for item in words:
        assert deliver(tuned, text(item)) == 200
    prompt = model.chats()[-1]["messages"]
    # 120 characters hold two exchanges (100): the third-to-last was trimmed before the last turn
    assert [m["content"] for m in prompt if m["role"] == "user"] == words[1:]
    assert [m["content"] for m in prompt[1:-1] if m["role"] == "user"] == words[1:3]
    turns = stored_turns(db, text("").user)
    assert [t["content"] for t in turns if t["role"] == "user"] == words[2:]
    assert sum(len(t["content"]) for t in turns) <= 120
    assert turns[0]["role"] == "user"


def test_a_lease_a_living_attempt_could_lose_is_refused_at_start(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI
) -> None:
    """One missed renewal must not cost a living attempt its claim: lease >= 2 x renew + margin."""
    env = stand_in_env(emulators, graph, model, CLAIM_LEASE_SECONDS="10", CLAIM_RENEW_SECONDS="5")
    with pytest.raises(FunctionError) as refused:
        serve("responder", env).stop()
    assert "CLAIM_LEASE_SECONDS=10 must be at least 2 x CLAIM_RENEW_SECONDS (5)" in str(refused.value)
