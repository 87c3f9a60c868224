"""What grounding costs a turn: the retrieval alone (one embeddings call at the loopback stand-in,
one vector query on the Firestore emulator) and the Firestore reads it is billed for.

Reads per grounded turn, as Firestore bills a vector query: 1 per passage returned plus 1 per
100 index entries read; the flat index is scanned whole, so that is ceil(passages / 100); plus
the pointer, 1 read per KNOWLEDGE_CACHE_SECONDS per instance (counted here as a turn's share at
one turn a second). Latency on the emulator is not Google Cloud's and the stand-in answers on
loopback: OpenAI's embeddings add their own round trip (typically 100-300 ms from a region near
the API) on top of what is measured here.

    python -m bench.knowledge            (make bench runs it too)
"""

from __future__ import annotations

import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
from google.cloud import firestore

from bench.load import percentile
from common.knowledge.embeddings import Embedder
from common.knowledge.retrieval import Knowledge
from common.knowledge.sync import Sync
from local import emulators as emu
from tests.support.fakes import FakeOpenAI

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
PROJECT = "whatsbot-bench"


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


def measure(emulators: emu.Emulators, model: FakeOpenAI) -> dict[str, Any]:
    """Retrieval p50/p95 and reads per turn for the example business and a base of 2,000 passages."""
    os.environ.update({**emulators.env, "GOOGLE_CLOUD_PROJECT": PROJECT, "KNOWLEDGE_MIN_SIMILARITY": "0.2"})
    sdk = openai.OpenAI(base_url=model.base_url, api_key="bench", max_retries=0)
    db = firestore.Client(project=PROJECT)
    results: dict[str, Any] = {}
    try:
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


def main() -> None:
    model = FakeOpenAI()
    try:
        with emu.running() as emulators:
            for name, row in measure(emulators, model).items():
                print(
                    f"knowledge {name:>7}: {row['passages']} passages, synced in {row['sync_s']} s; retrieval"
                    f" p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms; {row['returned_mean']} passages"
                    f" returned; {row['reads_per_turn']} Firestore reads per grounded turn"
                )
    finally:
        model.close()


if __name__ == "__main__":
    main()
