"""What grounding costs a turn: a whole responder turn with and without a knowledge base, the
retrieval alone (one embeddings call at the loopback stand-in, one vector query on the Firestore
emulator), and the Firestore reads it is billed for.

Reads per grounded turn, as Firestore bills a vector query: 1 per passage returned plus 1 per
100 index entries read; the flat index is scanned whole, so that is ceil(passages / 100); plus
the pointer, 1 read per KNOWLEDGE_CACHE_SECONDS per instance (counted here as a turn's share at
one turn a second). Latency on the emulator is not Google Cloud's and the stand-in answers on
loopback: OpenAI's embeddings add their own round trip (typically 100-300 ms from a region near
the API) on top of what is measured here.

The turn: two warm responders under functions-framework, one whose project has the example
business's knowledge base and one whose project has none, the push body POSTed to each in turn,
timed to the reply at the Graph stand-in (the model answers at once), as bench/pipeline.py's
`responder_turn`. The retrieval starts alongside the claim, so the turn pays only what is left.

    python -m bench.knowledge            (make bench runs it too: BENCH_ONLY=knowledge)
"""

from __future__ import annotations

import math
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import requests
from google.cloud import firestore

from bench.load import percentile
from bench.pipeline import replied
from common.bus.envelope import Envelope
from common.bus.events import event_for
from common.knowledge.embeddings import Embedder
from common.knowledge.retrieval import Knowledge
from common.knowledge.sync import Sync
from local import emulators as emu
from local.functions import serve
from tests.support.fakes import FakeGraph, FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "harbour-bikes" / "knowledge"
QUESTIONS = [
    "When are you open on Saturday?",
    "How much does an electric bike cost for a day?",
    "Do I need to pay a deposit?",
    "Can you fix a flat tyre?",
    "Can I cancel my booking?",
    "Do you sell cars?",
]
TURNS, WARM_UP = 200, 10
PROJECT, BARE = "whatsbot-bench", "whatsbot-bench-bare"  # with a knowledge base, and without
NUMBER = "106540352242922"


def synthetic(folder: Path, documents: int, sections: int) -> Path:
    """A folder of `documents` Markdown files of `sections` sections each: one passage a section."""
    words = [
        "bike",
        "rental",
        "price",
        "hour",
        "open",
        "deposit",
        "repair",
        "tyre",
        "battery",
        "helmet",
        "lock",
        "ferry",
        "quay",
    ]
    rng = random.Random(7)
    for d in range(documents):
        parts = [f"# Document {d}"]
        for s in range(sections):
            text = " ".join(rng.choice(words) for _ in range(60))
            parts.append(f"## Section {s}\n\n{text}.")
        (folder / f"doc-{d:04d}.md").write_text("\n\n".join(parts))
    return folder


def retrievals(db: firestore.Client, sdk: openai.OpenAI, passages: int) -> dict[str, Any]:
    knowledge = Knowledge(db, sdk)
    times, returned = [], []
    for index in range(TURNS + WARM_UP):
        started = time.perf_counter()
        found = knowledge.retrieve([], QUESTIONS[index % len(QUESTIONS)], time.monotonic() + 30)
        if index >= WARM_UP:
            times.append((time.perf_counter() - started) * 1000)
            returned.append(len(found.passages))
    mean_returned = statistics.mean(returned)
    pointer = 1 / knowledge.cache_seconds if knowledge.cache_seconds else 1
    return {
        "passages": passages,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(percentile(times, 0.95), 1),
        "returned_mean": round(mean_returned, 2),
        "reads_per_turn": round(mean_returned + math.ceil(passages / 100) + pointer, 2),
    }


