"""The passages for one turn: one embeddings call and one vector query, or nothing at all.

Whether a knowledge base exists is the pointer document (common/knowledge/base.py), read once per
KNOWLEDGE_CACHE_SECONDS [30] per instance: without one, a turn makes no embeddings call and no
vector query, and at most 1 read per 30 s. With one, a turn with words embeds, in one request,
the user's words and their KNOWLEDGE_QUERY_TURNS [2] previous messages; the query vector is the
words' plus KNOWLEDGE_CONTEXT_WEIGHT [0.3] times the earlier messages', so "and the day after?"
still finds Saturday's hours while "Can you fix a flat tyre?" after them finds the repairs, not
the hours (joining the texts would let the earlier topic win). It asks Firestore for the
KNOWLEDGE_TOP_K [4] nearest passages by cosine distance, none below KNOWLEDGE_MIN_SIMILARITY.
Firestore bills that query 1 read per passage returned plus 1 per 100 vectors its (flat) index
scans, i.e. per passage of the base.

KNOWLEDGE_MIN_SIMILARITY defaults by model (DEFAULT_MIN_SIMILARITY): 0.30 for OpenAI's
text-embedding-3 models, whose question-to-passage similarities run ~0.4-0.7 for a passage that
answers and ~0.05-0.2 for an unrelated one, so 0.30 keeps what answers and drops noise; `make
eval` on the business's own cases is how to tune it.

Failures: one a later try may fix (no answer from the API or Firestore in time, 429, 5xx; an
operator's outage such as a refused key, alerted once by common/ai/openai_client.py) is
KnowledgeUnavailable, for a redelivery; a refusal of this request alone, or a vector query
Firestore refuses (a missing or building index), is logged as an ERROR and the turn goes on with
no passage, so the model says it does not know rather than guessing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from common import config, log
from common.knowledge import base
from common.knowledge.embeddings import Embedder, EmbeddingsRefused, EmbeddingsUnavailable
from common.knowledge.grounding import Found, Grounding
from common.store import db as store

if TYPE_CHECKING:
    import openai
    from google.cloud import firestore

DEFAULT_MIN_SIMILARITY = {"text-embedding-3-small": 0.30, "text-embedding-3-large": 0.30}
DEFAULT_MIN_SIMILARITY["offline-stand-in"] = 0.20  # local/offline_embeddings.py: shared words, not meaning
QUERY_CHARS = 2000  # of the words, and of the earlier messages: the latest kept
FIELDS = ["title", "heading", "text", "document"]  # the vector itself is not fetched back
DISTANCE = "distance"  # the projection must name it too, or the query returns no distance


class KnowledgeUnavailable(Exception):
    """The embeddings API or Firestore did not answer in time (or 429/5xx): retry the turn later."""


def _on(name: str) -> bool:
    return (config.get(name) or "on").lower() not in ("off", "false", "0", "no")


class Knowledge:
    """Per instance: the cached pointer, the Firestore client, one embedder per model."""

    def __init__(self, db: firestore.Client | None = None, sdk: openai.OpenAI | None = None) -> None:
        self.top_k = int(config.number("KNOWLEDGE_TOP_K", 4))
        if not 1 <= self.top_k <= 1000:
            raise RuntimeError(f"KNOWLEDGE_TOP_K must be 1..1000 (Firestore's limit), got {self.top_k}")
        given = config.get("KNOWLEDGE_MIN_SIMILARITY")
        self.min_similarity = config.number("KNOWLEDGE_MIN_SIMILARITY") if given else None
        self.cache_seconds = config.number("KNOWLEDGE_CACHE_SECONDS", 30)
        self.earlier = int(config.number("KNOWLEDGE_QUERY_TURNS", 2))
        self.context_weight = config.number("KNOWLEDGE_CONTEXT_WEIGHT", 0.3)
        self.timeout = config.number("KNOWLEDGE_TIMEOUT_SECONDS", 10)
        self.cite, self.label = _on("KNOWLEDGE_CITE"), config.get("KNOWLEDGE_CITE_LABEL") or ""
        self._db, self._sdk = (
            db,
            sdk,
        )  # None: the instance's own (common/store/db.py, common/ai/openai_client.py)
        self._cached: tuple[float, base.Active | None] | None = None
        self._lock = threading.Lock()
        self._embedders: dict[tuple[str, int | None], Embedder] = {}

    @property
    def db(self) -> firestore.Client:
        if self._db is None:
            self._db = store.client()  # the instance's one client (common/store/db.py)
        return self._db

    def active(self, timeout: float | None = None) -> base.Active | None:
        """The live knowledge base, re-read at most every KNOWLEDGE_CACHE_SECONDS (1 read)."""
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now < cached[0]:
            return cached[1]
        try:
            active = base.read_active(self.db, **_budget(timeout or self.timeout))
        except Exception as exc:
            if _retriable(exc):
                raise KnowledgeUnavailable(type(exc).__name__) from exc
            raise
        with self._lock:
            self._cached = (now + self.cache_seconds, active)
        return active

    def threshold(self, model: str) -> float:
        """The lowest cosine similarity a passage may have: the setting, else the model's default."""
        if self.min_similarity is not None:
            return self.min_similarity
        return DEFAULT_MIN_SIMILARITY.get(model, 0.30)

    def retrieve(
        self, turns: Sequence[dict[str, Any]], words: str | None, deadline: float | None = None
    ) -> Grounding:
        """The grounding for a turn: inactive without a knowledge base (no call made), passages
        for words, none for a turn without words."""
        active = self.active(timeout=self._left(deadline))
        if active is None:
            return Grounding(active=False)
        grounded = Grounding(active=True, cite_sources=self.cite, label=self.label)
        inputs = query_texts(turns, words, self.earlier)
        if not inputs:
            return grounded
        started = time.perf_counter()
        try:
            # one request for both texts; one retry, both tries within what is left
            vectors = self._embedder(active).embed(inputs, timeout=self._left(deadline) / 2, retries=1)
            found = self._nearest(active, self._combined(vectors), self._left(deadline))
        except EmbeddingsRefused as exc:
            log.error("knowledge: embeddings refused, answering without passages", **log.failure(exc))
            return grounded
        except EmbeddingsUnavailable as exc:
            raise KnowledgeUnavailable(str(exc)) from exc
        except Exception as exc:
            if _retriable(exc):
                raise KnowledgeUnavailable(type(exc).__name__) from exc
            log.error("knowledge: vector query failed, answering without passages", **log.failure(exc))
            return grounded
        best = round(found[0].similarity, 3) if found else None
        ms = round((time.perf_counter() - started) * 1000)
        log.info("knowledge: retrieved", passages=len(found), best=best, ms=ms)
        return Grounding(True, tuple(found), self.cite, self.label)

    def _nearest(self, active: base.Active, vector: list[float], timeout: float) -> list[Found]:
        from google.cloud.firestore_v1.base_vector_query import DistanceMeasure
        from google.cloud.firestore_v1.vector import Vector

        threshold = self.threshold(active.model)
        query = base.passages(self.db, active.generation).select([*FIELDS, DISTANCE])
        nearest = query.find_nearest(
            vector_field=base.VECTOR_FIELD,
            query_vector=Vector(vector),
            distance_measure=DistanceMeasure.COSINE,
            limit=self.top_k,
            distance_result_field=DISTANCE,
            distance_threshold=1 - threshold,  # COSINE distance is 1 - similarity
        )
        found = []
        for snapshot in nearest.get(**_budget(timeout)):
            data = snapshot.to_dict() or {}
            similarity = 1 - float(data.get(DISTANCE, 1))
            if similarity >= threshold:  # the threshold again: also where a server ignores it
                title, heading, text, document = (str(data.get(name) or "") for name in FIELDS)
                found.append(Found(title, heading, text, similarity, document))
        return found

    def _combined(self, vectors: list[list[float]]) -> list[float]:
        """The words' vector, leaning KNOWLEDGE_CONTEXT_WEIGHT towards the earlier messages'
        (both unit vectors; a cosine query needs no normalising)."""
        if len(vectors) == 1:
            return vectors[0]
        words, earlier = vectors
        return [w + self.context_weight * e for w, e in zip(words, earlier, strict=True)]

    def _embedder(self, active: base.Active) -> Embedder:
        """The knowledge base's own model and size: a query vector must match the stored ones."""
        key = (active.model, active.dimensions)
        if key not in self._embedders:
            self._embedders[key] = Embedder(active.model, active.dimensions, sdk=self._sdk)
        return self._embedders[key]

    def _left(self, deadline: float | None) -> float:
        left = self.timeout if deadline is None else min(self.timeout, deadline - time.monotonic())
        if left < 0.5:
            raise KnowledgeUnavailable("no time left in this attempt")
        return left


