"""`make dev` end to end: the whole local stack started by local.dev, driven through the simulator.

Everything real except WhatsApp itself and the model: emulators, push subscriptions, the three
functions, sphinx transcription; the simulator plays Meta and the Graph API, the offline
stand-in model answers. Also what the stack promises around that: the simulator only for the
developer's own browser, every port on loopback, deploy.sh's subscription shape, Meta's retries
and statuses. `make dev` as a process (start, stop, a dying part): tests/test_make_dev.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests

from common import log
from common.store.claims import doc_id
from local import dev
from local import emulators as emu
from local.cli import send
from local.emulators import REPO, free_port
from local.functions import serve
from local.offline_model import LABEL
from local.simulator.meta import Meta, message_payload
from local.simulator.state import ChatMessage, User, wamid
from tests.support.wait import poll

AUDIO = REPO / "tests" / "audio"
ARTIFACTS = REPO / "build" / "test-artifacts"
ANY_PORT = {name: "0" for name in dev.PORTS}


class Console(io.TextIOBase):
    """make dev's console: kept as an artifact, and its lines in memory for the tests to read."""

    def __init__(self, path: Path) -> None:
        self.file, self.lines = path.open("w"), []

    def write(self, text: str) -> int:
        self.file.write(text)
        self.lines.extend(text.splitlines())
        return len(text)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        super().close()  # flushes
        self.file.close()

    def of(self, name: str) -> list[str]:
        """The lines one process printed (`webhook`, `simulator`, …), without the name column."""
        return [line.split(" | ", 1)[1] for line in list(self.lines) if line.strip().startswith(f"{name} |")]


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = Console(ARTIFACTS / "dev-stack.log")
    yield out
    out.close()


@pytest.fixture(scope="module")
def stack(console: Console) -> Iterator[dev.Stack]:
    """The stack exactly as make dev starts it, on free ports, its console kept as an artifact."""
    try:
        stack = dev.start_stack(ANY_PORT, console)
    except dev.DevError as exc:
        pytest.fail(f"make dev could not start: {exc}", pytrace=False)
    yield stack
    stack.stop()


def say(stack: dev.Stack, user: str, text: str, timeout: float = 30) -> dict[str, Any]:
    answer = send(stack.simulator_url, user, text=text, timeout=timeout)
    assert answer["replies"], f"no reply to {text!r} within {timeout}s"
    return answer


def turn_number(reply: str) -> int:
    found = re.search(r"message (\d+) of this conversation", reply)
    assert found, reply
    return int(found.group(1))


def test_a_typed_text_comes_back_as_the_models_reply_quoted(stack: dev.Stack) -> None:
    answer = say(stack, "15550000001", "hello from the e2e test")
    reply = answer["replies"][0]
    assert reply["text"].startswith(LABEL)
    assert "hello from the e2e test" in reply["text"]
    assert reply["context_id"] == answer["message"]["id"]  # quoted
    state = requests.get(f"{stack.simulator_url}api/state", timeout=5).json()
    mine = {m["id"]: m for m in state["messages"]}
    assert mine[answer["message"]["id"]]["status"] == "read"  # the bot marked it read


def test_a_voice_note_comes_back_transcribed_and_answered_through_the_cli(stack: dev.Stack) -> None:
    note = str(AUDIO / "en_weather.ogg")
    argv = ["send", "--user", "15550000002", "--name", "Vo Ice", "--audio", note, "--timeout", "60"]
    done = subprocess.run(
        [sys.executable, "-m", "local.cli", *argv, "--url", stack.simulator_url],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    reply = done.stdout.lower()
    assert LABEL in reply
    spoken = ["what", "is", "the", "weather", "like", "in", "london", "tomorrow", "morning"]
    heard = sum(word in reply for word in spoken)
    assert heard >= 0.6 * len(spoken), reply  # sphinx, offline: most of the words


@pytest.mark.parametrize(
    ("upload", "voice", "stored_as"),
    [
        ("en_weather.m4a", "auto", "audio/mp4"),  # an audio file WhatsApp delivers as it is
        ("en_weather.webm", "1", "audio/ogg; codecs=opus"),  # Chromium's recording, made OGG/Opus
    ],
)
def test_audio_uploads_become_what_whatsapp_delivers(
    stack: dev.Stack, tmp_path: Path, upload: str, voice: str, stored_as: str
) -> None:
    path = AUDIO / upload
    if upload.endswith(".webm"):  # what MediaRecorder records in Chromium: Opus in WebM
        import imageio_ffmpeg

        path = tmp_path / upload
        argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(AUDIO / "en_weather.ogg")]
        subprocess.run([*argv, "-c:a", "copy", "-f", "webm", str(path)], check=True, timeout=60)
    with path.open("rb") as file:
        answer = requests.post(
            f"{stack.simulator_url}api/messages",
            params={"wait": "60"},
            headers={"X-Simulator-Token": stack.simulator_token},
            data={"user": "15550000003", "voice": voice},
            files={"audio": (upload, file)},
            timeout=90,
        ).json()
    assert answer["message"]["mime_type"] == stored_as
    assert answer["message"]["voice"] == (voice == "1")
    assert "weather" in answer["replies"][0]["text"].lower()