def turns(env: dict[str, str], graph: FakeGraph) -> dict[str, Any]:
    """p50/p95 of a responder turn with the example's knowledge base and without one, alternating."""
    projects = {"grounded": PROJECT, "bare": BARE}
    functions = {name: serve("responder", {**env, "GOOGLE_CLOUD_PROJECT": p}) for name, p in projects.items()}
    times: dict[str, list[float]] = {name: [] for name in projects}
    session = requests.Session()
    try:
        for index in range(TURNS + WARM_UP):
            for name in list(projects)[index % 2 :] + list(projects)[: index % 2]:
                message_id, user = f"wamid.kb{uuid.uuid4().hex}", f"1999{index % 50:07d}"
                question = QUESTIONS[index % len(QUESTIONS)]
                push = event_for(Envelope(message_id, user, user, NUMBER, "text", int(time.time()), question))
                done = replied(graph, message_id)
                started = time.perf_counter()
                answer = session.post(functions[name].url, json=push, timeout=30)
                if not done.wait(30) or answer.status_code >= 300:
                    raise RuntimeError(f"{name}: no reply ({answer.status_code})")
                if index >= WARM_UP:
                    times[name].append((time.perf_counter() - started) * 1000)
    finally:
        for function in functions.values():
            function.stop()
    result: dict[str, Any] = {"messages": TURNS}
    for name, measured in times.items():
        result[name] = {
            "p50_ms": round(statistics.median(measured), 1),
            "p95_ms": round(percentile(measured, 0.95), 1),
        }
    result["added_p50_ms"] = round(result["grounded"]["p50_ms"] - result["bare"]["p50_ms"], 1)
    result["added_p95_ms"] = round(result["grounded"]["p95_ms"] - result["bare"]["p95_ms"], 1)
    return result


def measure(
    emulators: emu.Emulators, model: FakeOpenAI, graph: FakeGraph, env: dict[str, str]
) -> dict[str, Any]:
    """A turn with and without grounding; retrieval p50/p95 and reads per turn for the example
    business and a base of 2,000 passages."""
    os.environ.update({**emulators.env, "GOOGLE_CLOUD_PROJECT": PROJECT, "KNOWLEDGE_MIN_SIMILARITY": "0.2"})
    sdk = openai.OpenAI(base_url=model.base_url, api_key="bench", max_retries=0)
    db = firestore.Client(project=PROJECT)
    results: dict[str, Any] = {}
    try:
        for project in (PROJECT, BARE):
            emu.wipe_firestore(emulators.firestore, project)
        Sync(db, Embedder(sdk=sdk), say=lambda line: None).run(EXAMPLE)
        results["turn"] = turns({**env, "KNOWLEDGE_MIN_SIMILARITY": "0.2"}, graph)
        with tempfile.TemporaryDirectory() as scratch:
            for name, folder in (("example", EXAMPLE), ("2000", synthetic(Path(scratch), 100, 20))):
                emu.wipe_firestore(emulators.firestore, PROJECT)
                started = time.perf_counter()
                summary = Sync(db, Embedder(sdk=sdk), say=lambda line: None).run(folder)
                sync_seconds = time.perf_counter() - started
                total = summary.passages.added
                results[name] = {**retrievals(db, sdk, total), "sync_s": round(sync_seconds, 1)}
    finally:
        db.close()
    return results


def lines(results: dict[str, Any]) -> list[str]:
    """make bench's table rows."""
    t, g, b = results["turn"], results["turn"]["grounded"], results["turn"]["bare"]
    out = [
        f"grounding (knowledge base of the example business), responder turn alone, {t['messages']} messages",
        f"  without a knowledge base p50 {b['p50_ms']:>6} ms   p95 {b['p95_ms']:>6} ms",
        f"  with one (grounded)      p50 {g['p50_ms']:>6} ms   p95 {g['p95_ms']:>6} ms"
        f"   | grounding adds p50 {t['added_p50_ms']} ms, p95 {t['added_p95_ms']} ms",
    ]
    for name in ("example", "2000"):
        row = results[name]
        out.append(
            f"  retrieval alone, {row['passages']:>5} passages: p50 {row['p50_ms']} ms,"
            f" p95 {row['p95_ms']} ms;"
            f" {row['returned_mean']} returned; {row['reads_per_turn']} Firestore reads per grounded turn"
            f" (synced in {row['sync_s']} s)"
        )
    return out


def main() -> None:
    from bench.run import env_for

    graph, model = FakeGraph(), FakeOpenAI()
    try:
        with emu.running() as emulators:
            print("\n".join(lines(measure(emulators, model, graph, env_for(emulators, graph, model)))))
    finally:
        graph.close()
        model.close()


if __name__ == "__main__":
    main()
