"""What a sync finds and would change: the folder's documents within the limits, each one's
passages and keys beside the live version's manifest, and the counts of the summary line.

Nothing here writes; common/knowledge/sync.py does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import config
from common.knowledge.documents import Document, Unreadable, read
from common.knowledge.passages import Passage


class SyncRefused(Exception):
    """Nothing was changed; str() says why and what to do."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one knowledge base may hold (documented in docs/knowledge.md)."""

    file_bytes: int = 10 * 1024 * 1024
    pdf_pages: int = 500
    documents: int = 1000
    passages: int = 20000

    @classmethod
    def from_env(cls) -> Limits:
        given = Limits()
        return cls(
            int(config.number("KNOWLEDGE_MAX_FILE_BYTES", given.file_bytes)),
            int(config.number("KNOWLEDGE_MAX_PDF_PAGES", given.pdf_pages)),
            int(config.number("KNOWLEDGE_MAX_DOCUMENTS", given.documents)),
            int(config.number("KNOWLEDGE_MAX_PASSAGES", given.passages)),
        )


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.removed} removed, {self.unchanged} unchanged"
        )

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


@dataclass
class Summary:
    documents: Counts = field(default_factory=Counts)
    passages: Counts = field(default_factory=Counts)
    embedded: int = 0
    requests: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    generation: str | None = None  # the live one afterwards

    def line(self) -> str:
        """The one summary line a sync prints."""
        refused = (
            f" · {len(self.refused)} file{'s' * (len(self.refused) != 1)} refused" if self.refused else ""
        )
        plural = "s" * (self.requests != 1)
        return (
            f"knowledge: documents {self.documents} · passages {self.passages}"
            f" · {self.embedded} embedded in {self.requests} request{plural}{refused}"
        )


@dataclass
class Planned:
    """One document of the folder, its passages and their keys, beside its live manifest."""

    document: Document
    passages: list[Passage]
    keys: list[str]
    fingerprint: str
    old: dict[str, Any] | None


def scan(root: Path, limits: Limits) -> tuple[list[Document], list[tuple[str, str]]]:
    """The readable documents under `root` and the refused files (hidden ones are skipped)."""
    if not root.is_dir():
        raise SyncRefused(f"{root} is not a folder")
    documents, refused = [], []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        name = file.relative_to(root).as_posix()
        if any(part.startswith(".") for part in file.relative_to(root).parts):
            continue
        try:
            documents.append(read(file, root, limits.file_bytes, limits.pdf_pages))
        except Unreadable as exc:
            refused.append((name, str(exc)))
        except OSError as exc:
            refused.append((name, f"cannot be read ({exc.strerror or type(exc).__name__})"))
    return documents, refused


def count(summary: Summary, planned: list[Planned], gone: list[dict[str, Any]]) -> None:
    """Documents and passages added, updated, removed and unchanged against the live version."""
    docs, passages = summary.documents, summary.passages
    for plan in planned:
        if plan.old is None:
            docs.added += 1
            passages.added += len(plan.keys)
            continue
        before, after = Counter(plan.old.get("keys") or []), Counter(plan.keys)
        same = sum((before & after).values())
        left, new = sum(before.values()) - same, len(plan.keys) - same
        if plan.old.get("fingerprint") == plan.fingerprint:
            docs.unchanged += 1
        else:
            docs.updated += 1
        passages.unchanged += same
        passages.updated += min(left, new)
        passages.added += new - min(left, new)
        passages.removed += left - min(left, new)
    for manifest in gone:
        docs.removed += 1
        passages.removed += len(manifest.get("keys") or [])
