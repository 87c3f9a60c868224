"""The bot sees: images, documents, locations and contacts, from the webhook to the reply.

Real files (tests/support/files.py), the real webhook and responder on the emulators; the Graph
API (media) and the model are the loopback fakes, so every assertion is about what went over the
wire or into Firestore.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests
from google.cloud import firestore

from common.bus.envelope import Card, Envelope, MediaRef, Place
from common.responder.texts import DEFAULTS
from common.store.claims import doc_id
from local import emulators as emu
from local.functions import FunctionProcess, serve
from local.simulator.server import create_app
from tests.conftest import APP_SECRET, TOPIC_AUDIO, stand_in_env
from tests.support import files
from tests.support.delivery import deliver
from tests.support.fakes import FakeGraph, FakeOpenAI, graph_error
from tests.support.meta import fixture_bytes, signed_headers
from tests.support.pubsub import Topics
from tests.support.wait import wait_for

BUSINESS = "106540352242922"
USER = "15550107788"
SETTINGS = {
    "OPENAI_MODEL": "chat-model",
    "VISION_MODEL": "vision-model",
    "OPENAI_MAX_RETRIES": "0",
    "MAX_DOCUMENT_PAGES": "3",
    "TYPING_REFRESH_SECONDS": "1",
    "OPENAI_TIMEOUT_SECONDS": "3",  # a chat call; an image or PDF call may take VISION_TIMEOUT_SECONDS
    "VISION_TIMEOUT_SECONDS": "20",
    # an attempt may work 30 s (the slow model below takes 4); the lease margin is lowered for tests
    "ATTEMPT_TIMEOUT_SECONDS": "30",
    "CLAIM_LEASE_SECONDS": "31",
    "CLAIM_LEASE_MARGIN_SECONDS": "1",
}
_ids = itertools.count(int(time.time()) * 1000)


@pytest.fixture(scope="module")
def responder(emulators: emu.Emulators, graph: FakeGraph, model: FakeOpenAI) -> Iterator[FunctionProcess]:
    function = serve("responder", stand_in_env(emulators, graph, model, **SETTINGS))
    yield function
    function.stop()


@pytest.fixture
def db(db: firestore.Client, model: FakeOpenAI) -> firestore.Client:
    """conftest's db, with a model that echoes the user's words."""
    model.answer = echo_words
    return db


def sent_media(
    graph: FakeGraph,
    kind: str,
    data: bytes,
    mime_type: str,
    caption: str | None = None,
    filename: str | None = None,
    declared_size: int | None = None,
) -> Envelope:
    """An envelope for media the fake Graph API holds, as the webhook publishes it."""
    media_id = str(next(_ids))
    graph.add_media(media_id, data, mime_type, declared_size)
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    ref = MediaRef(media_id, mime_type, sha, filename=filename)
    return message(kind, text=caption, media=ref)


def echo_words(messages: list[dict]) -> str:
    """echo_model for turns made of parts: their text parts only (never a base64 payload)."""
    content = messages[-1]["content"]
    words = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    return f"echo: {words[:200]} (turns seen: {len(messages)})"


def message(kind: str, **fields: object) -> Envelope:
    envelope = Envelope(f"wamid.{uuid.uuid4().hex}", USER, USER, BUSINESS, kind, int(time.time()))
    return replace(envelope, **fields)


def stored(db: firestore.Client) -> list[dict]:
    return (db.collection("conversations").document(doc_id(USER)).get().to_dict() or {}).get("turns", [])


def replies(graph: FakeGraph) -> list[str]:
    return [s["text"]["body"] for s in graph.sent()]


def asked(model: FakeOpenAI, index: int = -1) -> dict:
    """The user's last turn in a chat request."""
    return model.chats()[index]["messages"][-1]


# --- images -----------------------------------------------------------------------------------


