"""Guardrails on the emulators through the real functions: strangers, limits, budget, age, pauses, parts."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from common.bus.envelope import Envelope, MediaRef
from common.guard.policy import TEXT_DEFAULTS
from common.responder.texts import DEFAULTS
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import APP_SECRET, TOPIC_AUDIO, TOPIC_TEXT, function_env, stand_in_env
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.meta import fixture, signed_headers
from tests.support.pubsub import Topics

AUDIO = Path(__file__).resolve().parent / "audio"

BUSINESS = "106540352242922"
ADMIN = "15550009999"
FRIEND, FRIEND_BSUID = "15550002222", "US.13491208655302741918"
STRANGER = "15550006666"
GUARDS = {
    "ALLOWED_USERS": f"+1 555 000 2222, {ADMIN}, 15550003333, 15550004444, 15550005555",
    "ADMIN_USERS": ADMIN,
    "MAX_MESSAGE_AGE_HOURS": "23",
    "GUARDRAILS_CACHE_SECONDS": "0",  # every turn sees the newest pause (production: 10 s)
    "ECHO_PAUSE_HOURS": "2",
}


@pytest.fixture(scope="module")
def webhook(emulators: emu.Emulators) -> Iterator[FunctionProcess]:
    function = serve("webhook", function_env(emulators, **GUARDS))
    yield function
    function.stop()


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    env = stand_in_env(emulators, graph, model, MAX_TURNS_PER_DAY="2", MAX_TOKENS_PER_DAY="50", **GUARDS)
    function = serve("responder", env)
    yield function
    function.stop()


@pytest.fixture(scope="module")
def budgeted(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    """Everyone allowed, no per-user limit, a whole-bot ceiling of 106 tokens a day."""
    env = stand_in_env(emulators, graph, model, DAILY_TOKEN_BUDGET="106", GUARDRAILS_CACHE_SECONDS="0")
    function = serve("responder", env)
    yield function
    function.stop()


def text(words: str, user: str = FRIEND, **changes: object) -> Envelope:
    envelope = Envelope(f"wamid.{uuid.uuid4().hex}", user, user, BUSINESS, "text", int(time.time()), words)
    return replace(envelope, **changes)


def stored_turns(db: firestore.Client, user: str) -> list[dict]:
    return (db.collection("conversations").document(doc_id(user)).get().to_dict() or {}).get("turns", [])


def bodies(graph: FakeGraph) -> list[str]:
    return [m["text"]["body"] for m in graph.sent()]


def post(webhook: FunctionProcess, name: str, **fields: Any) -> requests.Response:
    """A corpus fixture with its one message changed (sender, time) and a fresh id, signed."""
    payload = copy.deepcopy(fixture(name))
    value = payload["entry"][0]["changes"][0]["value"]
    message = value["messages"][0]
    message.update({"id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(int(time.time())), **fields})
    value["contacts"] = [{"profile": {"name": "Someone"}, "wa_id": message["from"]}]
    body = json.dumps(payload).encode()
    return requests.post(webhook.url, data=body, headers=signed_headers(body, APP_SECRET), timeout=30)


# --- who may talk ------------------------------------------------------------------------------


def test_a_stranger_gets_one_not_allowed_text_a_day_and_nothing_else(
    webhook: FunctionProcess,
    responder: FunctionProcess,
    topics: Topics,
    graph: FakeGraph,
    model: FakeOpenAI,
    db: firestore.Client,
) -> None:
    assert post(webhook, "messages/text", **{"from": STRANGER}).status_code == 200
    assert post(webhook, "messages/audio_voice", **{"from": STRANGER}).status_code == 200
    published = [Envelope.from_bytes(r.data) for r in topics.pull(TOPIC_AUDIO, expect=2)]
    assert topics.nothing_on(TOPIC_TEXT)  # both by the transcriber, which hands them on unchanged
    assert all(e.refused == "not_allowed" and e.text is None and e.media is None for e in published)
    for envelope in published:
        assert deliver(responder, envelope) == 200
    assert deliver(responder, published[0]) == 200  # a redelivery changes nothing
    assert bodies(graph) == [TEXT_DEFAULTS["NOT_ALLOWED_TEXT"]]
    assert graph.reads() == []  # no blue ticks and no "typing…" that no answer follows
    assert model.chats() == []
    assert not [r for r in graph.requests if "1908647269898587" in r.path or r.path.startswith("/download")]


def test_a_user_known_by_phone_and_business_id_matches_either_way(
    webhook: FunctionProcess, topics: Topics
) -> None:
    """ALLOWED_USERS lists the phone number (spelled with + and spaces); the message is keyed on the BSUID."""
    assert post(webhook, "messages/text", **{"from": FRIEND, "from_user_id": FRIEND_BSUID}).status_code == 200
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    envelope = Envelope.from_bytes(received.data)
    assert envelope.user == FRIEND_BSUID and envelope.refused is None and envelope.text


# --- stale messages ----------------------------------------------------------------------------


def test_a_three_day_old_message_is_acknowledged_not_answered(
    webhook: FunctionProcess,
    responder: FunctionProcess,
    topics: Topics,
    graph: FakeGraph,
    model: FakeOpenAI,
    db: firestore.Client,
) -> None:
    three_days_ago = str(int(time.time()) - 3 * 86400)
    assert post(webhook, "messages/text", **{"from": FRIEND, "timestamp": three_days_ago}).status_code == 200
    assert (
        post(webhook, "messages/audio_voice", **{"from": FRIEND, "timestamp": three_days_ago}).status_code
        == 200
    )
    assert topics.nothing_on(TOPIC_TEXT) and topics.nothing_on(TOPIC_AUDIO)
    old = text("are you there?", timestamp=int(time.time()) - 3 * 86400)  # one already on the topic
    assert deliver(responder, old) == 200
    assert list(graph.requests) == [] and model.chats() == []
    assert "stale message" in responder.log_text()


# --- per-user daily limits ---------------------------------------------------------------------


def test_the_limit_reply_comes_once_then_silence_and_usage_tells_what_is_left(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    user = "15550003333"
    model.tokens = (7, 3)
    for words in ("one", "two"):
        assert deliver(responder, text(words, user)) == 200
    assert deliver(responder, text("/usage", user)) == 200
    usage = bodies(graph)[-1]
    assert "messages answered: 2 used, 0 left" in usage
    assert "tokens: 20 used, 30 left" in usage
    three = text("three", user)
    assert [deliver(responder, three) for _ in range(2)] == [200, 200]  # a redelivery: still one reply
    assert deliver(responder, text("four", user)) == 200
    sent = bodies(graph)
    assert len(model.chats()) == 2
    assert len(sent) == 4  # two answers, /usage, one limit reply; "four" gets silence
    assert sent[3].startswith("You have reached today's limit. I can answer again after ")
    assert sent[3].endswith(" 00:00 UTC.")
    stored = db.collection("conversations").document(doc_id(user)).get().to_dict()
    assert (stored["usageTurns"], stored["usageTokens"], stored["usageMessages"]) == (2, 20, 2)


def test_the_token_limit_counts_the_api_usage(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    user = "15550004444"
    model.tokens = (40, 15)  # one turn spends more than MAX_TOKENS_PER_DAY=50
    assert deliver(responder, text("a long question", user)) == 200
    assert deliver(responder, text("another", user)) == 200
    assert len(model.chats()) == 1
    assert bodies(graph)[1].startswith("You have reached today's limit.")


def test_reset_does_not_clear_the_day_s_usage(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    user = "15550005555"
    for words in ("one", "two", "/reset", "three"):
        assert deliver(responder, text(words, user)) == 200
    assert len(model.chats()) == 2
    assert bodies(graph)[-1].startswith("You have reached today's limit.")


# --- the whole bot's budget --------------------------------------------------------------------


def test_the_sharded_budget_is_exact_under_50_concurrent_turns_then_busy_for_everyone(
    budgeted: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    turns = [text(f"question {n}", f"1555100{n:04d}") for n in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        assert list(pool.map(lambda e: deliver(budgeted, e), turns)) == [200] * 50
    shards = db.collection("budget").stream()
    assert sum(s.to_dict()["tokens"] for s in shards) == 100  # 50 turns x 2 tokens, none lost
    first, second = "15552000001", "15552000002"
    for envelope in (text("a", first), text("b", first), text("c", first)):
        assert deliver(budgeted, envelope) == 200  # 102, 104, 106 tokens: the ceiling is reached
    assert deliver(budgeted, text("d", first)) == 200
    assert deliver(budgeted, text("e", second)) == 200
    assert deliver(budgeted, text("f", second)) == 200
    busy = TEXT_DEFAULTS["BUSY_TEXT"]
    assert len(model.chats()) == 53
    assert bodies(graph)[-2:] == [
        busy,
        busy,
    ]  # the first user's 4th turn, the second user's 1st; then silence
    assert budgeted.log_text().count('"token_budget"') == 1


def test_a_contended_budget_shard_never_holds_back_an_answered_turn(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    """The shard is written after the turn is stored: a write Firestore refuses there (another
    transaction holds the shard: the emulator's lock timeout, Firestore's contention) moves to the
    next shard, and when every one is held, the reply still goes out at once and an alert line
    says how many tokens the budget missed. Nothing is nacked, nothing asked twice."""
    env = stand_in_env(emulators, graph, model, DAILY_TOKEN_BUDGET="1000", BUDGET_SHARDS="2")
    function = serve("responder", {**env, "GUARDRAILS_CACHE_SECONDS": "0"})
    day = datetime.now(UTC).date().isoformat()  # LIMITS_TIMEZONE unset: UTC
    shards = [db.document(f"budget/{day}-{n}") for n in range(2)]
    for shard in shards:
        shard.set({"tokens": 0})

    @firestore.transactional
    def holding(transaction: firestore.Transaction, held: list[Any], envelope: Envelope) -> int:
        for shard in held:  # read in a transaction: locked until it ends
            shard.get(transaction=transaction)
        return deliver(function, envelope)

    try:
        every = text("count me if you can")
        assert holding(db.transaction(max_attempts=1), shards, every) == 200
        assert bodies(graph) == ["echo: count me if you can (turns seen: 2)"]
        assert len(stored_turns(db, FRIEND)) == 2 and len(model.chats()) == 1
        assert sum(s.get().get("tokens") for s in shards) == 0  # missed, and said so:
        [line] = [json.loads(x) for x in function.log_text().splitlines() if "budget_uncounted" in x]
        assert (line["severity"], line["tokens"], line["tries"]) == ("ERROR", 2, 3)
        one = text("and now?")
        assert holding(db.transaction(max_attempts=1), shards[:1], one) == 200  # one shard held
        assert deliver(function, every) == deliver(function, one) == 200  # redeliveries: done
        assert len(graph.sent()) == 2 and len(model.chats()) == 2
        assert sum(s.get().get("tokens") for s in shards) == 2  # counted on the free shard
    finally:
        function.stop()


# --- a human steps in --------------------------------------------------------------------------


def test_pause_from_an_admin_silences_one_user_and_resume_brings_the_texts_back(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    user = FRIEND
    assert deliver(responder, text(f"/pause {user}", ADMIN)) == 200
    assert bodies(graph)[-1].startswith(f"Paused {user} until /resume")
    assert deliver(responder, text("I need a human", user)) == 200
    assert deliver(responder, text("please call me", user)) == 200
    assert len(graph.sent()) == 1 and model.chats() == []
    assert deliver(responder, text("/stats", ADMIN)) == 200
    assert bodies(graph)[-1].startswith("Today (") and "2 messages from 1 users" in bodies(graph)[-1]
    assert deliver(responder, text(f"/resume {user}", ADMIN)) == 200
    assert deliver(responder, text("thanks", user)) == 200
    [chat] = model.chats()
    said = [m["content"] for m in chat["messages"] if m["role"] == "user"]
    assert said == ["I need a human", "please call me", "thanks"]
    assert bodies(graph)[-1].startswith("echo: thanks")


def test_pause_by_business_scoped_id_silences_that_user(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    """Business-scoped ids are case-sensitive: the pause is written under the id as the admin
    typed it, which is the id the user's messages carry."""
    assert deliver(responder, text(f"/pause {FRIEND_BSUID}", ADMIN)) == 200
    assert bodies(graph)[-1].startswith(f"Paused {FRIEND_BSUID} until /resume")
    assert deliver(responder, text("are you a bot?", FRIEND_BSUID, to=FRIEND)) == 200
    assert model.chats() == [] and len(graph.sent()) == 1
    assert deliver(responder, text(f"/RESUME {FRIEND_BSUID}", ADMIN)) == 200
    assert bodies(graph)[-1] == f"Resumed answers for {FRIEND_BSUID}."
    assert deliver(responder, text("hello again", FRIEND_BSUID, to=FRIEND)) == 200
    [chat] = model.chats()
    assert [m["content"] for m in chat["messages"] if m["role"] == "user"] == [
        "are you a bot?",
        "hello again",
    ]


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("/pause 999999999d", "A pause of 999999999d would end after the year 9999"),
        (f"/pause {FRIEND} 99999999999999999999m", "A pause of 99999999999999999999m would end after"),
        (f"/pause {FRIEND} 0m", "A pause lasts at least 1 minute"),
    ],
)
def test_a_pause_no_calendar_holds_is_a_clear_answer_at_the_first_attempt(
    responder: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
    db: firestore.Client,
    command: str,
    answer: str,
) -> None:
    """One delivery, acknowledged, one answer that says what to send instead; nothing is paused."""
    assert deliver(responder, text(command, ADMIN)) == 200
    [reply] = bodies(graph)
    assert reply.startswith(answer)
    assert not db.document("controls/pause").get().exists
    assert deliver(responder, text("still there?", FRIEND)) == 200
    assert len(model.chats()) == 1


