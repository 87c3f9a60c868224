"""Documents cut into passages small enough to retrieve precisely, each keeping its headings.

A passage is a few paragraphs of one section (about PASSAGE_CHARS characters, never more than
LONGEST_CHARS): a long paragraph is cut at sentences, a long sentence at words. What is embedded
is the passage with its document's title and heading path, so "Saturday 9-13" under "Opening
hours > Weekend" is found by a question about opening hours.

Token limits are kept without a tokenizer: a byte-level BPE token (OpenAI's) is at least one
byte, so the UTF-8 length bounds the token count from above. Titles, headings and text are
capped so that one embedded passage is at most MAX_INPUT_BYTES < 8192, the API's per-input limit.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from common.knowledge.documents import Document

PASSAGE_CHARS = 1200  # the size aimed at: a few paragraphs, ~300 tokens of English
LONGEST_CHARS = 1600
HEADING_CHARS = 300  # of the joined heading path
TITLE_CHARS = 120  # documents.read caps titles to this
MAX_INPUT_BYTES = 4 * (TITLE_CHARS + HEADING_CHARS + LONGEST_CHARS + 3)  # UTF-8: ≤ 4 bytes a character
SPLIT_VERSION = "1"  # part of every passage's key: a change here re-embeds everything once
assert MAX_INPUT_BYTES <= 8192


def tokens_at_most(text: str) -> int:
    """An upper bound of the tokens OpenAI counts for `text`: its UTF-8 bytes."""
    return len(text.encode())


@dataclass(frozen=True, slots=True)
class Passage:
    document: str  # the document's path in the folder
    index: int  # its place in the document, from 0
    title: str
    heading: str  # the heading path, "Opening hours > Weekend"; "" before any heading
    text: str

    @property
    def embedded(self) -> str:
        """What the embedding model reads: title, heading path, text."""
        return "\n".join([self.title, *([self.heading] if self.heading else []), "", self.text])

    def key(self, model: str, dimensions: int | None) -> str:
        """Same key, same embedding: what a re-sync reuses instead of asking the API again."""
        seed = f"{SPLIT_VERSION}\n{model}\n{dimensions or ''}\n{self.embedded}"
        return hashlib.sha256(seed.encode()).hexdigest()


def split(document: Document, target: int = PASSAGE_CHARS, longest: int = LONGEST_CHARS) -> list[Passage]:
    """The document's passages in reading order."""
    out: list[Passage] = []
    for section in document.sections:
        heading = " > ".join(section.headings)[:HEADING_CHARS]
        pieces = [(i == 0, piece) for p in section.paragraphs for i, piece in enumerate(_fit(p, longest))]
        for text in _pack(pieces, target):
            out.append(Passage(document.path, len(out), document.title[:TITLE_CHARS], heading, text))
    return out


def _pack(pieces: list[tuple[bool, str]], target: int) -> list[str]:
    """Consecutive pieces joined while they stay within `target` (a piece alone may be longer):
    a new paragraph after a blank line, the rest of a cut one after a space."""
    packed: list[str] = []
    for starts_paragraph, piece in pieces:
        joint = "\n\n" if starts_paragraph else " "
        if packed and len(packed[-1]) + len(joint) + len(piece) <= target:
            packed[-1] += joint + piece
        else:
            packed.append(piece)
    return packed


def _fit(text: str, longest: int) -> list[str]:
    """`text` as pieces of at most `longest` characters: whole, else by sentences, else by words."""
    if len(text) <= longest:
        return [text]
    sentences = re.split(r"(?<=[.!?…])\s+", text)
    if len(sentences) > 1:
        return [piece for sentence in sentences for piece in _fit(sentence, longest)]
    words, pieces = text.split(" "), [""]
    for word in words:
        while len(word) > longest:  # one "word" longer than a passage: cut it
            pieces.append(word[:longest])
            word = word[longest:]
        if len(pieces[-1]) + 1 + len(word) <= longest:
            pieces[-1] = f"{pieces[-1]} {word}".strip()
        else:
            pieces.append(word)
    return [p for p in pieces if p]