def test_a_photo_with_a_caption_goes_to_the_vision_model_as_an_image_part(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    jpeg = files.jpeg(320, 240)
    envelope = sent_media(graph, "image", jpeg, "image/jpeg", caption="What is on this picture?")
    assert deliver(responder, envelope) == 200
    [chat] = model.chats()
    assert chat["model"] == "vision-model"
    text, image = chat["messages"][-1]["content"]
    assert text == {"type": "text", "text": "What is on this picture?"}
    assert image["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    [reply] = replies(graph)
    user, answer = stored(db)
    assert user["content"] == f"[image: JPEG, 320x240, {len(jpeg) / 1024:.1f} KB] What is on this picture?"
    assert answer["content"] == reply


def test_a_png_without_caption_is_asked_about_with_the_image_prompt(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    png = files.png(64, 48)
    assert deliver(responder, sent_media(graph, "image", png, "image/png")) == 200
    text, image = asked(model)["content"]
    assert text["text"] == DEFAULTS["IMAGE_PROMPT"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert stored(db)[0]["content"] == f"[image: PNG, 64x48, {len(png)} bytes]"


def test_an_image_over_the_limit_is_refused_before_download(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = sent_media(graph, "image", files.png(8, 8), "image/png", declared_size=6 * 1024 * 1024)
    assert deliver(responder, envelope) == 200
    expected = DEFAULTS["MEDIA_TOO_LARGE_TEXT"].format(image_mb=5, document_mb=20, pages=3)
    assert replies(graph) == [expected]
    assert graph.downloads() == [] and model.chats() == []


def test_an_image_whose_bytes_are_no_image_gets_the_unsupported_file_reply(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = sent_media(graph, "image", b"\x00\x01 not an image at all", "image/jpeg")
    assert deliver(responder, envelope) == 200
    assert replies(graph) == [DEFAULTS["UNSUPPORTED_FILE_TEXT"]]
    assert model.chats() == []


# A WebP cut off in its first chunk header (20 bytes or fewer: the VP8X flags, the VP8L size) and
# a PDF whose cross-reference offset is past any file (pypdf: OverflowError): bytes no reader can
# make sense of, whatever it raises.
TINY_VP8X = b"RIFF\x0c\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00"
TINY_VP8L = b"RIFF\x0c\x00\x00\x00WEBPVP8L\x05\x00\x00\x00"
BROKEN = [
    ("sticker", TINY_VP8X, "image/webp", None),
    ("image", TINY_VP8L, "image/webp", None),
    ("document", files.pdf(2, startxref=10**20), "application/pdf", "statement.pdf"),
]


@pytest.mark.parametrize(("kind", "data", "mime_type", "filename"), BROKEN, ids=["vp8x", "vp8l", "pdf"])
def test_a_file_no_reader_understands_is_answered_at_the_first_attempt(
    responder: FunctionProcess,
    graph: FakeGraph,
    model: FakeOpenAI,
    db: firestore.Client,
    kind: str,
    data: bytes,
    mime_type: str,
    filename: str | None,
) -> None:
    """One delivery, acknowledged, one polite reply: the same bytes would fail every retry."""
    envelope = sent_media(graph, kind, data, mime_type, filename=filename)
    assert deliver(responder, envelope) == 200
    assert replies(graph) == [DEFAULTS["UNSUPPORTED_FILE_TEXT"]]
    assert model.chats() == []
    assert len(graph.downloads()) == 1


def test_media_the_graph_api_does_not_know_gets_the_download_failed_reply(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = message("image", media=MediaRef("987654321", "image/jpeg"))  # 404, code 100
    assert deliver(responder, envelope) == 200
    assert replies(graph) == [DEFAULTS["MEDIA_FAILED_TEXT"]]
    assert model.chats() == []


def test_a_token_error_on_the_media_is_an_outage_retried_not_answered(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = sent_media(graph, "image", files.png(16, 16), "image/png")
    assert envelope.media is not None
    graph.fail(f"/{graph.version}/{envelope.media.id}", 401, graph_error(190, "Invalid OAuth access token."))
    logged_before = len(responder.log_text())
    assert deliver(responder, envelope) == 500  # never answered: Pub/Sub retries, then dead-letters
    assert graph.sent() == [] and model.chats() == []
    assert '"alert": "graph_auth"' in responder.log_text()[logged_before:]
    assert deliver(responder, envelope) == 200  # the token works again
    assert len(replies(graph)) == 1


def test_a_model_without_vision_400_gets_the_specific_reply_once(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    error = {"error": {"message": "image input not supported", "type": "invalid_request_error"}}
    model.fail("/chat/completions", 400, error, times=3)
    envelope = sent_media(graph, "image", files.png(16, 16), "image/png")
    assert deliver(responder, envelope) == 200
    assert deliver(responder, envelope) == 200  # a redelivery changes nothing
    assert replies(graph) == [DEFAULTS["MEDIA_REFUSED_TEXT"]]
    assert len(model.chats()) == 1


def test_a_model_503_is_redelivered_the_image_fetched_again_and_answered_once(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.fail("/chat/completions", 503, {"error": {"message": "overloaded"}})
    envelope = sent_media(graph, "image", files.png(16, 16), "image/png", caption="and this?")
    assert deliver(responder, envelope) == 500  # Pub/Sub redelivers
    assert graph.sent() == []
    assert deliver(responder, envelope) == 200
    assert deliver(responder, envelope) == 200  # and a late duplicate is acknowledged
    assert len(replies(graph)) == 1
    assert len(graph.downloads()) == 2  # a fresh url each attempt: bytes are never kept
    assert len(model.chats()) == 2


def test_a_static_sticker_is_seen_as_a_webp_image(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    sticker = files.webp(96, 64)
    assert deliver(responder, sent_media(graph, "sticker", sticker, "image/webp")) == 200
    text, image = asked(model)["content"]
    assert text["text"] == DEFAULTS["IMAGE_PROMPT"]
    assert image["image_url"]["url"] == "data:image/webp;base64," + base64.b64encode(sticker).decode()
    assert stored(db)[0]["content"].startswith("[sticker: WebP, 96x64, ")


def test_an_animated_sticker_the_webhook_did_not_flag_is_found_out_by_its_bytes(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(responder, sent_media(graph, "sticker", files.webp(96, 64, frames=3), "image/webp")) == 200
    assert asked(model)["content"] == "[The user sent an animated sticker.]"
    assert model.chats()[0]["model"] == "chat-model"


def test_an_animated_sticker_becomes_words_without_a_download(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = message("sticker", media=MediaRef("123456", "image/webp", animated=True))
    assert deliver(responder, envelope) == 200
    assert asked(model)["content"] == "[The user sent an animated sticker.]"
    assert model.chats()[0]["model"] == "chat-model"
    assert graph.downloads() == []


# --- documents --------------------------------------------------------------------------------


def test_a_pdf_is_a_file_part_its_stand_in_is_stored_and_a_follow_up_is_answered_from_it(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    pdf = files.pdf(2)
    model.answer = lambda messages: "The receipt's total is 42.50 EUR."
    envelope = sent_media(graph, "document", pdf, "application/pdf", filename="receipt.pdf")
    assert deliver(responder, envelope) == 200
    [chat] = model.chats()
    assert chat["model"] == "vision-model"
    text, part = chat["messages"][-1]["content"]
    assert text == {"type": "text", "text": DEFAULTS["DOCUMENT_PROMPT"]}
    assert part["type"] == "file"
    assert part["file"] == {
        "filename": "receipt.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(pdf).decode(),
    }
    user, answer = stored(db)
    assert user["content"] == f'[document "receipt.pdf": PDF, 2 pages, {len(pdf)} bytes]'
    assert answer["content"] == "The receipt's total is 42.50 EUR."

    model.answer = echo_words
    assert deliver(responder, message("text", text="What was the total on that receipt?")) == 200
    prompt = model.chats()[-1]["messages"]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1]["content"] == user["content"]  # the stand-in, not the bytes
    assert prompt[2]["content"] == "The receipt's total is 42.50 EUR."
    assert len(graph.downloads()) == 1
    assert "base64" not in repr(stored(db))


def test_a_text_document_is_read_as_text_with_its_caption(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    data = files.TEXT.encode()
    envelope = sent_media(
        graph, "document", data, "text/csv", caption="How much in total?", filename="costs.csv"
    )
    assert deliver(responder, envelope) == 200
    [chat] = model.chats()
    assert chat["model"] == "chat-model"  # plain text needs no vision
    content = chat["messages"][-1]["content"]
    assert content.startswith("How much in total?")
    assert files.TEXT in content
    assert stored(db)[0]["content"] == f'[document "costs.csv": text, {len(data)} bytes] How much in total?'


def test_a_word_document_gets_the_reply_naming_what_the_bot_reads_without_download(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    envelope = sent_media(graph, "document", files.docx(), docx_type, filename="letter.docx")
    assert deliver(responder, envelope) == 200
    [reply] = replies(graph)
    assert reply == DEFAULTS["UNSUPPORTED_FILE_TEXT"]
    assert "PDF" in reply and "txt" in reply
    assert graph.downloads() == [] and model.chats() == []


def test_a_docx_named_pdf_is_found_out_by_its_bytes(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = sent_media(graph, "document", files.docx(), "application/pdf", filename="letter.pdf")
    assert deliver(responder, envelope) == 200
    assert replies(graph) == [DEFAULTS["UNSUPPORTED_FILE_TEXT"]]
    assert model.chats() == []


def test_a_pdf_over_the_page_limit_is_refused(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    envelope = sent_media(graph, "document", files.pdf(4), "application/pdf", filename="long.pdf")
    assert deliver(responder, envelope) == 200
    assert replies(graph) == [DEFAULTS["MEDIA_TOO_LARGE_TEXT"].format(image_mb=5, document_mb=20, pages=3)]
    assert model.chats() == []


# --- locations and contacts -------------------------------------------------------------------


def test_a_location_is_answered_with_its_content_in_the_prompt(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    place = Place(37.44221496582, -122.16165924072, "Philz Coffee", "101 Forest Ave, Palo Alto")
    assert deliver(responder, message("location", location=place)) == 200
    words = asked(model)["content"]
    assert "Philz Coffee" in words and "101 Forest Ave, Palo Alto" in words
    assert "37.442215" in words and "-122.161659" in words
    assert len(replies(graph)) == 1


def test_a_contact_is_answered_with_its_content_in_the_prompt(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    card = Card("Barbara J. Johnson", ("+1 (415) 555-0829",), ("bjohnson@example.com",), "Social Tsunami")
    assert deliver(responder, message("contacts", contacts=(card,))) == 200
    words = asked(model)["content"]
    assert "Barbara J. Johnson" in words and "+1 (415) 555-0829" in words and "Social Tsunami" in words
    assert len(replies(graph)) == 1


# --- the typing indicator ---------------------------------------------------------------------


def test_a_slow_answer_keeps_the_typing_indicator_and_none_follows_the_reply(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.delay = 4.0  # four refresh intervals (TYPING_REFRESH_SECONDS=1), past OPENAI_TIMEOUT_SECONDS
    envelope = sent_media(graph, "image", files.png(16, 16), "image/png")
    assert deliver(responder, envelope) == 200
    typing = [
        r for r in list(graph.requests) if r.path.endswith("/messages") and r.json().get("typing_indicator")
    ]
    [send] = [r for r in list(graph.requests) if FakeGraph.is_text_send(r)]
    assert len(typing) >= 3  # the read receipt's indicator, then refreshes while the model thinks
    assert all(r.json()["message_id"] == envelope.message_id for r in typing)
    assert all(r.at < send.at for r in typing)
    # nothing more comes, though two more intervals pass
    assert not wait_for(lambda: len([r for r in graph.requests if r.at > send.at]) > 0, timeout=2.5)


def test_a_text_call_as_slow_times_out_and_is_redelivered(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    model.delay = 4.0  # over OPENAI_TIMEOUT_SECONDS=3: vision calls alone get the longer timeout
    envelope = message("text", text="quick question")
    assert deliver(responder, envelope) == 500
    model.delay = 0.0
    assert deliver(responder, envelope) == 200
    assert len(replies(graph)) == 1


def test_a_quick_answer_sends_one_indicator(
    responder: FunctionProcess, graph: FakeGraph, model: FakeOpenAI, db: firestore.Client
) -> None:
    assert deliver(responder, message("text", text="hi")) == 200
    assert len(graph.reads()) == 1


# --- the webhook publishes what the responder needs -------------------------------------------


def test_the_webhook_publishes_media_locations_and_contacts_for_the_responder(
    webhook: FunctionProcess, topics: Topics
) -> None:
    names = ("image", "document", "sticker", "location", "contacts")
    for name in names:
        body = fixture_bytes(f"messages/{name}")
        headers = signed_headers(body, APP_SECRET)
        assert requests.post(webhook.url, data=body, headers=headers, timeout=30).status_code == 200
    published = {e.type: e for e in (Envelope.from_bytes(r.data) for r in topics.pull(TOPIC_AUDIO, expect=5))}
    assert set(published) == set(names)
    image, document = published["image"], published["document"]
    assert image.media and image.media.id == "1003383421387256" and image.text == "Black Ceramic Cup"
    assert image.media.mime_type == "image/jpeg" and image.media.sha256
    assert document.media and document.media.filename == "receipt.pdf" and document.text == "my receipt"
    assert published["sticker"].media and published["sticker"].media.animated
    assert published["location"].location == Place(
        37.44221496582, -122.16165924072, "Philz Coffee", "101 Forest Ave, Palo Alto, CA 94301"
    )
    [card] = published["contacts"].contacts
    assert card == Card(
        "Barbara J. Johnson", ("+1 (415) 555-0829",), ("bjohnson@example.com",), "Social Tsunami"
    )


def test_the_simulator_sends_an_attached_document_as_whatsapp_does(
    webhook: FunctionProcess, topics: Topics
) -> None:
    app = create_app(webhook.url, APP_SECRET, "sim-graph-token", simulator_token="sim-token")
    pdf = files.pdf(2)
    form = {"user": USER, "text": "the total?", "file": (io.BytesIO(pdf), "receipt.pdf")}
    client = app.test_client()
    answer = client.post("/api/messages", data=form, headers={"X-Simulator-Token": "sim-token"})
    assert answer.status_code == 200, answer.json
    [received] = topics.pull(TOPIC_AUDIO, expect=1)
    envelope = Envelope.from_bytes(received.data)
    assert envelope.type == "document" and envelope.text == "the total?"
    assert envelope.media and envelope.media.filename == "receipt.pdf"
    assert envelope.media.mime_type == "application/pdf"
    assert envelope.media.sha256 == base64.b64encode(hashlib.sha256(pdf).digest()).decode()
    stored_media = app.extensions["store"].media[envelope.media.id]
    assert stored_media.data == pdf
