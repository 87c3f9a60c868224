"""`make bench`: measure the pipeline on this machine and print one table (JSON in bench/results/).

Everything runs on loopback: the official emulators, our functions under functions-framework,
and the Graph/OpenAI stand-ins from the test suite.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench import firestore_ops, imports, speech, voice
from bench.load import percentile
from bench.load import run as load
from local import emulators as emu
from local.functions import serve
from local.topics import wire_push
from tests.support.fakes import FakeGraph, FakeOpenAI
from tests.support.meta import fixture, signed_headers

HERE = Path(__file__).resolve().parent
PROJECT, SECRET = "whatsbot-bench", "bench-app-secret"
SENDERS = (1, 10, 50)
REQUESTS = {1: 200, 10: 600, 50: 1000}
SEED_MODEL_SECONDS = 1.0


def signed_text(index: int) -> tuple[bytes, dict[str, str]]:
    body = fixture("messages/text")
    value = body["entry"][0]["changes"][0]["value"]
    user = f"1555{index % 50:07d}"
    value["contacts"][0]["wa_id"] = user
    value["messages"][0].update({"id": f"wamid.bench{uuid.uuid4().hex}", "from": user})
    raw = json.dumps(body).encode()
    return raw, signed_headers(raw, SECRET)


def env_for(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    return {
        **emulators.env,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "WHATSAPP_APP_SECRET": SECRET,
        "WHATSAPP_TOKEN": graph.token,
        "WHATSAPP_API_BASE": graph.url,
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "bench",
        "TOPIC_AUDIO": "bench-audio",
        "TOPIC_TEXT": "bench-text",
    }


def guarded_env(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, str]:
    """Every guardrail on: admins (pauses), per-user limits, the whole bot's budget."""
    return {
        **env_for(emulators, graph, model),
        "ADMIN_USERS": "15550009999",
        "MAX_TURNS_PER_DAY": "1000",
        "MAX_TOKENS_PER_DAY": "1000000",
        "DAILY_TOKEN_BUDGET": "1000000000",
    }


