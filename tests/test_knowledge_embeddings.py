"""Embedding requests within OpenAI's limits (2048 inputs, 300,000 tokens a request, 8192 tokens an
input), seen at the loopback stand-in through the real openai SDK; and the stand-in itself.
"""

from __future__ import annotations

import openai
import pytest

from common.knowledge.embeddings import (
    API_INPUTS,
    API_TOKENS,
    Embedder,
    EmbeddingsRefused,
    EmbeddingsUnavailable,
    batches,
)
from local.offline_embeddings import embed
from tests.conftest import OPENAI_KEY
from tests.support.fakes import FakeOpenAI


def embedder(model: FakeOpenAI, **limits: int) -> Embedder:
    sdk = openai.OpenAI(base_url=model.base_url, api_key=OPENAI_KEY, max_retries=0)
    return Embedder("text-embedding-3-small", dimensions=8, sdk=sdk, **limits)


def test_no_request_has_more_than_2048_inputs(model: FakeOpenAI) -> None:
    model.reset()
    texts = [f"passage {i}" for i in range(API_INPUTS + 100)]
    vectors = embedder(model, max_inputs=API_INPUTS).embed(texts, workers=2)
    sizes = [len(body["input"]) for body in model.embeddings()]
    assert sorted(sizes) == [100, 2048]  # two requests at once
    assert vectors == [embed(text, 8) for text in texts]  # one per input, in order
    assert all(body["encoding_format"] == "float" and body["dimensions"] == 8 for body in model.embeddings())


def test_no_request_holds_more_than_300000_tokens_counted_as_bytes(model: FakeOpenAI) -> None:
    model.reset()
    texts = ["ä" * 3500] * 50  # 7,000 bytes each: at most 7,000 tokens, 350,000 in all
    embedder(model, max_inputs=API_INPUTS).embed(texts)
    sent = [sum(len(text.encode()) for text in body["input"]) for body in model.embeddings()]
    assert len(sent) == 2 and max(sent) <= API_TOKENS and sum(sent) == 350_000


def test_an_input_that_may_exceed_8192_tokens_is_refused_before_any_request(model: FakeOpenAI) -> None:
    model.reset()
    with pytest.raises(EmbeddingsRefused, match="over 8192 tokens"):
        embedder(model).embed(["short", "x" * 8193])
    assert model.embeddings() == []
    assert [len(r) for r in batches(["x" * 8192] * 40, 2048)] == [36, 4]  # 36 x 8192 <= 300,000
    with pytest.raises(ValueError, match="within the API's"):
        batches(["x"], 4096)


def test_busy_and_outages_are_unavailable_and_a_refusal_of_one_request_is_refused(
    model: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chat's policy (common/ai/openai_client.py): a later try may succeed (429), the operator
    must fix it (401: one ERROR line with its alert, then retried), or this request only (400)."""
    model.reset()
    model.fail("/embeddings", 429, {"error": {"message": "slow down", "type": "rate_limit", "code": None}})
    with pytest.raises(EmbeddingsUnavailable, match="429"):
        embedder(model).embed(["hello"], retries=0)
    auth = {"error": {"message": "bad key", "type": "auth", "code": "invalid_api_key"}}
    model.fail("/embeddings", 401, auth)
    with pytest.raises(EmbeddingsUnavailable, match="401"):
        embedder(model).embed(["hello"], retries=0)
    assert '"alert": "openai_auth"' in capsys.readouterr().out
    model.fail(
        "/embeddings", 400, {"error": {"message": "no", "type": "invalid_request_error", "code": None}}
    )
    with pytest.raises(EmbeddingsRefused, match="400"):
        embedder(model).embed(["hello"], retries=0)


def test_the_stand_in_is_word_based_deterministic_and_never_zero() -> None:
    hours = embed("Opening hours: Saturday 9:00 to 17:00")

    def similarity(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert hours == embed("Opening hours: Saturday 9:00 to 17:00")
    assert similarity(hours, embed("When are you open on Saturday?")) > 0.3  # "open", "saturday"
    assert similarity(hours, embed("Do you sell cars?")) < 0.01
    assert abs(sum(x * x for x in embed("and the")) - 1) < 1e-9  # only common words: still a unit vector
