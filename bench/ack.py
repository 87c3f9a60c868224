"""Webhook ack latency: ours next to the floor webhooks and a bare function, rounds interleaved.

All three are served the same way (functions-framework, its default gunicorn settings) against
the same Pub/Sub emulator, and get the same signed requests; each round runs every contender
once (in a rotated order) and the median round is reported, so one noisy round cannot decide.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.load import http_post
from bench.load import run as load
from local.functions import FunctionProcess, serve
from tests.support.meta import fixture, signed_headers

HERE = Path(__file__).resolve().parent
SENDERS = (1, 10, 50)
REQUESTS = {1: 300, 10: 1000, 50: 2000}
ROUNDS = 7  # interleaved; at 50 senders a single round scatters by +-8 % on 2 cores
SEED_SENDERS, SEED_MODEL_SECONDS = 50, 1.0


def signed_text(index: int, secret: str) -> tuple[bytes, dict[str, str]]:
    """A text message from one of 50 users, with a fresh id, signed as Meta signs it."""
    body = fixture("messages/text")
    value = body["entry"][0]["changes"][0]["value"]
    user = f"1555{index % 50:07d}"
    value["contacts"][0]["wa_id"] = user
    # sent now: the responder acknowledges old messages without answering (MAX_MESSAGE_AGE_HOURS)
    now = str(int(time.time()))
    value["messages"][0].update({"id": f"wamid.bench{uuid.uuid4().hex}", "from": user, "timestamp": now})
    raw = json.dumps(body).encode()
    return raw, signed_headers(raw, secret)


def requests_for(url: str, count: int, secret: str) -> list[bytes]:
    return [http_post(url, *signed_text(index, secret)) for index in range(count)]


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (errors summed)."""
    keys = ("p50_ms", "p99_ms", "per_second")
    median = {key: round(statistics.median(r[key] for r in rounds), 2) for key in keys}
    return {**median, "errors": sum(r["errors"] for r in rounds), "rounds": rounds}


def measure(env: dict[str, str], secret: str, model: Any) -> dict[str, Any]:
    """{senders: {ours, floor, direct, bare: median round, ratios}} plus the seed at 50 senders."""
    contenders: dict[str, FunctionProcess] = {}
    try:
        contenders["ours"] = serve("webhook", env)
        contenders["floor"] = serve("webhook", env, source=HERE / "floor" / "webhook.py")
        contenders["direct"] = serve("webhook", env, source=HERE / "floor" / "webhook_direct.py")
        contenders["bare"] = serve("webhook", env, source=HERE / "bare" / "main.py")
        for function in contenders.values():  # first requests build the clients
            load(function.url, requests_for(function.url, 50, secret), 5)
        rows: dict[str, Any] = {}
        for senders in SENDERS:
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
            names = list(contenders)
            for round_index in range(ROUNDS):
                for name in names[round_index:] + names[:round_index]:
                    url = contenders[name].url
                    batch = requests_for(url, REQUESTS[senders], secret)
                    results[name].append(load(url, batch, senders).__dict__)
            row: dict[str, Any] = {name: median_round(rounds) for name, rounds in results.items()}
            ours, bare = row["ours"], row["bare"]
            for name in ("floor", "direct"):
                row[f"p99_ours_over_{name}"] = round(ours["p99_ms"] / row[name]["p99_ms"], 2)
                row[f"rate_ours_over_{name}"] = round(ours["per_second"] / row[name]["per_second"], 2)
            row["p99_ours_over_bare"] = round(ours["p99_ms"] / bare["p99_ms"], 2)
            rows[str(senders)] = row
    finally:
        for function in contenders.values():
            function.stop()
    seed = serve("webhook", env, source=HERE / "seed" / "main.py")
    model.delay = SEED_MODEL_SECONDS
    try:
        rows["seed"] = load(seed.url, requests_for(seed.url, SEED_SENDERS, secret), SEED_SENDERS).__dict__
        ours_p99 = rows[str(SEED_SENDERS)]["ours"]["p99_ms"]
        rows["seed"]["p99_ours_over_seed"] = round(ours_p99 / rows["seed"]["p99_ms"], 4)
    finally:
        model.delay = 0.0
        seed.stop()
    return rows