def test_reset_forgets_the_conversation(stack: dev.Stack) -> None:
    user = "15550000004"
    assert turn_number(say(stack, user, "one")["replies"][0]["text"]) == 1
    assert turn_number(say(stack, user, "two")["replies"][0]["text"]) == 2
    confirmation = say(stack, user, "/reset")["replies"][0]["text"]
    assert not confirmation.startswith(LABEL)  # the responder answers commands itself
    assert turn_number(say(stack, user, "three")["replies"][0]["text"]) == 1


def test_two_users_conversations_stay_apart(stack: dev.Stack) -> None:
    users = ["15550000005", "4915550000006"]

    def talk(user: str) -> list[dict[str, Any]]:
        return [say(stack, user, f"{user} says {n}") for n in (1, 2, 3)]

    with ThreadPoolExecutor(2) as pool:
        talks = dict(zip(users, pool.map(talk, users), strict=True))
    for user, answers in talks.items():
        for n, answer in enumerate(answers, 1):
            reply = answer["replies"][0]
            assert reply["user"] == user
            assert f"{user} says {n}" in reply["text"]
            assert turn_number(reply["text"]) == n  # the other user's turns are not in this history


def test_a_user_known_only_by_a_business_scoped_id_is_answered(stack: dev.Stack) -> None:
    answer = say(stack, "US.13491208655302741918", "hi from a username")
    assert answer["replies"][0]["user"] == "US.13491208655302741918"  # sent with `recipient`
    assert "hi from a username" in answer["replies"][0]["text"]


def test_the_graph_api_side_checks_the_token_and_answers_like_graph(stack: dev.Stack) -> None:
    graph = f"{stack.simulator_url}graph/v25.0"
    token = {"Authorization": f"Bearer {dev.LOCAL_DEFAULTS['WHATSAPP_TOKEN']}"}
    refused = requests.get(f"{graph}/1234567890", timeout=5)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == 190 and refused.json()["error"]["fbtrace_id"]
    unknown = requests.get(f"{graph}/1234567890", headers=token, timeout=5).json()["error"]
    assert (unknown["code"], unknown["error_subcode"]) == (100, 33)
    stranger = {"messaging_product": "whatsapp", "to": "19990000000", "type": "text", "text": {"body": "x"}}
    sent = requests.post(f"{graph}/106540352242922/messages", json=stranger, headers=token, timeout=5)
    assert sent.json()["error"]["code"] == 131030  # not a user of the simulator


def test_the_cli_exits_non_zero_without_a_reply(stack: dev.Stack) -> None:
    from local import cli

    url = ["--url", stack.simulator_url]
    assert cli.main(["send", "--user", "15550000007", "--text", "hi", "--timeout", "0.001", *url]) == 1
    assert (
        cli.main(["send", "--user", "1555", "--text", "x", "--url", f"http://127.0.0.1:{free_port()}"]) == 2
    )


def test_other_sites_and_foreign_hosts_cannot_use_the_simulator(stack: dev.Stack) -> None:
    """Any page may POST a form to 127.0.0.1, and a DNS-rebinding page may read answers: both refused."""
    url, port = stack.simulator_url, stack.plan.ports["SIMULATOR_PORT"]
    token = {"X-Simulator-Token": stack.simulator_token}
    user, evil, rebound = "15550000012", {"Origin": "https://evil.example"}, {"Host": f"evil.example:{port}"}

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{url}{path}", timeout=60, **kwargs)

    # What <form method=post enctype=multipart/form-data action=http://127.0.0.1:8090/api/messages> sends
    note = {"audio": ("page.webm", b"\x1aE\xdf\xa3" + bytes(2000))}
    form = call("POST", "api/messages", headers=evil, data={"user": user, "voice": "1"}, files=note)
    assert form.status_code == 403 and "cross-origin" in form.json()["error"]
    text = {"user": user, "text": "x"}
    assert (
        call("POST", "api/messages", headers={**token, **evil}, json=text).status_code == 403
    )  # Origin alone
    no_token = call("POST", "api/messages", json=text)
    assert no_token.status_code == 403 and "X-Simulator-Token" in no_token.json()["error"]
    assert call("GET", "api/state", headers=rebound).status_code == 403
    assert call("GET", "api/session", headers=rebound).status_code == 403
    assert call("POST", "api/users", headers={**rebound, **token}, json={"phone": user}).status_code == 403
    too_big = call("POST", "api/messages", headers=token, json={"user": user, "text": "x" * 300_000})
    assert too_big.status_code == 413
    assert user not in [u["key"] for u in call("GET", "api/state").json()["users"]]  # none of it got through
    page = call("GET", "")  # the chat page itself (tests/test_browser.py drives it)
    assert page.status_code == 200 and stack.simulator_token in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    own = {**token, "Origin": url.rstrip("/")}  # what the page's own fetch() sends
    sent = call("POST", "api/messages", params={"wait": "30"}, headers=own, json={**text, "text": "hi"})
    assert sent.status_code == 200 and sent.json()["replies"]


LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def listening() -> dict[int, set[str]]:
    """Port -> the local addresses (hex, as /proc/net/tcp* shows them) of sockets listening on it."""
    found: dict[int, set[str]] = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                address, port = fields[1].split(":")
                found.setdefault(int(port, 16), set()).add(address)
    return found


def test_every_port_of_the_stack_listens_on_loopback_only(stack: dev.Stack) -> None:
    sockets = listening()
    for name, port in stack.plan.ports.items():
        assert sockets.get(port), f"{name} {port} is not listening"
        assert sockets[port] <= LOOPBACK_HEX, f"{name} {port} listens on {sockets[port]}"


def test_a_web_page_cannot_call_the_pub_sub_driven_functions(stack: dev.Stack) -> None:
    """A no-cors POST (text/plain) of a structured CloudEvent: functions-framework would run it."""
    user = "4915112345678"
    envelope = {"message_id": wamid(user), "user": user, "to": user, "type": "text", "text": "forged"}
    envelope |= {"phone_number_id": "106540352242922", "timestamp": int(time.time())}
    data = base64.b64encode(json.dumps(envelope).encode()).decode()
    event = {"specversion": "1.0", "type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//x"}
    event |= {
        "id": "1",
        "data": {"message": {"data": data, "attributes": {"message_id": envelope["message_id"]}}},
    }
    for port in ("TRANSCRIBER_PORT", "RESPONDER_PORT"):
        for origin in ({"Origin": "https://evil.example"}, {}):
            headers = {"Content-Type": "text/plain", **origin}
            answer = requests.post(stack.plan.url(port), data=json.dumps(event), headers=headers, timeout=30)
            assert answer.status_code == 403, (port, origin, answer.status_code)


def test_the_push_subscriptions_have_deploy_shape(stack: dev.Stack) -> None:
    """Ordered, dead letters after 5 attempts, back-off 10..600 s, 7 days; dead letters to the responder."""
    from google.cloud import pubsub_v1

    project = f"projects/{stack.plan.settings['GOOGLE_CLOUD_PROJECT']}"
    with emu.pubsub_host(stack.emulators.pubsub.address):
        subscriber = pubsub_v1.SubscriberClient()
    try:
        found = {
            s.name.rsplit("/", 1)[1]: s for s in subscriber.list_subscriptions(request={"project": project})
        }
    finally:
        subscriber.close()
    dead_letters = f"{project}/topics/whatsbot-dead-letter"
    for topic, port in (("whatsapp-audio", "TRANSCRIBER_PORT"), ("whatsapp-text", "RESPONDER_PORT")):
        pushed = found[f"{topic}-push"]
        assert pushed.topic == f"{project}/topics/{topic}"
        assert pushed.push_config.push_endpoint == stack.plan.url(port)
        assert pushed.enable_message_ordering
        assert pushed.dead_letter_policy.dead_letter_topic == dead_letters
        assert pushed.dead_letter_policy.max_delivery_attempts == 5
        retry = pushed.retry_policy
        assert (retry.minimum_backoff, retry.maximum_backoff) == (
            timedelta(seconds=10),
            timedelta(seconds=600),
        )
        assert pushed.ack_deadline_seconds == 120  # ATTEMPT_TIMEOUT_SECONDS, as deploy.sh's function timeout
        assert pushed.message_retention_duration == timedelta(days=7)
    apology = found["whatsbot-dead-letter-apology"]
    assert apology.topic == dead_letters and apology.push_config.push_endpoint == stack.plan.url(
        "RESPONDER_PORT"
    )
    assert not apology.dead_letter_policy.dead_letter_topic  # nothing loops
    assert found["whatsbot-dead-letter-inspect"].topic == dead_letters
    status = found["whatsapp-status-push"]  # Meta's statuses of sent parts: they wait behind nothing
    assert status.topic == f"{project}/topics/whatsapp-status"
    assert status.push_config.push_endpoint == stack.plan.url("RESPONDER_PORT")
    assert not status.enable_message_ordering and not status.dead_letter_policy.dead_letter_topic
    assert status.message_retention_duration == timedelta(minutes=10)


