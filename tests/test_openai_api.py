"""Our OpenAI client (common/ai/openai_api.py) on the loopback stand-in: where the key may go, what
goes over the wire, how error bodies and failures come out, and the retries it makes itself.

The chat, vision, speech and transcription paths through it are tested end to end with the
functions (test_responder, test_vision, test_voice_reply, test_transcriber).
"""

from __future__ import annotations

import socket

import pytest

from common.ai.openai_api import OpenAIClient, StatusError, Unreachable, base_url
from local.functions import FunctionError, serve
from tests.support.fakes import Answer, FakeOpenAI, FakeServer, Recorded

KEY = "sk-test-client-key"
CHAT = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
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


@pytest.fixture
def openai(model: FakeOpenAI) -> OpenAIClient:
    model.reset()
    return OpenAIClient(base=model.base_url, key=KEY)


# --- where the key may go ------------------------------------------------------------------------


@pytest.mark.parametrize("base", REFUSED_BASES)
def test_a_base_the_key_may_not_go_to_is_refused_naming_openai_base_url(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    with pytest.raises(RuntimeError, match="OPENAI_BASE_URL must be an https:// URL"):
        base_url()
    with pytest.raises(RuntimeError, match="OPENAI_BASE_URL"):
        OpenAIClient(key=KEY)


@pytest.mark.parametrize("base", ACCEPTED_BASES)
def test_https_or_plain_http_on_this_machine_is_accepted(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    assert base_url() == base.rstrip("/")


def test_unset_or_empty_base_is_openais(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "")  # an `.env` line `OPENAI_BASE_URL=`
    assert base_url() == "https://api.openai.com/v1"


def test_the_refusal_names_scheme_and_host_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:secret@api.example.com/v1?key=sk-x")
    with pytest.raises(RuntimeError) as refused:
        base_url()
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


def test_redirects_are_not_followed_so_the_key_stays_with_the_base(model: FakeOpenAI) -> None:
    elsewhere = FakeOpenAI()

    class Redirecting(FakeServer):
        def route(self, request: Recorded) -> Answer:
            return Answer(307, {}, {"Location": f"{elsewhere.base_url}/chat/completions"})

    redirecting = Redirecting()
    try:
        client = OpenAIClient(base=f"{redirecting.url}/v1", key=KEY)
        with pytest.raises(StatusError) as failed:
            client.chat(CHAT, timeout=5)
        assert failed.value.status == 307
        assert elsewhere.requests == []
    finally:
        redirecting.close()
        elsewhere.close()


# --- the wire ------------------------------------------------------------------------------------


def test_chat_posts_json_with_the_key_as_a_bearer_token_and_a_user_agent(
    openai: OpenAIClient, model: FakeOpenAI
) -> None:
    answer = openai.chat(CHAT, timeout=5)
    assert answer["choices"][0]["message"]["content"].startswith("echo: hi")
    [request] = model.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("WhatsBot")
    assert request.json() == CHAT


def test_no_key_sends_no_authorization(model: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model.reset()
    OpenAIClient(base=model.base_url).chat(CHAT, timeout=5)
    [request] = model.requests
    assert "Authorization" not in request.headers


def test_speech_answers_the_audio_bytes(openai: OpenAIClient, model: FakeOpenAI) -> None:
    body = {"model": "tts", "voice": "alloy", "input": "hello", "response_format": "opus"}
    assert openai.speech(body, timeout=5) == model.speech
    assert model.speeches() == [body]


def test_transcription_is_a_multipart_upload_of_model_and_file(
    openai: OpenAIClient, model: FakeOpenAI
) -> None:
    result = openai.transcription("whisper-test", ("voice.ogg", b"OggS...", "audio/ogg"), timeout=5)
    assert result == {"text": "a transcript from the fake"}
    [fields] = model.transcriptions()
    assert fields["file"] == ("voice.ogg", b"OggS...")
    assert fields["model"] == (None, b"whisper-test")


# --- failures ------------------------------------------------------------------------------------


def test_openais_error_body_becomes_status_code_type_and_message(
    openai: OpenAIClient, model: FakeOpenAI
) -> None:
    error = {
        "message": "This model's maximum context length is 128000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    model.fail("/chat/completions", 400, {"error": error})
    with pytest.raises(StatusError) as failed:
        openai.chat(CHAT, timeout=5)
    found = failed.value
    assert (found.status, found.code, found.type) == (400, "context_length_exceeded", "invalid_request_error")
    assert found.message == error["message"]
    assert str(found) == "HTTP 400 context_length_exceeded"  # what may be logged: no message, no body


def test_an_error_body_of_another_shape_keeps_its_text_as_the_message(
    openai: OpenAIClient, model: FakeOpenAI
) -> None:
    model.fail("/audio/speech", 502, b"<html>Bad Gateway</html>")
    with pytest.raises(StatusError) as failed:
        openai.speech({"model": "tts"}, timeout=5)
    assert (failed.value.status, failed.value.code, failed.value.type) == (502, None, None)
    assert failed.value.message == "<html>Bad Gateway</html>"


def test_no_answer_in_time_is_unreachable(openai: OpenAIClient, model: FakeOpenAI) -> None:
    model.fail("/chat/completions", 200, {"choices": []}, delay=2)
    with pytest.raises(Unreachable, match="ReadTimeout"):
        openai.chat(CHAT, timeout=0.5)


def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    with pytest.raises(Unreachable, match="ConnectionError"):
        OpenAIClient(base=f"http://127.0.0.1:{port}/v1", key=KEY).chat(CHAT, timeout=2)


# --- the retries of max_retries (the transcriber's; chat and speech retry within their deadline) -


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
def test_max_retries_retries_what_the_sdk_retried(model: FakeOpenAI, status: int) -> None:
    model.reset()
    model.fail("/audio/transcriptions", status, {"error": {"message": "busy"}})
    client = OpenAIClient(max_retries=1, base=model.base_url, key=KEY)
    assert client.transcription("m", ("voice.ogg", b"x", "audio/ogg"), timeout=5)["text"]
    assert [r.status for r in model.requests] == [status, 200]


def test_after_max_retries_the_last_failure_is_raised(model: FakeOpenAI) -> None:
    model.reset()
    model.fail("/audio/transcriptions", 429, {"error": {"message": "slow down"}}, times=3)
    client = OpenAIClient(max_retries=1, base=model.base_url, key=KEY)
    with pytest.raises(StatusError) as failed:
        client.transcription("m", ("voice.ogg", b"x", "audio/ogg"), timeout=5)
    assert failed.value.status == 429
    assert len(model.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 413])
def test_other_4xx_are_not_retried(model: FakeOpenAI, status: int) -> None:
    model.reset()
    model.fail("/audio/transcriptions", status, {"error": {"message": "no"}}, times=3)
    client = OpenAIClient(max_retries=2, base=model.base_url, key=KEY)
    with pytest.raises(StatusError):
        client.transcription("m", ("voice.ogg", b"x", "audio/ogg"), timeout=5)
    assert len(model.requests) == 1
