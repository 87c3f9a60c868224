"""`make bench`: measure the pipeline on this machine and print one table (JSON in bench/results/).

Everything runs on loopback: the official emulators, our functions under functions-framework,
the floor functions in bench/floor/ (the least each step must do) and the Graph/OpenAI stand-ins
from the test suite.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ack, actions, firestore_ops, imports, knowledge, pipeline, speech, voice
from local import emulators as emu
from tests.support.fakes import FakeGraph, FakeOpenAI

HERE = Path(__file__).resolve().parent
PROJECT, SECRET = "whatsbot-bench", "bench-app-secret"


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


def create_topics(emulators: emu.Emulators, *topics: str) -> None:
    from google.cloud import pubsub_v1

    with emu.pubsub_host(emulators.pubsub.address):
        publisher = pubsub_v1.PublisherClient()
        for topic in topics:
            publisher.create_topic(request={"name": publisher.topic_path(PROJECT, topic)})
        publisher.transport.close()


def table(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        f"WhatsBot bench - {machine['cores']} cores, Python {machine['python']}, load {machine['load']}",
        "",
    ]
    lines.append(f"webhook ack (signed POST, publish confirmed), median of {ack.ROUNDS} interleaved rounds")
    lines.append("  senders  who      p50 ms   p99 ms    req/s  | ours/floor p99, req/s | ours/bare p99")
    for senders in map(str, ack.SENDERS):
        row = results["ack"][senders]
        for name in ("ours", "floor", "direct", "bare"):
            r = row[name]
            ratio = {
                "ours": "",
                "floor": f"{row['p99_ours_over_floor']:>14}x {row['rate_ours_over_floor']:>5.0%}",
                "direct": f"{row['p99_ours_over_direct']:>14}x {row['rate_ours_over_direct']:>5.0%}",
                "bare": f"{'':23}| {row['p99_ours_over_bare']}x",
            }[name]
            errors = f"  errors {r['errors']}" if r["errors"] else ""
            figures = f"{r['p50_ms']:>8} {r['p99_ms']:>8} {r['per_second']:>8}"
            lines.append(f"  {senders:>7}  {name:<6}{figures}  | {ratio}{errors}")
    seed = results["ack"]["seed"]
    lines.append(
        f"  seed design (waits for a {ack.SEED_MODEL_SECONDS:g} s model), {seed['senders']} senders: "
        f"p99 {seed['p99_ms']} ms; ours/seed {seed['p99_ours_over_seed']}"
    )
    p = results["pipeline"]
    lines += [
        "",
        f"pipeline (POST -> reply at Graph, model at 0 s), {p['messages']} messages, "
        f"median of {p['rounds']} rounds",
        f"  ours   p50 {p['ours']['p50_ms']:>6} ms   p95 {p['ours']['p95_ms']:>6} ms",
        f"  direct p50 {p['direct']['p50_ms']:>6} ms   p95 {p['direct']['p95_ms']:>6} ms"
        f"   | transcriber's hop: p50 +{p['hop_p50_ms']} ms, p95 +{p['hop_p95_ms']} ms",
        f"  floor  p50 {p['floor']['p50_ms']:>6} ms   p95 {p['floor']['p95_ms']:>6} ms"
        f"   | ours/floor p50 {p['p50_ours_over_floor']}x, p95 {p['p95_ours_over_floor']}x",
    ]
    t = results["turn"]
    lines += [
        f"responder turn alone (push POSTed to it -> reply; claim, history, model, store, send), "
        f"{t['messages']} messages",
        f"  ours   p50 {t['ours']['p50_ms']:>6} ms   p95 {t['ours']['p95_ms']:>6} ms",
        f"  floor  p50 {t['floor']['p50_ms']:>6} ms   p95 {t['floor']['p95_ms']:>6} ms"
        f"   | ours/floor p50 {t['p50_ours_over_floor']}x, p95 {t['p95_ours_over_floor']}x",
    ]
    h = results["hand_on"]
    lines.append(
        f"transcriber handing a text on alone (push POSTed to it -> publish confirmed), {h['messages']} "
        f"messages: p50 {h['p50_ms']} ms, p95 {h['p95_ms']} ms"
    )
    c = results["cold"]
    lines += [
        "",
        f"responder cold start, exec -> first reply (median of {pipeline.COLD_ROUNDS}): ours {c['ours']} ms, "
        f"floor {c['floor']} ms, ours/floor {c['ours_over_floor']}x",
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
    a = results["actions"]
    lines += [
        "",
        f"one action round (the call, its stored result, a second model call), {a['messages']} messages: "
        f"p50 +{a['round_p50_ms']} ms beyond the endpoint's own {a['endpoint_p50_ms']} ms "
        f"(turn p50 {a['action']['p50_ms']} ms against {a['tools']['p50_ms']} ms); "
        f"offering the tools: {a['tools_p50_ms']:+} ms",
    ]
    v = results["voice"]
    lines += [
        "",
        f"voice reply, offline synthesizer, {v['chars']} characters: spoken in {v['speak_ms']} ms, "
        f"uploaded in {v['upload_ms']} ms (total {v['total_ms']} ms); {v['bytes']} bytes for "
        f"{v['seconds']} s of speech = {v['bytes_per_second']} bytes/s; re-encoded: {v['reencoded']}",
    ]
    lines += ["", *knowledge.lines(results["knowledge"])]
    return "\n".join(lines)


def main() -> None:
    results: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "when": time.strftime("%F %T"),
            "load": round(os.getloadavg()[0], 2),
        }
    }
    everything = "ack,pipeline,cold,firestore,speech,imports,voice,actions,knowledge"
    only = set(os.environ.get("BENCH_ONLY", everything).split(","))
    graph, model = FakeGraph(), FakeOpenAI()
    try:
        with emu.running() as emulators:
            os.environ.update({**emulators.env, "GOOGLE_CLOUD_PROJECT": PROJECT})
            env = env_for(emulators, graph, model)
            if "ack" in only:
                create_topics(emulators, "bench-audio", "bench-text")
                results["ack"] = ack.measure(env, SECRET, model)
                emulators.wipe(PROJECT)
            if "pipeline" in only:  # creates the topics it pushes from, bench-audio and bench-text too
                results["pipeline"] = pipeline.overhead(PROJECT, emulators.pubsub.address, env, graph, SECRET)
                results["turn"] = pipeline.responder_turn(env, graph)
                results["hand_on"] = pipeline.hand_on(env)
            else:
                create_topics(emulators, "bench-audio", "bench-text")
            if "cold" in only:
                results["cold"] = pipeline.cold_start(env, graph)
            if "firestore" in only:
                results["firestore"] = firestore_ops.per_turn(emulators, env)
                results["firestore_guarded"] = firestore_ops.per_turn(
                    emulators, guarded_env(emulators, graph, model)
                )
            if "speech" in only:
                results["speech"] = speech.measure(env, graph, model)
            if "actions" in only:
                with tempfile.TemporaryDirectory() as folder:
                    results["actions"] = actions.measure(env, graph, model, Path(folder))
            if "knowledge" in only:
                results["knowledge"] = knowledge.measure(emulators, model, graph, env)
        if "imports" in only:
            results["imports"] = imports.measure()
        if "voice" in only:
            results["voice"] = voice.measure(graph)
    finally:
        graph.close()
        model.close()
    out = HERE / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)  # not in git: results are per machine
    out.write_text(json.dumps(results, indent=2))
    if only == set(everything.split(",")):
        print(table(results))
    else:
        print(json.dumps({k: v for k, v in results.items()}, indent=1)[:20000])
    print(f"\nsaved {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
