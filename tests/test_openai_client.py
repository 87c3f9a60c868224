"""The openai SDK client (common/ai/openai_client.py) on the loopback stand-in: where the key may go,
what the SDK sends, and how each failure is sorted into our policy (with its request id).

The chat, vision, speech and transcription paths through it are tested end to end with the
functions (test_responder, test_vision, test_voice_reply, test_transcriber, test_outages).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from common.ai import openai_client
from common.ai.openai_client import Kind
from local.functions import FunctionError, serve
from tests.support.fakes import Answer, FakeOpenAI, FakeServer, Recorded

KEY = "sk-test-client-key"
HI = [{"role": "user", "content": "hi"}]
REFUSED_BASES = [
    "http://api.example.com/v1",  # plain http off this machine: the key would cross the network
    "http://10.0.0.5:8000/v1",
    "http://0.0.0.0:8091/v1",
    "api.openai.com/v1",  # no scheme
    "ftp://127.0.0.1/v1",
    "https://",  # no host
    "http://127.0.0.1:port/v1",  # a port that is not a number
]
ACCEPTED_BASES = [
    "https://api.openai.com/v1",
    "https://llm.example.com:8443/v1/",
    "http://127.0.0.1:8091/v1",
    "http://127.0.0.2:8091/v1",
    "http://[::1]:11434/v1",
    "http://localhost:11434/v1",
]
# (status, error body) -> (kind, alert): the policy table, as OpenAI answers each case.
TABLE = [
    (401, {"message": "Incorrect API key", "type": "invalid_request_error", "code": "invalid_api_key"}),
    (403, {"message": "Country not supported", "type": "request_forbidden", "code": "unsupported_country"}),
    (
        404,
        {"message": "The model does not exist", "type": "invalid_request_error", "code": "model_not_found"},
    ),
    (
        400,
        {"message": "The model does not exist", "type": "invalid_request_error", "code": "model_not_found"},
    ),
    (
        400,
        {
            "message": "Use max_completion_tokens",
            "type": "invalid_request_error",
            "code": "unsupported_parameter",
        },
    ),
    (429, {"message": "You exceeded your quota", "type": "insufficient_quota", "code": "insufficient_quota"}),
    (429, {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}),
    (408, {"message": "timeout"}),
    (409, {"message": "conflict"}),
    (500, {"message": "boom", "type": "server_error"}),
    (503, {"message": "overloaded"}),
    (400, {"message": "maximum context length is 128000 tokens", "code": "context_length_exceeded"}),
    (400, {"message": "Invalid image", "type": "invalid_request_error", "code": "invalid_image"}),
    (413, {"message": "too large"}),
]
EXPECTED = [
    (Kind.OUTAGE, "openai_auth"),
    (Kind.OUTAGE, "openai_auth"),
    (Kind.OUTAGE, "openai_config"),
    (Kind.OUTAGE, "openai_config"),
    (Kind.OUTAGE, "openai_config"),
    (Kind.OUTAGE, "openai_quota"),
    (Kind.BUSY, None),
    (Kind.BUSY, None),
    (Kind.BUSY, None),
    (Kind.BUSY, None),
    (Kind.BUSY, None),
    (Kind.TOO_LONG, None),
    (Kind.REFUSED, None),
    (Kind.REFUSED, None),
]


@pytest.fixture
def client(model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[openai.OpenAI]:
    model.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    built = openai_client.build()
    yield built
    built.close()


def chat(client: openai.OpenAI, **options: Any) -> Any:
    once = client.with_options(timeout=options.pop("timeout", 5), max_retries=options.pop("max_retries", 0))
    return once.chat.completions.create(model="test-model", messages=HI, max_completion_tokens=5)  # type: ignore[arg-type]


def failed(call: Any) -> openai_client.Failure:
    with pytest.raises(openai.APIError) as caught:
        call()
    found = openai_client.failure(caught.value)
    assert found is not None
    return found


# --- where the key may go ------------------------------------------------------------------------


@pytest.mark.parametrize("base", REFUSED_BASES)
def test_a_base_the_key_may_not_go_to_is_refused_naming_openai_base_url(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    with pytest.raises(RuntimeError, match="OPENAI_BASE_URL must be an https:// URL"):
        openai_client.base_url()
    with pytest.raises(RuntimeError, match="OPENAI_BASE_URL"):
        openai_client.build()


@pytest.mark.parametrize("base", ACCEPTED_BASES)
def test_https_or_plain_http_on_this_machine_is_accepted(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    assert openai_client.base_url() == base.rstrip("/")


def test_unset_or_empty_base_is_openais(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "")  # an `.env` line `OPENAI_BASE_URL=`: the SDK would take ""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert openai_client.base_url() == "https://api.openai.com/v1"
    assert str(openai_client.build().base_url) == "https://api.openai.com/v1/"


def test_the_refusal_names_scheme_and_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:secret@api.example.com/v1?key=sk-x")
    with pytest.raises(RuntimeError) as refused:
        openai_client.base_url()
    assert "http://api.example.com" in str(refused.value)
    assert "secret" not in str(refused.value) and "sk-x" not in str(refused.value)


@pytest.mark.parametrize(
    ("function", "extra"), [("responder", {}), ("transcriber", {"TRANSCRIBE_BACKEND": "openai"})]
)
def test_the_functions_refuse_such_a_base_when_they_start(function: str, extra: dict[str, str]) -> None:
    env = {"OPENAI_BASE_URL": "http://api.example.com/v1", "OPENAI_API_KEY": KEY, **extra}
    with pytest.raises(FunctionError) as refused:
        serve(function, env).stop()
    assert "OPENAI_BASE_URL must be an https:// URL" in str(refused.value)
    assert KEY not in str(refused.value)


def test_a_transcriber_that_does_not_call_openai_starts_whatever_the_base() -> None:
    env = {"OPENAI_BASE_URL": "http://api.example.com/v1", "TRANSCRIBE_BACKEND": "sphinx"}
    serve("transcriber", env).stop()


def test_redirects_are_not_followed_and_count_as_a_configuration_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK follows redirects by default: the conversation would go where the 307 points."""
    elsewhere = FakeOpenAI()

    class Redirecting(FakeServer):
        def route(self, request: Recorded) -> Answer:
            return Answer(307, {}, {"Location": f"{elsewhere.base_url}/chat/completions"})

    redirecting = Redirecting()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{redirecting.url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        found = failed(lambda: chat(openai_client.build()))
        assert (found.kind, found.status, found.alert) == (Kind.OUTAGE, 307, "openai_config")
        assert elsewhere.requests == []
    finally:
        redirecting.close()
        elsewhere.close()


# --- the wire ------------------------------------------------------------------------------------


def test_chat_posts_json_with_the_key_as_a_bearer_token(client: openai.OpenAI, model: FakeOpenAI) -> None:
    answer = chat(client)
    assert answer.choices[0].message.content.startswith("echo: hi")
    assert answer.usage.total_tokens == 2
    [request] = model.requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["content-type"] == "application/json"
    assert "openai-organization" not in headers and "openai-project" not in headers
    assert request.json() == {"model": "test-model", "messages": HI, "max_completion_tokens": 5}


def test_organization_and_project_are_read_from_the_environment_as_the_sdk_reads_them(
    model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_test")
    chat(openai_client.build())
    headers = {k.lower(): v for k, v in model.requests[-1].headers.items()}
    assert (headers["openai-organization"], headers["openai-project"]) == ("org-test", "proj_test")


def test_no_key_sends_the_placeholder_not_a_secret(
    model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat(openai_client.build())  # the SDK alone would refuse to build a client without a key
    headers = {k.lower(): v for k, v in model.requests[-1].headers.items()}
    assert headers["authorization"] == f"Bearer {openai_client.NO_KEY}"


def test_speech_answers_the_audio_bytes(client: openai.OpenAI, model: FakeOpenAI) -> None:
    spoken = client.audio.speech.create(model="tts", voice="alloy", input="hello", response_format="opus")
    assert spoken.content == model.speech
    assert model.speeches() == [
        {"model": "tts", "voice": "alloy", "input": "hello", "response_format": "opus"}
    ]


def test_transcription_is_a_multipart_upload_of_model_and_file(
    client: openai.OpenAI, model: FakeOpenAI
) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-test", file=("voice.ogg", b"OggS...", "audio/ogg")
    )
    assert result.text == "a transcript from the fake"
    [fields] = model.transcriptions()
    assert fields["file"] == ("voice.ogg", b"OggS...")
    assert fields["model"] == (None, b"whisper-test")


# --- failures: the one mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"), list(zip(TABLE, EXPECTED, strict=True)), ids=lambda v: str(v[0])
)
def test_each_failure_is_sorted_as_the_policy_table_says(
    client: openai.OpenAI,
    model: FakeOpenAI,
    row: tuple[int, dict[str, Any]],
    expected: tuple[Kind, str | None],
) -> None:
    status, error = row
    model.fail("/chat/completions", status, {"error": error})
    found = failed(lambda: chat(client))
    assert (found.kind, found.alert) == expected
    assert (found.status, found.code) == (status, error.get("code"))
    assert found.request_id and found.request_id.startswith("req_fake")  # OpenAI's x-request-id
    assert error["message"] not in str(found)  # what may be logged: no message, no body


def test_an_outage_writes_one_error_line_with_its_alert_and_request_id(
    client: openai.OpenAI, model: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    model.fail("/chat/completions", 401, {"error": {"message": f"bad key {KEY}", "code": "invalid_api_key"}})
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(client)
    capsys.readouterr()
    found = openai_client.settle(caught.value, model="test-model")
    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["severity"] == "ERROR" and line["alert"] == "openai_auth"
    assert (line["status"], line["code"], line["model"]) == (401, "invalid_api_key", "test-model")
    assert line["request_id"] == found.request_id
    assert KEY not in json.dumps(line)


def test_a_busy_failure_writes_no_line(
    client: openai.OpenAI, model: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    model.fail("/chat/completions", 503, {"error": {"message": "overloaded"}})
    with pytest.raises(openai.APIStatusError) as caught:
        chat(client)
    capsys.readouterr()
    assert openai_client.settle(caught.value).kind is Kind.BUSY
    assert capsys.readouterr().out == ""


def test_no_answer_in_time_is_busy(client: openai.OpenAI, model: FakeOpenAI) -> None:
    model.fail("/chat/completions", 200, {"choices": []}, delay=2)
    assert failed(lambda: chat(client, timeout=0.5)).kind is Kind.BUSY


def test_a_closed_port_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    found = failed(lambda: chat(openai_client.build(), timeout=2))
    assert (found.kind, found.status) == (Kind.BUSY, None)


def test_anything_else_is_not_the_sdks() -> None:
    assert openai_client.failure(ValueError("ours")) is None


# --- retries: the SDK's (transcription) and within() (chat and speech, cut to a deadline) ---------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
def test_the_sdks_max_retries_retry_what_a_later_try_can_fix(
    client: openai.OpenAI, model: FakeOpenAI, status: int
) -> None:
    model.fail("/audio/transcriptions", status, {"error": {"message": "busy"}})
    sdk = client.with_options(timeout=5, max_retries=1)
    assert sdk.audio.transcriptions.create(model="m", file=("voice.ogg", b"x", "audio/ogg")).text
    assert [r.status for r in model.requests] == [status, 200]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_the_sdk_does_not_retry_what_a_later_try_cannot_fix(
    client: openai.OpenAI, model: FakeOpenAI, status: int
) -> None:
    model.fail("/audio/transcriptions", status, {"error": {"message": "no"}}, times=3)
    sdk = client.with_options(timeout=5, max_retries=2)
    failed(lambda: sdk.audio.transcriptions.create(model="m", file=("voice.ogg", b"x", "audio/ogg")))
    assert len(model.requests) == 1


def test_within_retries_busy_failures_only_while_the_deadline_allows(
    client: openai.OpenAI, model: FakeOpenAI
) -> None:
    model.fail("/chat/completions", 503, {"error": {"message": "overloaded"}}, times=2)
    answer = openai_client.within(time.monotonic() + 30, 2, lambda: chat(client))
    assert answer.choices[0].message.content.startswith("echo: hi")
    assert [r.status for r in model.requests] == [503, 503, 200]

    model.reset()
    model.fail("/chat/completions", 503, {"error": {"message": "overloaded"}}, times=5)
    failed(lambda: openai_client.within(time.monotonic() + 1.2, 2, lambda: chat(client)))
    assert len(model.requests) == 1  # a pause and one more second did not fit: given up at once


def test_within_never_retries_an_outage(client: openai.OpenAI, model: FakeOpenAI) -> None:
    model.fail(
        "/chat/completions", 401, {"error": {"message": "revoked", "code": "invalid_api_key"}}, times=5
    )
    found = failed(lambda: openai_client.within(time.monotonic() + 30, 2, lambda: chat(client)))
    assert found.alert == "openai_auth"
    assert len(model.requests) == 1
