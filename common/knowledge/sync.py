"""One folder of documents made the live knowledge base: embed only what changed, switch at once.

A sync reads every file, compares each document's fingerprint (its bytes, the splitter, the model)
with the live version's, and when anything changed writes a new generation (common/knowledge/
base.py): passages of unchanged documents are copied with their vectors (1 read and 1 write
each), new and edited ones embedded (only passages whose text is new: the key of a passage is
the hash of what is embedded). The pointer moves in one transaction at the end; until then the
bot answers from the old version. A sync that dies leaves a generation that was never live: the
next one reuses the vectors of the documents it finished (their manifest is written last) and
deletes it. Two syncs at once: the second to finish refuses to switch and changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.vector import Vector

from common import config
from common.knowledge import base, generations
from common.knowledge.documents import Document
from common.knowledge.embeddings import Embedder
from common.knowledge.passages import SPLIT_VERSION, split
from common.knowledge.plan import Limits, Planned, Summary, SyncRefused, count, scan

__all__ = ["Limits", "Summary", "Sync", "SyncRefused"]

WAVE = 512  # at most, passages embedded and written together (their vectors are held in memory)
WORKERS = 4  # embeddings requests at once
WRITES = 200  # passages per commit: ~15 KB each with a 1536-number vector, well within 10 MiB


class Sync:
    def __init__(
        self,
        db: firestore.Client,
        embedder: Embedder,
        limits: Limits | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.db, self.embedder, self.say = db, embedder, say
        self.limits = limits or Limits.from_env()
        self.cache_seconds = config.number("KNOWLEDGE_CACHE_SECONDS", 30)

    def run(self, root: Path) -> Summary:
        """Make the documents under `root` the live knowledge base (SyncRefused: nothing changed)."""
        documents, refused = scan(root, self.limits)
        summary = Summary(refused=refused)
        if not documents:
            raise SyncRefused(
                f"no readable document in {root}: nothing changed (--remove empties the knowledge base)"
            )
        planned = self._plan(documents)
        if len(planned) > self.limits.documents:
            raise SyncRefused(
                f"{len(planned)} documents, over KNOWLEDGE_MAX_DOCUMENTS={self.limits.documents}"
            )
        total = sum(len(p.passages) for p in planned)
        if total > self.limits.passages:
            raise SyncRefused(f"{total} passages, over KNOWLEDGE_MAX_PASSAGES={self.limits.passages}")
        pointer = self.db.document(base.POINTER).get()
        active = base.Active.from_data(pointer.to_dict())
        live = self._manifests(active.generation) if active else {}
        old = dict(live)
        for plan in planned:
            plan.old = old.pop(plan.document.path, None)
        count(summary, planned, list(old.values()))
        if active and not (summary.documents.changed or summary.passages.changed):
            summary.generation = active.generation
            generations.prune(self.db, self.cache_seconds, self.say)  # what a dead sync left
            return summary
        generation = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        self.db.document(base.GENERATIONS, generation).create(
            {"state": "building", "startedAt": firestore.SERVER_TIMESTAMP, "model": self.embedder.model}
        )
        reusable = self._reusable(active.generation if active else None, live)
        requests = self.embedder.requests
        summary.embedded = self._build(generation, planned, reusable)
        summary.requests = self.embedder.requests - requests
        self._switch(generation, pointer, active, planned)
        summary.generation = generation
        generations.prune(self.db, self.cache_seconds, self.say)
        return summary

    def remove(self) -> int:
        """No knowledge base any more: the bot answers as without one. Returns the generations deleted."""
        pointer = self.db.document(base.POINTER)
        data = pointer.get().to_dict() or {}
        if data.get("generation"):
            pointer.set(
                {"generation": None, "previous": data["generation"], "switchedAt": firestore.SERVER_TIMESTAMP}
            )
        return generations.prune(self.db, self.cache_seconds, self.say)

    def _plan(self, documents: list[Document]) -> list[Planned]:
        model, size = self.embedder.model, self.embedder.dimensions
        out = []
        for document in documents:
            passages = split(document)
            fingerprint = f"{document.digest}:{SPLIT_VERSION}:{model}:{size or ''}"
            keys = [p.key(model, size)[:32] for p in passages]
            out.append(Planned(document, passages, keys, fingerprint, None))
        return out

    def _manifests(self, generation: str) -> dict[str, dict[str, Any]]:
        """path -> manifest of every finished document of a generation (1 read each)."""
        found = {}
        for snapshot in base.documents(self.db, generation).stream():
            data = snapshot.to_dict() or {}
            if isinstance(data.get("path"), str) and isinstance(data.get("keys"), list):
                found[data["path"]] = data
        return found

    def _reusable(self, live: str | None, manifests: dict[str, dict[str, Any]]) -> dict[str, str]:
        """key -> path of a stored passage with that vector: the live generation's, then those of
        the documents a dead sync finished (its generation is deleted once this one is live). A
        key hashes the model and size too, so a vector of another model never matches."""
        sources = [(live, manifests)] if live else []
        for header in self.db.collection(base.GENERATIONS).list_documents():
            if header.id != live:
                sources.append((header.id, self._manifests(header.id)))
        reusable: dict[str, str] = {}
        for generation, found in sources:
            stored = base.passages(self.db, generation)
            for path, manifest in found.items():
                for index, key in enumerate(manifest["keys"]):
                    reusable.setdefault(key, stored.document(base.passage_id(path, index)).path)
        return reusable

    def _build(self, generation: str, planned: list[Planned], reusable: dict[str, str]) -> int:
        """Write every document's passages into `generation`, wave by wave; returns how many were embedded."""
        embedded, wave, size = 0, [], min(WAVE, self.embedder.max_inputs * WORKERS)  # a round of requests
        for plan in planned:
            wave.append(plan)
            if sum(len(p.passages) for p in wave) >= size:
                embedded += self._write_wave(generation, wave, reusable)
                wave = []
        if wave:
            embedded += self._write_wave(generation, wave, reusable)
        return embedded

    def _write_wave(self, generation: str, wave: list[Planned], reusable: dict[str, str]) -> int:
        vectors: dict[str, Any] = {}
        copied = {key: reusable[key] for plan in wave for key in plan.keys if key in reusable}
        refs = [self.db.document(path) for path in dict.fromkeys(copied.values())]
        found = {}
        for start in range(0, len(refs), 100):
            for snapshot in self.db.get_all(refs[start : start + 100], field_paths=[base.VECTOR_FIELD]):
                vector = (snapshot.to_dict() or {}).get(base.VECTOR_FIELD)
                if isinstance(vector, Vector):
                    found[snapshot.reference.path] = vector
        vectors.update({key: found[path] for key, path in copied.items() if path in found})
        missing = {}
        for plan in wave:
            for key, passage in zip(plan.keys, plan.passages, strict=True):
                if key not in vectors:
                    missing.setdefault(key, passage.embedded)
        answers = self.embedder.embed(list(missing.values()), workers=WORKERS) if missing else []
        vectors.update({key: Vector(v) for key, v in zip(missing, answers, strict=True)})
        for plan in wave:
            self._write_document(generation, plan, vectors)
        return len(missing)

    def _write_document(self, generation: str, plan: Planned, vectors: dict[str, Any]) -> None:
        """The passages, then the manifest (in the last commit): a manifest means the document is whole."""
        path, collection = plan.document.path, base.passages(self.db, generation)
        batch, pending = self.db.batch(), 0
        for passage, key in zip(plan.passages, plan.keys, strict=True):
            fields = {
                "document": path,
                "index": passage.index,
                "title": passage.title,
                "heading": passage.heading,
                "text": passage.text,
                "key": key,
                base.VECTOR_FIELD: vectors[key],
            }
            batch.set(collection.document(base.passage_id(path, passage.index)), fields)
            pending += 1
            if pending == WRITES:
                batch.commit()
                batch, pending = self.db.batch(), 0
        manifest = {
            "path": path,
            "title": plan.document.title,
            "fingerprint": plan.fingerprint,
            "keys": plan.keys,
        }
        batch.set(base.documents(self.db, generation).document(base.document_id(path)), manifest)
        batch.commit()

    def _switch(
        self,
        generation: str,
        seen: firestore.DocumentSnapshot,
        active: base.Active | None,
        planned: list[Planned],
    ) -> None:
        """Point at `generation`, if the pointer is still what this sync read at its start."""
        pointer = self.db.document(base.POINTER)
        header = self.db.document(base.GENERATIONS, generation)
        fields = {
            "generation": generation,
            "previous": active.generation if active else None,
            "model": self.embedder.model,
            "dimensions": self.embedder.dimensions,
            "documents": len(planned),
            "passages": sum(len(p.passages) for p in planned),
            "switchedAt": firestore.SERVER_TIMESTAMP,
        }

        @firestore.transactional
        def attempt(transaction: firestore.Transaction) -> None:
            now = pointer.get(transaction=transaction)
            if now.update_time != seen.update_time:
                raise SyncRefused("another sync changed the knowledge base while this one ran: run it again")
            if not header.get(transaction=transaction).exists:
                raise SyncRefused("another sync removed this sync's version while it ran: run it again")
            transaction.set(pointer, fields)
            transaction.update(header, {"state": "live"})

        attempt(self.db.transaction())
