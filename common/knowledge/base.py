"""Where the knowledge base lives in Firestore, and the one document that says which version is live.

    knowledge/active                                      the pointer: {generation, previous, model,
                                                          dimensions, documents, passages, switchedAt}
    knowledgeBases/{generation}                           a version's header: {state, startedAt, model}
    knowledgeBases/{generation}/knowledgeDocuments/{id}   one per document: {path, title, fingerprint, keys}
    knowledgeBases/{generation}/knowledgePassages/{id}    one per passage: {title, heading, text, key,
                                                          document, index, embedding: Vector}

A sync writes a whole new generation beside the live one and then moves the pointer in one
transaction, so a responder reads either the old passages or the new ones, never a mix. Each
generation is its own collection of passages, so the vector query needs no filter and the vector
index is one field on the collection group `knowledgePassages` (deploy.sh creates it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import firestore

POINTER = "knowledge/active"
GENERATIONS = "knowledgeBases"
DOCUMENTS = "knowledgeDocuments"
PASSAGES = "knowledgePassages"  # the vector index's collection group
VECTOR_FIELD = "embedding"


@dataclass(frozen=True, slots=True)
class Active:
    """What the pointer says: the live generation, and how its passages were embedded."""

    generation: str
    model: str
    dimensions: int | None  # asked of the API; None: the model's own size
    documents: int = 0
    passages: int = 0
    previous: str | None = None  # the generation it replaced (kept until no responder can read it)
    switched_at: datetime | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> Active | None:
        if not data or not isinstance(data.get("generation"), str) or not isinstance(data.get("model"), str):
            return None
        dimensions = data.get("dimensions")
        return cls(
            data["generation"],
            data["model"],
            dimensions if isinstance(dimensions, int) and dimensions > 0 else None,
            int(data.get("documents") or 0),
            int(data.get("passages") or 0),
            data.get("previous") if isinstance(data.get("previous"), str) else None,
            data.get("switchedAt") if isinstance(data.get("switchedAt"), datetime) else None,
        )


def read_active(db: firestore.Client, **budget: Any) -> Active | None:
    """The pointer (1 read; `budget`: the call's retry= and timeout=); None: no knowledge base."""
    return Active.from_data(db.document(POINTER).get(**budget).to_dict())


def passages(db: firestore.Client, generation: str) -> firestore.CollectionReference:
    return db.collection(GENERATIONS, generation, PASSAGES)


def documents(db: firestore.Client, generation: str) -> firestore.CollectionReference:
    return db.collection(GENERATIONS, generation, DOCUMENTS)


def document_id(path: str) -> str:
    """A Firestore id for a document's path (paths hold '/', ids may not)."""
    return hashlib.sha256(path.encode()).hexdigest()[:24]


def passage_id(path: str, index: int) -> str:
    return f"{document_id(path)}-{index:05d}"