def ack_latency(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> dict[str, Any]:
    """Ours (publish and wait) vs the bare framework vs the seed's synchronous design."""
    env = env_for(emulators, graph, model)
    from google.cloud import pubsub_v1

    with emu.pubsub_host(emulators.pubsub.address):
        publisher = pubsub_v1.PublisherClient()
        for topic in ("bench-audio", "bench-text"):
            publisher.create_topic(request={"name": publisher.topic_path(PROJECT, topic)})
    ours = serve("webhook", env)
    bare = serve("webhook", env, source=HERE / "bare" / "main.py")
    seed = serve("webhook", env, source=HERE / "seed" / "main.py")
    model.delay = SEED_MODEL_SECONDS
    rows: dict[str, Any] = {}
    try:
        for senders in SENDERS:
            total = REQUESTS[senders]
            row = {
                "ours": load(ours.url, signed_text, senders, total).__dict__,
                "bare": load(bare.url, signed_text, senders, total).__dict__,
                "seed": load(seed.url, signed_text, senders, min(total, 4 * senders + 50)).__dict__,
            }
            row["p99_ours_over_bare"] = round(row["ours"]["p99_ms"] / row["bare"]["p99_ms"], 2)
            row["p99_ours_over_seed"] = round(row["ours"]["p99_ms"] / row["seed"]["p99_ms"], 4)
            rows[str(senders)] = row
    finally:
        model.delay = 0.0
        for function in (ours, bare, seed):
            function.stop()
    return rows


def pipeline_overhead(
    emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI, count: int = 100
) -> dict:
    """Webhook POST → the reply at the Graph stand-in, minus the model's time, one at a time."""
    emulators.wipe(PROJECT)
    env = env_for(emulators, graph, model)
    webhook, responder = serve("webhook", env), serve("responder", env)
    wire_push(emulators.pubsub.address, PROJECT, {"bench-text": responder.url, "bench-audio": responder.url})
    graph.reset()
    model.reset()
    overheads = []
    try:
        for index in range(count + 5):
            body, headers = signed_text(index)
            message_id = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
            started = time.perf_counter()
            assert requests.post(webhook.url, data=body, headers=headers, timeout=30).status_code == 200
            while not any(s.get("context", {}).get("message_id") == message_id for s in graph.sent()):
                if time.perf_counter() - started > 30:
                    raise RuntimeError("no reply within 30 s")
                time.sleep(0.001)
            elapsed = time.perf_counter() - started - model.delay
            if index >= 5:  # the first few warm up the functions' clients
                overheads.append(elapsed * 1000)
    finally:
        webhook.stop()
        responder.stop()
    return {
        "messages": count,
        "p50_ms": round(statistics.median(overheads), 1),
        "p95_ms": round(percentile(overheads, 0.95), 1),
        "model_ms": model.delay * 1000,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        f"WhatsBot bench — {results['machine']['cores']} cores, Python {results['machine']['python']}",
        "",
    ]
    lines.append("webhook ack (signed POST, publish confirmed)    p50 ms   p99 ms   req/s  | p99 ratio")
    for senders, row in results["ack"].items():
        for name in ("ours", "bare", "seed"):
            r = row[name]
            ratio = {
                "ours": "",
                "bare": f"ours/bare {row['p99_ours_over_bare']}",
                "seed": f"ours/seed {row['p99_ours_over_seed']}",
            }[name]
            lines.append(
                f"  {senders:>2} senders  {name:<5}{'':27}{r['p50_ms']:>8} {r['p99_ms']:>8} "
                f"{r['per_second']:>7}  | {ratio}" + (f"  errors {r['errors']}" if r["errors"] else "")
            )
    p = results["pipeline"]
    lines += [
        "",
        f"pipeline overhead (POST → reply at Graph, minus model), {p['messages']} messages: "
        f"p50 {p['p50_ms']} ms, p95 {p['p95_ms']} ms",
    ]
    lines += ["", "cold import (fresh interpreter, median)"]
    for name, seconds in results["imports"].items():
        lines.append(f"  {name:<52} {seconds * 1000:>7.0f} ms")
    f = results["firestore"]
    lines += [
        "",
        f"Firestore per text turn: {f['reads']} reads, {f['writes']} writes "
        f"(redelivery of an answered one: {f['redelivery_reads']} reads, {f['redelivery_writes']} writes)",
    ]
    g = results["firestore_guarded"]
    lines.append(
        f"  with every guardrail on: {g['steady_reads']} reads, {g['steady_writes']} writes per turn;"
        f" once per GUARDRAILS_CACHE_SECONDS per instance {g['reads']} reads (budget shards, pauses)"
    )
    s = results["speech"]
    lines += [
        "",
        f"sphinx real-time factor: {s['sphinx_rtf']} (work s per audio s, {s['audio_seconds']} s of audio)",
        f"openai path: {s['openai_conversions']} conversions, "
        f"bytes sent identical: {s['openai_bytes_identical']} ({s['openai_filename']})",
    ]
    v = results["voice"]
    lines += [
        "",
        f"voice reply, offline synthesizer, {v['chars']} characters: spoken in {v['speak_ms']} ms, "
        f"uploaded in {v['upload_ms']} ms (total {v['total_ms']} ms); {v['bytes']} bytes for "
        f"{v['seconds']} s of speech = {v['bytes_per_second']} bytes/s; re-encoded: {v['reencoded']}",
    ]
    return "\n".join(lines)


def main() -> None:
    results: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "when": time.strftime("%F %T"),
        }
    }
    graph, model = FakeGraph(), FakeOpenAI()
    try:
        with emu.running() as emulators:
            os.environ.update({**emulators.env, "GOOGLE_CLOUD_PROJECT": PROJECT})
            results["ack"] = ack_latency(emulators, graph, model)
            results["pipeline"] = pipeline_overhead(emulators, graph, model)
            results["firestore"] = firestore_ops.per_turn(emulators, env_for(emulators, graph, model))
            results["firestore_guarded"] = firestore_ops.per_turn(
                emulators, guarded_env(emulators, graph, model)
            )
            results["speech"] = speech.measure(env_for(emulators, graph, model), graph, model)
        results["imports"] = imports.measure()
        results["voice"] = voice.measure(graph)
    finally:
        graph.close()
        model.close()
    out = HERE / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)  # not in git: results are per machine
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nsaved {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