def test_the_simulator_reports_sent_delivered_and_read_to_the_webhook(
    stack: dev.Stack, console: Console
) -> None:
    """As Meta does, with only a digest of the id in the simulator's own log lines."""
    user = "15550000013"
    answer = say(stack, user, "tick, tick")
    reply_id = answer["replies"][0]["id"]
    page = {"X-Simulator-Token": stack.simulator_token}
    shown = requests.post(f"{stack.simulator_url}api/read", headers=page, json={"user": user}, timeout=10)
    assert shown.ok  # the page showed the reply: WhatsApp reports it read

    def reported() -> set[str]:  # the statuses the webhook acknowledged for the bot's reply
        named = f"message_id={log.digest(reply_id)}"
        lines = [line for line in console.of("webhook") if " status " in line and named in line]
        return {m.group(1) for line in lines if (m := re.search(r" status=(\w+)", line))}

    assert poll(lambda: reported() >= {"sent", "delivered", "read"}, 60, "sent, delivered and read statuses")
    digest = log.digest(reply_id)
    own = console.of("simulator")
    for status in ("sent", "delivered", "read"):
        wanted = (f"status={status} message_id={digest}", "answer=200")
        assert [line for line in own if all(w in line for w in wanted)], f"no {status} line: {own}"
    assert not [line for line in own if "wamid." in line or user in line]  # neither raw ids nor numbers
    state = requests.get(f"{stack.simulator_url}api/state", timeout=10).json()
    assert [m["status"] for m in state["messages"] if m["id"] == reply_id] == ["read"]
    # The reply's callback data came back with its statuses: the responder recorded the part sent.
    from google.cloud import firestore

    claim_id = doc_id(answer["message"]["id"])
    [callback] = [m["callback"] for m in state["messages"] if m["id"] == reply_id]
    assert callback == f"wb1:{claim_id}:0"
    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": stack.emulators.firestore.address}):
        db = firestore.Client(project=stack.plan.settings["GOOGLE_CLOUD_PROJECT"])
    try:
        sent = db.collection("sent").document(claim_id)
        assert poll(lambda: (sent.get().to_dict() or {}).get("parts") == [0], 30, "the part recorded sent")
    finally:
        db.close()


def test_the_simulator_retries_a_webhook_post_until_it_is_answered_200(stack: dev.Stack) -> None:
    """Like Meta: the real webhook answers 503 while its topic is missing; a retry after that is queued."""
    from google.cloud import pubsub_v1

    topic = "retry-inbound"  # the webhook's one topic (TOPIC_AUDIO: every message enters by it)
    env = {**stack.plan.function_env(stack.emulators), "TOPIC_AUDIO": topic, "TOPIC_TEXT": f"{topic}-text"}
    webhook = serve("webhook", env)
    user = User("15550000014", "Retry")
    message = ChatMessage(wamid(user.key), user.key, "user", "text", time.time(), text="are you there?")
    delivered: list[tuple[bool, str]] = []
    meta = Meta(webhook.url, env["WHATSAPP_APP_SECRET"], retry_delays=(0.5, 1, 2, 4, 8, 16, 30))
    poster = threading.Thread(
        target=lambda: delivered.append(meta.post(message_payload(user, message, None, "")))
    )
    project = stack.plan.settings["GOOGLE_CLOUD_PROJECT"]
    with emu.pubsub_host(stack.emulators.pubsub.address):
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        poster.start()
        poll(lambda: "publishing failed" in webhook.log_text(), 60, "a first POST answered 503")
        publisher.create_topic(request={"name": publisher.topic_path(project, topic)})
        queue = subscriber.subscription_path(project, f"{topic}-check")
        subscriber.create_subscription(request={"name": queue, "topic": publisher.topic_path(project, topic)})
        poster.join(timeout=120)
        assert delivered == [(True, "")]
        log_text = webhook.log_text()
        assert log_text.count("publishing failed") >= 1 and log_text.count("message queued") == 1
        pulled = subscriber.pull(request={"subscription": queue, "max_messages": 10}, timeout=30)
        assert [m.message.attributes["message_id"] for m in pulled.received_messages] == [message.id]
    finally:
        poster.join(timeout=120)
        webhook.stop()
        subscriber.close()
        publisher.transport.close()
