"""The whole text path against its floor: webhook POST → reply at the Graph stand-in, and a fresh
responder process from exec to its first reply.

Ours: our webhook → Pub/Sub push → our transcriber (which hands a text on: one publish) → push →
our responder (claim, read receipt, history, model, store, send, done). Direct: the same without
the transcriber's hop (the webhook's topic pushed straight to the responder, as before every
message passed the transcriber's ordered topic): the difference is what keeping a user's order
across types costs a text. The floor chain: the floor webhook → push → the floor responder (model,
send). All against the same emulators and stand-ins, the model answering at once, rounds interleaved.
"""

from __future__ import annotations

import base64
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.load import percentile
from common.bus.envelope import Envelope
from common.bus.events import event_for
from local.emulators import free_port
from local.functions import FunctionProcess, serve
from local.topics import wire_push
from tests.support.fakes import FakeGraph, Recorded
from tests.support.meta import fixture, signed_headers

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ROUNDS, MESSAGES, WARM_UP = 3, 100, 5
COLD_ROUNDS = 5
NUMBER, SUBSCRIPTION = "106540352242922", "projects/p/subscriptions/s"


def replied(graph: FakeGraph, message_id: str) -> threading.Event:
    """An event set when the Graph stand-in has answered the text reply quoting `message_id`."""
    event = threading.Event()

    def matches(request: Recorded) -> bool:
        if not FakeGraph.is_text_send(request):
            return False
        return request.json().get("context", {}).get("message_id") == message_id

    graph.on(matches, event.set, after_answer=True)
    return event


def text_post(index: int, secret: str) -> tuple[str, bytes, dict[str, str]]:
    body = fixture("messages/text")
    value = body["entry"][0]["changes"][0]["value"]
    user = f"1666{index % 50:07d}"
    message_id = f"wamid.pipe{uuid.uuid4().hex}"
    value["contacts"][0]["wa_id"] = user
    # sent now: the responder acknowledges old messages without answering (MAX_MESSAGE_AGE_HOURS)
    value["messages"][0].update({"id": message_id, "from": user, "timestamp": str(int(time.time()))})
    raw = json.dumps(body).encode()
    return message_id, raw, signed_headers(raw, secret)


def _one_message(url: str, graph: FakeGraph, secret: str, session: requests.Session, index: int) -> float:
    """Milliseconds from POST to the reply's arrival at the Graph stand-in."""
    message_id, body, headers = text_post(index, secret)
    done = replied(graph, message_id)
    started = time.perf_counter()
    assert session.post(url, data=body, headers=headers, timeout=30).status_code == 200
    if not done.wait(30):
        raise RuntimeError("no reply within 30 s")
    return (time.perf_counter() - started) * 1000


def overhead(project: str, pubsub: str, env: dict[str, str], graph: FakeGraph, secret: str) -> dict[str, Any]:
    """p50/p95 of ours and the floor chain, messages interleaved; each the median over rounds."""
    chains: dict[str, tuple[FunctionProcess, FunctionProcess]] = {}
    transcriber = None
    try:
        transcriber = serve("transcriber", env)
        chains["ours"] = (serve("webhook", env), serve("responder", env))
        chains["direct"] = (serve("webhook", {**env, "TOPIC_AUDIO": "bench-direct"}), chains["ours"][1])
        floor_env = {**env, "TOPIC_TEXT": "bench-floor"}
        chains["floor"] = (
            serve("webhook", floor_env, source=HERE / "floor" / "webhook.py"),
            serve("responder", floor_env, source=HERE / "floor" / "responder.py"),
        )
        routes = {
            env["TOPIC_AUDIO"]: transcriber.url,
            env["TOPIC_TEXT"]: chains["ours"][1].url,
            "bench-direct": chains["ours"][1].url,
            "bench-floor": chains["floor"][1].url,
        }
        wire_push(pubsub, project, routes)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in chains}
        session = requests.Session()
        for _ in range(ROUNDS):  # message by message, alternating who goes first: same conditions
            values: dict[str, list[float]] = {name: [] for name in chains}
            for index in range(MESSAGES + WARM_UP):
                turn = index % len(chains)  # who goes first rotates
                for name in list(chains)[turn:] + list(chains)[:turn]:
                    elapsed = _one_message(chains[name][0].url, graph, secret, session, index)
                    if index >= WARM_UP:  # the first few build the functions' clients
                        values[name].append(elapsed)
            for name, measured in values.items():
                figures[name].append((statistics.median(measured), percentile(measured, 0.95)))
    finally:
        running = [transcriber] if transcriber else []
        for chain in chains.values():  # `direct` shares the responder of `ours`
            running += [f for f in chain if all(f is not r for r in running)]
        for function in running:
            function.stop()
    result: dict[str, Any] = {"messages": MESSAGES, "rounds": ROUNDS}
    for name, rounds in figures.items():
        result[name] = {
            "p50_ms": round(statistics.median(r[0] for r in rounds), 1),
            "p95_ms": round(statistics.median(r[1] for r in rounds), 1),
            "rounds": rounds,
        }
    result["p50_ours_over_floor"] = round(result["ours"]["p50_ms"] / result["floor"]["p50_ms"], 2)
    result["p95_ours_over_floor"] = round(result["ours"]["p95_ms"] / result["floor"]["p95_ms"], 2)
    result["hop_p50_ms"] = round(result["ours"]["p50_ms"] - result["direct"]["p50_ms"], 1)
    result["hop_p95_ms"] = round(result["ours"]["p95_ms"] - result["direct"]["p95_ms"], 1)
    return result


