"""`make dev` end to end: the whole local stack started by local.dev, driven through the simulator.

Everything real except WhatsApp itself and the model: emulators, push subscriptions, the three
functions, sphinx transcription; the simulator plays Meta and the Graph API, the offline
stand-in model answers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from local import dev
from local.cli import send
from local.emulators import REPO, free_port, port_is_free
from local.offline_model import LABEL
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.meta import fixture_bytes, signed_headers

AUDIO = REPO / "tests" / "audio"
ARTIFACTS = REPO / "build" / "test-artifacts"
ANY_PORT = {name: "0" for name in dev.PORTS}


@pytest.fixture(scope="module")
def stack() -> Iterator[dev.Stack]:
    """The stack exactly as make dev starts it, on free ports, its console kept as an artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "dev-stack.log").open("w") as console:
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


def descendants(root: int) -> set[int]:
    """Every live process below `root` (the functions' gunicorn workers, the java emulators…)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_make_dev_prints_one_ready_line_and_ctrl_c_leaves_nothing_behind() -> None:
    ports = {name: str(free_port()) for name in dev.PORTS}
    env = {**os.environ, **ports, "PYTHONUNBUFFERED": "1", "DOTENV": "/dev/null"}  # hermetic
    for key in ("WHATSAPP_API_BASE", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(key, None)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "local.dev"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout or []:
            lines.append(line)
            if line.startswith("WhatsBot is ready"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(90), "".join(lines[-20:])
        print(f"make dev ready after {time.monotonic() - started:.1f}s")
        ready_lines = [line for line in lines if line.startswith("WhatsBot is ready")]
        assert len(ready_lines) == 1
        assert f"http://127.0.0.1:{ports['SIMULATOR_PORT']}/" in ready_lines[0]
        assert f"http://127.0.0.1:{ports['WEBHOOK_PORT']}/" in ready_lines[0]
        url = f"http://127.0.0.1:{ports['SIMULATOR_PORT']}"
        assert LABEL in send(url, "15550000008", text="still there?", timeout=30)["replies"][0]["text"]
        children = descendants(process.pid)
        assert len(children) >= 7  # 2 emulators, 3 functions (+ workers), simulator, model
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0, "".join(lines[-20:])
    assert not [pid for pid in children if alive(pid)]
    assert all(port_is_free(int(port)) for port in ports.values())


def test_a_missing_prerequisite_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **ANY_PORT, "WEBHOOK_PORT": str(port), "DOTENV": "/dev/null"}
        done = subprocess.run(
            [sys.executable, "-m", "local.dev"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"make dev: port {port} (WEBHOOK_PORT) is already in use: stop what holds it or set WEBHOOK_PORT"
    ]
    no_java = {**env, "PATH": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-m", "local.dev"], cwd=REPO, env=no_java, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "java not found" in done.stderr and "Traceback" not in done.stderr


def test_pointed_at_real_whatsapp_and_a_local_model_server_no_simulator_no_stand_in() -> None:
    """WHATSAPP_API_BASE and OPENAI_BASE_URL set (stand-ins for graph.facebook.com and Ollama here)."""
    graph, model = FakeGraph(token="real-token"), FakeOpenAI()
    settings = {
        **ANY_PORT,
        "WHATSAPP_API_BASE": graph.url,
        "WHATSAPP_TOKEN": "real-token",
        "WHATSAPP_APP_SECRET": "real-secret",
        "WHATSAPP_VERIFY_TOKEN": "real-verify",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_MODEL": "llama3.2",
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console = (ARTIFACTS / "dev-stack-real.log").open("w")
    stack = dev.start_stack(settings, console)
    try:
        assert not stack.plan.simulator and not stack.plan.offline_model
        assert "SIMULATOR_PORT" not in stack.plan.ports and "OFFLINE_MODEL_PORT" not in stack.plan.ports
        hub = {"hub.mode": "subscribe", "hub.verify_token": "real-verify", "hub.challenge": "42"}
        assert requests.get(stack.webhook_url, params=hub, timeout=5).text == "42"  # Meta's handshake
        body = fixture_bytes("messages/text")  # what Meta POSTs through the tunnel
        answer = requests.post(
            stack.webhook_url, data=body, headers=signed_headers(body, "real-secret"), timeout=10
        )
        assert answer.status_code == 200
        deadline = time.monotonic() + 30
        while not graph.sent() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert graph.sent()[0]["text"]["body"].startswith("echo: ")  # the local server's answer
        assert model.chats()[0]["model"] == "llama3.2"
    finally:
        stack.stop()
        console.close()
        graph.close()
        model.close()


def test_dotenv_is_read_under_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport A=1\nB='two words'\nC=\nD=from-file\n")
    assert dev.load_dotenv(env_file) == {"A": "1", "B": "two words", "C": "", "D": "from-file"}
    merged = dev.environment({"D": "from-env", "A": ""}, dev.load_dotenv(env_file))
    assert merged == {"A": "1", "B": "two words", "D": "from-env"}
    with pytest.raises(dev.DevError, match="WHATSAPP_TOKEN"):
        dev.Plan.from_settings({**ANY_PORT, "WHATSAPP_API_BASE": "https://graph.facebook.com"})