def query_texts(turns: Sequence[dict[str, Any]], words: str | None, earlier: int) -> list[str]:
    """[the user's words, their `earlier` previous messages] (the latter left out when there are
    none; [] without words). The bot's own replies are not part of it."""
    said = " ".join((words or "").split())[-QUERY_CHARS:]
    if not said:
        return []
    users = [" ".join(str(t.get("content") or "").split()) for t in turns if t.get("role") == "user"]
    before = "\n".join(u for u in (users[-earlier:] if earlier > 0 else []) if u)[-QUERY_CHARS:]
    return [said, before] if before else [said]


def _budget(seconds: float) -> dict[str, Any]:
    """The store's retry policy for a read, within `seconds` (and the attempt's deadline)."""
    budget = store.reading()
    budget["timeout"] = min(budget["timeout"], seconds)
    return budget


def _retriable(exc: BaseException) -> bool:
    """A Firestore failure a later try may get past (unavailable, timed out, overloaded)."""
    from google.api_core import exceptions as google

    retriable = (
        google.ServiceUnavailable,
        google.DeadlineExceeded,
        google.InternalServerError,
        google.TooManyRequests,
        google.ResourceExhausted,
        google.Aborted,
        google.Unknown,
        google.RetryError,
        TimeoutError,
        ConnectionError,
    )
    return isinstance(exc, retriable)