def _ours_push(message_id: str, user: str) -> dict[str, Any]:
    return event_for(Envelope(message_id, user, user, NUMBER, "text", int(time.time()), "hello"))


def _floor_push(message_id: str, user: str) -> dict[str, Any]:
    message = {"id": message_id, "from": user, "text": {"body": "hello"}, "phone_number_id": NUMBER}
    data = base64.b64encode(json.dumps(message).encode()).decode()
    return {"message": {"data": data, "messageId": message_id[-16:]}, "subscription": SUBSCRIPTION}


Push = Callable[[str, str], dict[str, Any]]


def _cold_once(env: dict[str, str], graph: FakeGraph, source: Path | None, push: Push) -> float:
    """Seconds from exec of a fresh responder process to its first reply at the Graph stand-in."""
    port, message_id = free_port(), f"wamid.cold{uuid.uuid4().hex}"
    user = f"1777{uuid.uuid4().int % 10**7:07d}"
    done = replied(graph, message_id)

    def post_when_listening() -> None:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.002)
        requests.post(f"http://127.0.0.1:{port}/", json=push(message_id, user), timeout=60)

    started = time.perf_counter()
    poster = threading.Thread(target=post_when_listening, daemon=True)
    poster.start()
    function = serve("responder", env, port=port, source=source)
    try:
        if not done.wait(60):
            raise RuntimeError(f"no first reply within 60 s: {function.log_text()[-1000:]}")
        return time.perf_counter() - started
    finally:
        poster.join(5)
        function.stop()


def responder_turn(env: dict[str, str], graph: FakeGraph) -> dict[str, Any]:
    """The responders alone, warm: the push body POSTed straight to each (no emulator push, whose
    delivery tick dominates the chain), to the reply at the Graph stand-in; messages alternate."""
    cases = {"ours": (None, _ours_push), "floor": (HERE / "floor" / "responder.py", _floor_push)}
    functions = {}
    values: dict[str, list[float]] = {name: [] for name in cases}
    session = requests.Session()
    try:
        for name, (source, _) in cases.items():
            functions[name] = serve("responder", env, source=source)
        for index in range(ROUNDS * MESSAGES + WARM_UP):
            for name in list(cases)[index % 2 :] + list(cases)[: index % 2]:
                message_id, user = f"wamid.turn{uuid.uuid4().hex}", f"1888{index % 50:07d}"
                done = replied(graph, message_id)
                started = time.perf_counter()
                answer = session.post(functions[name].url, json=cases[name][1](message_id, user), timeout=30)
                if not done.wait(30) or answer.status_code >= 300:
                    raise RuntimeError(f"{name}: no reply ({answer.status_code})")
                if index >= WARM_UP:
                    values[name].append((time.perf_counter() - started) * 1000)
    finally:
        for function in functions.values():
            function.stop()
    result: dict[str, Any] = {"messages": ROUNDS * MESSAGES}
    for name, measured in values.items():
        result[name] = {
            "p50_ms": round(statistics.median(measured), 1),
            "p95_ms": round(percentile(measured, 0.95), 1),
        }
    result["p50_ours_over_floor"] = round(result["ours"]["p50_ms"] / result["floor"]["p50_ms"], 2)
    result["p95_ours_over_floor"] = round(result["ours"]["p95_ms"] / result["floor"]["p95_ms"], 2)
    return result


def hand_on(env: dict[str, str]) -> dict[str, Any]:
    """The transcriber alone, warm, handing a text on: the push body POSTed straight to it, to its
    200 (the publish to the text topic confirmed). What our code adds to a text's extra hop, beside
    Pub/Sub's own delivery (the difference between `ours` and `direct` above)."""
    function = serve("transcriber", env)
    session, values = requests.Session(), []
    try:
        for index in range(ROUNDS * MESSAGES + WARM_UP):
            push = _ours_push(f"wamid.hand{uuid.uuid4().hex}", f"1999{index % 50:07d}")
            started = time.perf_counter()
            answer = session.post(function.url, json=push, timeout=30)
            if answer.status_code >= 300:
                raise RuntimeError(f"transcriber: {answer.status_code} {function.log_text()[-500:]}")
            if index >= WARM_UP:
                values.append((time.perf_counter() - started) * 1000)
    finally:
        function.stop()
    return {
        "messages": ROUNDS * MESSAGES,
        "p50_ms": round(statistics.median(values), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
    }


def compile_sources() -> None:
    """Byte-compile what the responders import, as Cloud Functions' build does (the Python
    functions-framework buildpack runs `python3 -m compileall -f -q .` on the source): a cold
    instance reads .pyc files, it does not compile. Without this, the first round after an edit
    would time the compiler."""
    sources = [REPO / "common", REPO / "functions" / "responder", HERE / "floor"]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, sources)], check=True)


def cold_start(env: dict[str, str], graph: FakeGraph) -> dict[str, Any]:
    """Median over interleaved rounds: ours and the floor responder, exec → first reply."""
    compile_sources()
    cases = {"ours": (None, _ours_push), "floor": (HERE / "floor" / "responder.py", _floor_push)}
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(COLD_ROUNDS + 1):
        for name, (source, push) in cases.items():
            elapsed = _cold_once(env, graph, source, push)
            if round_:  # round 0 warms the stand-ins and the emulator (its first REST call: ~0.4 s)
                seconds[name].append(elapsed)
    result: dict[str, Any] = {name: round(statistics.median(v) * 1000) for name, v in seconds.items()}
    result["rounds_ms"] = {name: [round(v * 1000) for v in values] for name, values in seconds.items()}
    result["ours_over_floor"] = round(result["ours"] / result["floor"], 2)
    return result
