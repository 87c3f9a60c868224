"""The texts the docs give as defaults are what the running responder says and asks.

The expected values are read from the "Default texts" table of docs/configuration.md, not from
the code, so a default changed in one place and not the other fails here.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.bus.envelope import Envelope, MediaRef
from local import emulators as emu
from local.functions import FunctionProcess, serve
from tests.conftest import PROJECT, stand_in_env
from tests.support import files
from tests.support.delivery import deliver as push
from tests.support.fakes import FakeGraph, FakeOpenAI

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
TEXTS = ("SYSTEM_PROMPT", "VOICE_PROMPT", "HELP_TEXT", "RESET_TEXT", "UNSUPPORTED_TEXT", "VOICE_FAILED_TEXT")
TEXTS += ("MODEL_ERROR_TEXT", "NOT_ALLOWED_TEXT", "LIMIT_TEXT", "BUSY_TEXT", "SHORTENED_TEXT")
TEXTS += ("IMAGE_PROMPT", "DOCUMENT_PROMPT", "MEDIA_FAILED_TEXT", "MEDIA_TOO_LARGE_TEXT")
TEXTS += ("UNSUPPORTED_FILE_TEXT", "MEDIA_REFUSED_TEXT")
USER = "15550104455"


def documented() -> dict[str, str]:
    """The "Default texts" table: variable -> text (its `\\n` as new lines)."""
    section = DOCS.read_text().split("\n## Default texts\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| `(.*)` \|$", section, re.MULTILINE)
    return {name: text.replace("\\n", "\n") for name, text in rows}


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    unset = {name: "" for name in TEXTS} | {"VOICE_MODE": ""}  # empty counts as unset
    function = serve("responder", stand_in_env(emulators, graph, model, OPENAI_MAX_RETRIES="0", **unset))
    yield function
    function.stop()


@pytest.fixture(autouse=True)
def _clean(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> None:
    emulators.wipe(PROJECT)
    graph.reset()
    model.reset()


def envelope(kind: str = "text", text: str | None = None, **extra: object) -> Envelope:
    return Envelope(
        f"wamid.{uuid.uuid4().hex}", USER, USER, "106540352242922", kind, int(time.time()), text, **extra
    )


def deliver(responder: FunctionProcess, item: Envelope) -> None:
    assert push(responder, item) == 200  # handled and acknowledged


def sent(graph: FakeGraph) -> list[str]:
    return [s["text"]["body"] for s in graph.sent()]


def test_the_readme_documents_every_default_text() -> None:
    assert set(documented()) == set(TEXTS)


@pytest.mark.parametrize(("name", "words"), [("RESET_TEXT", "/reset"), ("HELP_TEXT", "/help")])
def test_commands_answer_with_the_documented_text(
    responder: FunctionProcess, graph: FakeGraph, name: str, words: str
) -> None:
    deliver(responder, envelope(text=words))
    assert sent(graph) == [documented()[name]]


def test_the_model_gets_the_documented_system_prompt(responder: FunctionProcess, model: FakeOpenAI) -> None:
    deliver(responder, envelope(text="hello"))
    [chat] = model.chats()
    assert chat["messages"][0] == {"role": "system", "content": documented()["SYSTEM_PROMPT"]}


def test_a_transcript_is_wrapped_in_the_documented_voice_prompt(
    responder: FunctionProcess, model: FakeOpenAI
) -> None:
    transcript = "buy milk and call the plumber"
    note = envelope("audio", transcript, media=MediaRef("123", "audio/ogg", None, True), transcript=True)
    deliver(responder, note)
    [chat] = model.chats()
    assert chat["messages"][-1] == {
        "role": "user",
        "content": documented()["VOICE_PROMPT"].replace("{transcript}", transcript),
    }


def test_a_video_gets_the_documented_unsupported_text(responder: FunctionProcess, graph: FakeGraph) -> None:
    deliver(responder, envelope("video", media=MediaRef("4321", "video/mp4")))
    assert sent(graph) == [documented()["UNSUPPORTED_TEXT"]]


def test_an_image_without_caption_is_asked_with_the_documented_image_prompt(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    graph.add_media("5432", files.png(4, 4), "image/png")
    model.answer = lambda messages: "a red square"
    deliver(responder, envelope("image", media=MediaRef("5432", "image/png")))
    [chat] = model.chats()
    assert chat["messages"][-1]["content"][0] == {"type": "text", "text": documented()["IMAGE_PROMPT"]}


def test_a_word_file_gets_the_documented_unsupported_file_text(
    responder: FunctionProcess, graph: FakeGraph
) -> None:
    media = MediaRef("6543", "application/msword", None, filename="letter.doc")
    deliver(responder, envelope("document", media=media))
    assert sent(graph) == [documented()["UNSUPPORTED_FILE_TEXT"]]


def test_a_failed_transcription_gets_the_documented_text(
    responder: FunctionProcess, graph: FakeGraph
) -> None:
    media = MediaRef("789", "audio/ogg", None, True)
    deliver(responder, envelope("audio", media=media, transcript=True, transcription_error="undecodable"))
    assert sent(graph) == [documented()["VOICE_FAILED_TEXT"]]


def test_a_model_refusal_gets_the_documented_apology(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI
) -> None:
    model.fail(
        "/chat/completions", 400, {"error": {"message": "bad request", "type": "invalid_request_error"}}
    )
    deliver(responder, envelope(text="hello"))
    assert sent(graph) == [documented()["MODEL_ERROR_TEXT"]]


def test_a_stranger_gets_the_documented_not_allowed_text(
    responder: FunctionProcess, graph: FakeGraph
) -> None:
    deliver(responder, envelope(refused="not_allowed"))
    assert sent(graph) == [documented()["NOT_ALLOWED_TEXT"]]
