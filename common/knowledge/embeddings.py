"""Texts to vectors with EMBEDDING_MODEL, through the openai SDK, in requests within the API's limits.

OpenAI takes at most 2048 inputs and 300,000 tokens per request and 8192 tokens per input.
Tokens are bounded by UTF-8 bytes (passages.tokens_at_most), so a request is cut before either
limit could be reached; an input over 8192 bytes is refused here (passages.split never makes one).
Requests also stop at KNOWLEDGE_EMBED_BATCH inputs [256]: the answer comes as JSON floats
(`encoding_format="float"`, which every OpenAI-compatible server speaks; the SDK's default base64
is not), ~30 bytes a number, so 256 x 1536 numbers is already ~12 MB.
Failures are sorted by common/ai/openai_client.py's policy, as the chat's: EmbeddingsUnavailable
for what a later try may fix (no answer, 408/409/429, 5xx; and an operator's outage, a refused
key or model, after its one ERROR line with `alert`), EmbeddingsRefused for this request only
(another 4xx, or an answer that is not one vector per input).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from common import config
from common.ai import openai_client
from common.knowledge.passages import tokens_at_most

if TYPE_CHECKING:
    import openai

API_INPUTS, API_TOKENS, API_INPUT_TOKENS = 2048, 300_000, 8192
DEFAULT_MODEL = "text-embedding-3-small"


class EmbeddingsUnavailable(Exception):
    """No usable answer for now (timeout, connection, 408/409/429, 5xx): retry later."""


class EmbeddingsRefused(Exception):
    """The API refused (4xx other than the retried ones) or answered nonsense: a retry cannot fix it."""


def batches(texts: Sequence[str], max_inputs: int, max_tokens: int = API_TOKENS) -> list[range]:
    """Consecutive index ranges of `texts`, each within `max_inputs` inputs and `max_tokens` tokens."""
    if not 0 < max_inputs <= API_INPUTS or not 0 < max_tokens <= API_TOKENS:
        raise ValueError(f"batch limits must be within the API's ({API_INPUTS} inputs, {API_TOKENS} tokens)")
    out, start, tokens = [], 0, 0
    for index, text in enumerate(texts):
        size = tokens_at_most(text)
        if size > API_INPUT_TOKENS:
            raise EmbeddingsRefused(f"input {index} may be over {API_INPUT_TOKENS} tokens ({size} bytes)")
        if index > start and (index - start == max_inputs or tokens + size > max_tokens):
            out.append(range(start, index))
            start, tokens = index, 0
        tokens += size
    if start < len(texts):
        out.append(range(start, len(texts)))
    return out


class Embedder:
    """Embeds with one model (and output size, when `dimensions` is set); counts its requests."""

    def __init__(
        self,
        model: str | None = None,
        dimensions: int | None = None,
        max_inputs: int | None = None,
        max_tokens: int = API_TOKENS,
        sdk: openai.OpenAI | None = None,
    ) -> None:
        self.model = model or config.get("EMBEDDING_MODEL") or DEFAULT_MODEL
        size = config.get("EMBEDDING_DIMENSIONS")
        self.dimensions = dimensions or (int(size) if size else None)
        self.max_inputs = max_inputs or int(config.number("KNOWLEDGE_EMBED_BATCH", 256))
        self.max_tokens = max_tokens
        self._sdk = sdk
        self.requests = 0

    def embed(
        self, texts: Sequence[str], timeout: float = 60, retries: int = 2, workers: int = 1
    ) -> list[list[float]]:
        """One vector per text, in order; up to `workers` requests at once."""
        ranges = batches(texts, self.max_inputs, self.max_tokens)

        def one(indexes: range) -> list[list[float]]:
            return self._request([texts[i] for i in indexes], timeout, retries)

        if workers <= 1 or len(ranges) <= 1:
            return [vector for indexes in ranges for vector in one(indexes)]
        with ThreadPoolExecutor(min(workers, len(ranges)), thread_name_prefix="embed") as pool:
            return [vector for answer in pool.map(one, ranges) for vector in answer]

    def _request(self, inputs: list[str], timeout: float, retries: int) -> list[list[float]]:
        options: dict[str, Any] = {"dimensions": self.dimensions} if self.dimensions else {}
        sdk = (self._sdk or openai_client.client()).with_options(timeout=timeout, max_retries=retries)
        self.requests += 1
        try:
            answer = sdk.embeddings.create(model=self.model, input=inputs, encoding_format="float", **options)
        except openai_client.sdk_errors() as exc:
            found = openai_client.settle(exc, what="embeddings")  # an outage's one ERROR line
            if found.kind in (openai_client.Kind.BUSY, openai_client.Kind.OUTAGE):
                raise EmbeddingsUnavailable(str(found)) from exc
            raise EmbeddingsRefused(str(found)) from exc
        rows = sorted(answer.data, key=lambda row: row.index)
        vectors = [row.embedding for row in rows]
        sizes = {len(v) for v in vectors if isinstance(v, list)}
        if len(vectors) != len(inputs) or len(sizes) != 1 or not all(isinstance(v, list) for v in vectors):
            raise EmbeddingsRefused(f"expected {len(inputs)} float vectors of one size, got another answer")
        return [[float(x) for x in vector] for vector in vectors]
