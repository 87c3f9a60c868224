"""`make dev` as a process: one ready line, a clean stop, a dead part stops the rest, clear refusals.

Also make dev pointed at real WhatsApp and a local model server (stand-ins here), where Meta's
first POST may come the moment the webhook's port opens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
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
from tests.support.wait import poll

ARTIFACTS = REPO / "build" / "test-artifacts"
ANY_PORT = {name: "0" for name in dev.PORTS}


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


class MakeDev:
    """`python -m local.dev` (what `make dev` runs) on free ports; its stdout and stderr read live."""

    def __init__(self) -> None:
        self.ports = {name: str(free_port()) for name in dev.PORTS}
        env = {**os.environ, **self.ports, "PYTHONUNBUFFERED": "1", "DOTENV": "/dev/null"}  # hermetic
        for key in ("WHATSAPP_API_BASE", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
            env.pop(key, None)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.dev"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout or []:
            self.lines.append(line)
            if line.startswith("WhatsBot is ready"):
                self.ready.set()

    def wait_ready(self) -> None:
        assert self.ready.wait(90), "".join(self.lines[-20:])
        print(f"make dev ready after {time.monotonic() - self.started:.1f}s")

    def children(self) -> set[int]:
        return descendants(self.process.pid)

    def end(self) -> int:
        """Ctrl-C (if still running); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


def test_make_dev_prints_one_ready_line_and_ctrl_c_leaves_nothing_behind() -> None:
    make_dev = MakeDev()
    ports, lines = make_dev.ports, make_dev.lines
    try:
        make_dev.wait_ready()
        ready_lines = [line for line in lines if line.startswith("WhatsBot is ready")]
        assert len(ready_lines) == 1
        assert f"http://127.0.0.1:{ports['SIMULATOR_PORT']}/" in ready_lines[0]
        assert f"http://127.0.0.1:{ports['WEBHOOK_PORT']}/" in ready_lines[0]
        url = f"http://127.0.0.1:{ports['SIMULATOR_PORT']}"
        assert LABEL in send(url, "15550000008", text="still there?", timeout=30)["replies"][0]["text"]
        children = make_dev.children()
        assert len(children) >= 7  # 2 emulators, 3 functions (+ workers), simulator, model
    finally:
        code = make_dev.end()
    assert code == 0, "".join(lines[-20:])
    assert not [pid for pid in children if alive(pid)]
    assert all(port_is_free(int(port)) for port in ports.values())


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_a_process_of_make_dev_that_dies_stops_the_rest() -> None:
    """The responder killed (as the OOM killer would): the emulators and the others end, exit status 1."""
    make_dev = MakeDev()
    try:
        make_dev.wait_ready()
        children = make_dev.children()
        direct = [pid for pid in children if parent(pid) == make_dev.process.pid]
        responder = [pid for pid in direct if "--target=respond" in command_line(pid)]
        assert len(responder) == 1, [command_line(pid) for pid in direct]
        os.kill(responder[0], signal.SIGKILL)
        code = make_dev.process.wait(timeout=90)
    finally:
        make_dev.end()
    console = "".join(make_dev.lines)
    assert code == 1, console[-2000:]
    assert "make dev: responder stopped unexpectedly (log above); stopping the rest" in console
    assert not [pid for pid in children if alive(pid)], [command_line(pid) for pid in children if alive(pid)]
    assert all(port_is_free(int(port)) for port in make_dev.ports.values())


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


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


def test_make_dev_refuses_a_lease_that_a_living_attempt_could_lose() -> None:
    env = {**os.environ, **ANY_PORT, "DOTENV": "/dev/null"}
    env |= {"CLAIM_LEASE_SECONDS": "9", "CLAIM_RENEW_SECONDS": "4"}
    done = subprocess.run(
        [sys.executable, "-m", "local.dev"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "make dev: CLAIM_LEASE_SECONDS=9 must be at least 2 x CLAIM_RENEW_SECONDS (4) +"
        " CLAIM_LEASE_MARGIN_SECONDS (2.25), with renewals more often than never and the margin not"
        " negative: raise CLAIM_LEASE_SECONDS or renew more often"
    ]
    assert dev.Plan.from_settings(ANY_PORT)  # the defaults: 20 >= 2 x 5 + 5
    # An attempt may now run longer than the lease: the heartbeat keeps it.
    assert dev.Plan.from_settings({**ANY_PORT, "CLAIM_LEASE_SECONDS": "8", "ATTEMPT_TIMEOUT_SECONDS": "300"})
    with pytest.raises(dev.DevError, match="CLAIM_RENEW_SECONDS must be a number"):
        dev.Plan.from_settings({**ANY_PORT, "CLAIM_RENEW_SECONDS": "2m"})


def post_when_the_port_opens(port: int, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """POST to the webhook the instant its port accepts a connection; the answer lands in the dict."""
    found: dict[str, Any] = {}

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.001)
                continue
            found["answer"] = requests.post(
                f"http://127.0.0.1:{port}/", data=body, headers=headers, timeout=60
            )
            return

    found["thread"] = threading.Thread(target=run, daemon=True)
    found["thread"].start()
    return found


def test_pointed_at_real_whatsapp_and_a_local_model_server_no_simulator_no_stand_in() -> None:
    """WHATSAPP_API_BASE and OPENAI_BASE_URL set (stand-ins for graph.facebook.com and Ollama here).

    Meta's first POST comes the moment the webhook's port accepts: it is queued (200), never 503.
    """
    graph, model = FakeGraph(token="real-token"), FakeOpenAI()
    webhook_port = free_port()
    settings = {
        **ANY_PORT,
        "WEBHOOK_PORT": str(webhook_port),
        "WHATSAPP_API_BASE": graph.url,
        "WHATSAPP_TOKEN": "real-token",
        "WHATSAPP_APP_SECRET": "real-secret",
        "WHATSAPP_VERIFY_TOKEN": "real-verify",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_MODEL": "llama3.2",
        "MAX_MESSAGE_AGE_HOURS": "0",  # the corpus fixture is dated May 2026: not stale here
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console = (ARTIFACTS / "dev-stack-real.log").open("w")
    body = fixture_bytes("messages/text")  # what Meta POSTs through the tunnel
    early = post_when_the_port_opens(webhook_port, body, signed_headers(body, "real-secret"))
    stack = dev.start_stack(settings, console)  # from this thread: its processes die with the thread
    try:
        early["thread"].join(timeout=60)
        assert early["answer"].status_code == 200, early["answer"].text  # queued, not 503
        assert not stack.plan.simulator and not stack.plan.offline_model
        assert "SIMULATOR_PORT" not in stack.plan.ports and "OFFLINE_MODEL_PORT" not in stack.plan.ports
        hub = {"hub.mode": "subscribe", "hub.verify_token": "real-verify", "hub.challenge": "42"}
        assert requests.get(stack.webhook_url, params=hub, timeout=5).text == "42"  # Meta's handshake
        sent = poll(graph.sent, 60, "the reply to the first POST")
        assert sent[0]["text"]["body"].startswith("echo: ")  # the local server's answer
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
