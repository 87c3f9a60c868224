"""A stand-in for an embedding model: a hashed bag of words, deterministic, with no notion of meaning.

Served by the offline model (`make dev`, `make eval` with no OpenAI settings) and the tests'
loopback OpenAI, so the knowledge base works end to end on a machine with no key. Texts that share
words are near, texts that share none are not: "opening hours" finds "Opening hours" but not "when
do you open?" phrased with other words. Every word is lowercased, a few English endings are cut
("opening" -> "open"), common words dropped, and hashed into one of the vector's slots; slot 0
holds a small constant so that no vector is zero. Not a real model: similarities run lower than
text-embedding-3's for the same texts (retrieval.DEFAULT_MIN_SIMILARITY has its own default).
"""

from __future__ import annotations

import hashlib
import math
import re

MODEL = "offline-stand-in"
DIMENSIONS = 1536  # text-embedding-3-small's, so the same vector index fits
_COMMON = """a about after all also am an and any are as at be been but by can could did do does
for from get had has have how i if in is it its just me my no not of on or our please so
than that the their them then there these they this to us was we were what when where which
who why will with would you your"""
STOPWORDS = frozenset(_COMMON.split())


def terms(text: str) -> list[str]:
    """The words that count, each cut to a rough stem."""
    out = []
    for word in re.findall(r"[^\W_]+", text.lower()):
        if word in STOPWORDS or len(word) < 2:
            continue
        for ending in ("ing", "ed", "es", "s"):
            if word.endswith(ending) and len(word) - len(ending) >= 3:
                word = word[: -len(ending)]
                break
        out.append(word)
    return out


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A unit vector: term counts in hashed slots 1.., a constant in slot 0."""
    vector = [0.0] * dimensions
    vector[0] = 0.05
    for term in terms(text):
        slot = 1 + int.from_bytes(hashlib.blake2b(term.encode(), digest_size=8).digest(), "big") % (
            dimensions - 1
        )
        vector[slot] += 1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def answer(body: object) -> tuple[int, dict[str, object]]:
    """(status, JSON) for a POST /v1/embeddings body, in OpenAI's shape (floats only)."""
    if not isinstance(body, dict) or "input" not in body:
        return 400, {"error": {"message": "input is required", "type": "invalid_request_error", "code": None}}
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if not inputs or not all(isinstance(text, str) for text in inputs) or len(inputs) > 2048:
        return 400, {
            "error": {"message": "input: 1..2048 strings", "type": "invalid_request_error", "code": None}
        }
    if body.get("encoding_format") not in (None, "float"):
        message = "the stand-in only speaks encoding_format=float"
        return 400, {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    size = body.get("dimensions") or DIMENSIONS
    data = [
        {"object": "embedding", "index": i, "embedding": embed(t, int(size))} for i, t in enumerate(inputs)
    ]
    tokens = sum(len(text.split()) for text in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return 200, {"object": "list", "data": data, "model": str(body.get("model") or MODEL), "usage": usage}