def test_pause_alone_pauses_everyone_for_a_while(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(responder, text("/pause 2h", ADMIN)) == 200
    assert bodies(graph)[-1].startswith("Paused everyone until ")
    assert deliver(responder, text("hello", FRIEND)) == 200
    assert model.chats() == [] and len(graph.sent()) == 1
    assert deliver(responder, text("/resume", ADMIN)) == 200
    assert deliver(responder, text("hello again", FRIEND)) == 200
    assert len(model.chats()) == 1


def test_a_timed_pause_ends_by_itself(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    """`/pause <user> 30m` and `/pause 2h` need no /resume: once their end has passed (moved into
    the past here, as time would), the bot reads and answers again."""
    assert deliver(responder, text(f"/pause {FRIEND} 30m", ADMIN)) == 200
    assert bodies(graph)[-1].startswith(f"Paused {FRIEND} until ")
    assert deliver(responder, text("are you there?", FRIEND)) == 200
    assert model.chats() == [] and len(graph.sent()) == 1
    pause = db.document("controls/pause")
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert isinstance(pause.get().get("users")[doc_id(FRIEND)], datetime)  # the end the bot wrote
    pause.set({"users": {doc_id(FRIEND): past}}, merge=True)
    assert deliver(responder, text("hello?", FRIEND)) == 200
    assert len(model.chats()) == 1 and bodies(graph)[-1].startswith("echo: ")

    assert deliver(responder, text("/pause 2h", ADMIN)) == 200
    assert deliver(responder, text("still there?", FRIEND)) == 200
    assert len(model.chats()) == 1
    pause.set({"all": past}, merge=True)
    assert deliver(responder, text("and now?", FRIEND)) == 200
    assert len(model.chats()) == 2


def test_reset_in_a_chat_a_human_has_taken_over_is_not_answered_and_wipes_nothing(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    """The human who took the chat over relies on its history: /reset while paused is neither
    answered nor obeyed (nor kept as the user's words), and the bot resumes with everything said."""
    user = FRIEND
    assert deliver(responder, text("my order number is 1234", user)) == 200
    assert deliver(responder, text(f"/pause {user}", ADMIN)) == 200
    assert deliver(responder, text("where is my order?", user)) == 200
    before = stored_turns(db, user)
    assert [t["content"] for t in before if t["role"] == "user"] == [
        "my order number is 1234",
        "where is my order?",
    ]
    reads = len(graph.reads())
    assert deliver(responder, text("/reset", user)) == 200
    assert stored_turns(db, user) == before
    assert len(graph.sent()) == 2 and len(graph.reads()) == reads  # no answer, no blue ticks
    assert deliver(responder, text(f"/resume {user}", ADMIN)) == 200
    assert deliver(responder, text("any news?", user)) == 200
    said = [m["content"] for m in model.chats()[-1]["messages"] if m["role"] == "user"]
    assert said == ["my order number is 1234", "where is my order?", "any news?"]
    assert DEFAULTS["RESET_TEXT"] not in bodies(graph)


def test_pause_from_anyone_else_is_text_for_the_model(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(responder, text(f"/pause {ADMIN}", FRIEND)) == 200
    [chat] = model.chats()
    assert chat["messages"][-1]["content"] == f"/pause {ADMIN}"
    assert deliver(responder, text("still there?", ADMIN)) == 200
    assert len(model.chats()) == 2


def test_an_answer_from_the_business_app_pauses_the_bot_for_that_chat(
    webhook: FunctionProcess,
    responder: FunctionProcess,
    topics: Topics,
    graph: FakeGraph,
    model: FakeOpenAI,
    db: firestore.Client,
) -> None:
    """Meta's smb_message_echoes (coexistence): value.message_echoes[] with from, to, id, timestamp."""
    echo = {"from": "15550783881", "to": FRIEND, "id": f"wamid.{uuid.uuid4().hex}", "type": "text"}
    echo.update(timestamp=str(int(time.time())), text={"body": "Hi, this is Sam from the shop"})
    metadata = {"display_phone_number": "15550783881", "phone_number_id": BUSINESS}
    value = {"messaging_product": "whatsapp", "metadata": metadata, "message_echoes": [echo]}
    change = {"field": "smb_message_echoes", "value": value}
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]})
    headers = signed_headers(body.encode(), APP_SECRET)
    assert requests.post(webhook.url, data=body.encode(), headers=headers, timeout=30).status_code == 200
    [received] = [Envelope.from_bytes(r.data) for r in topics.pull(TOPIC_AUDIO, expect=1)]
    assert (received.type, received.refused, received.user, received.text) == ("echo", "echo", FRIEND, None)
    assert deliver(responder, received) == 200
    assert deliver(responder, text("are you a bot?", FRIEND)) == 200
    assert list(graph.requests) == [] and model.chats() == []  # no read receipt for the echo either
    assert [t["content"] for t in stored_turns(db, FRIEND)] == ["are you a bot?"]


# --- replies that do not waste billed messages -------------------------------------------------


def test_a_six_part_reply_arrives_as_max_reply_parts(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.answer = lambda messages: " ".join(["word"] * 6 * 900)  # ~27,000 characters: 6+ parts
    assert deliver(responder, text("tell me everything")) == 200
    sent = bodies(graph)
    assert len(sent) == 3
    assert all(len(part) <= 4096 for part in sent)
    assert sent[-1].endswith("word\n\n(answer shortened)")


# --- voice-note seconds per day ----------------------------------------------------------------


@pytest.fixture(scope="module")
def transcriber(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    env = stand_in_env(
        emulators, graph, model, TRANSCRIBE_BACKEND="openai", MAX_AUDIO_SECONDS_PER_DAY="2", **GUARDS
    )
    function = serve("transcriber", env)
    yield function
    function.stop()


def test_voice_seconds_are_counted_and_a_user_at_the_limit_is_not_downloaded(
    transcriber: FunctionProcess,
    responder: FunctionProcess,
    topics: Topics,
    graph: FakeGraph,
    model: FakeOpenAI,
    db: firestore.Client,
) -> None:
    user = "15550004444"
    graph.add_media("4242", (AUDIO / "en_weather.ogg").read_bytes(), "audio/ogg; codecs=opus")
    note = replace(text("", user), type="audio", text=None, media=MediaRef("4242", "audio/ogg", None, True))
    assert deliver(transcriber, note) == 200
    [first] = [Envelope.from_bytes(r.data) for r in topics.pull(TOPIC_TEXT, expect=1)]
    assert first.transcript and 2 < (first.audio_seconds or 0) < 4  # transcribed: 0 s used so far
    assert deliver(responder, first) == 200
    stored = db.collection("conversations").document(doc_id(user)).get().to_dict()
    assert stored["usageAudio"] == pytest.approx(first.audio_seconds)
    graph.reset()
    second = replace(note, message_id=f"wamid.{uuid.uuid4().hex}")
    assert deliver(transcriber, second) == 200
    [held] = [Envelope.from_bytes(r.data) for r in topics.pull(TOPIC_TEXT, expect=1)]
    assert held.refused == "audio_limit" and held.media is None
    assert list(graph.requests) == []  # not even the media's metadata was asked for
    assert deliver(responder, held) == 200
    assert bodies(graph)[0].startswith("You have reached today's limit.")
    assert len(model.transcriptions()) == 1


# --- the simulator -----------------------------------------------------------------------------


def test_make_dev_names_a_simulator_admin_and_the_page_offers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from local.devconfig import SIMULATOR_ADMIN, Plan
    from local.simulator.server import create_app

    plan = Plan.from_settings(
        {
            "WEBHOOK_PORT": "0",
            "TRANSCRIBER_PORT": "0",
            "RESPONDER_PORT": "0",
            "PUBSUB_PORT": "0",
            "FIRESTORE_PORT": "0",
            "SIMULATOR_PORT": "0",
            "OFFLINE_MODEL_PORT": "0",
        }
    )
    assert plan.settings["ADMIN_USERS"] == SIMULATOR_ADMIN
    monkeypatch.setenv("ADMIN_USERS", f"+{SIMULATOR_ADMIN}")
    state = create_app("http://127.0.0.1:9/", "secret", "token").test_client().get("/api/state").get_json()
    assert state["admins"] == [SIMULATOR_ADMIN]
    assert {"key": SIMULATOR_ADMIN, "name": "Admin"}.items() <= next(
        u for u in state["users"] if u["key"] == SIMULATOR_ADMIN
    ).items()


def test_the_day_ends_at_midnight_in_limits_timezone() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from common.guard.policy import Policy

    policy = replace(Policy.from_env(), timezone=ZoneInfo("America/Los_Angeles"))
    late_evening = datetime(2026, 11, 27, 7, 30, tzinfo=UTC)  # 23:30 on the 26th in Los Angeles
    assert policy.day(late_evening) == "2026-11-26"
    assert policy.resets_at(late_evening) == "2026-11-27 00:00 PST"
    assert replace(policy, timezone=ZoneInfo("UTC")).day(late_evening) == "2026-11-27"
