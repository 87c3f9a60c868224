"""The payload model over the whole corpus of Meta's webhook payloads (tests/fixtures/webhook)."""

from __future__ import annotations

import copy

import pytest

from common.bus.envelope import Envelope
from common.meta.payload import (
    MessageType,
    NotWhatsApp,
    StatusType,
    parse_notification,
)
from tests.support.meta import all_fixtures, fixture


def raw_items(body: dict, kind: str) -> list:
    return [item for e in body["entry"] for c in e["changes"] for item in c["value"].get(kind, [])]


def business_numbers(body: dict) -> set[str]:
    return {c["value"]["metadata"]["phone_number_id"] for e in body["entry"] for c in e["changes"]}


@pytest.mark.parametrize("name", all_fixtures())
def test_every_fixture_parses_every_item_it_holds(name: str) -> None:
    body = fixture(name)
    parsed = parse_notification(body)
    raw_messages, raw_statuses = raw_items(body, "messages"), raw_items(body, "statuses")
    assert len(parsed.messages) + len(parsed.problems) == len(raw_messages)
    assert len(parsed.statuses) == len(raw_statuses)
    for message, raw in zip(parsed.messages, [m for m in raw_messages if m.get("id")], strict=True):
        assert message.id == raw["id"]
        assert message.raw_type == raw["type"]
        assert message.user in (raw.get("from_user_id"), raw.get("from"))
        assert message.phone_number_id in business_numbers(body)
        # the envelope carries everything and survives the trip through Pub/Sub
        envelope = Envelope.from_message(message)
        assert Envelope.from_bytes(envelope.to_bytes()) == envelope


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("messages/text", MessageType.TEXT),
        ("messages/audio_voice", MessageType.AUDIO),
        ("messages/image", MessageType.IMAGE),
        ("messages/video", MessageType.VIDEO),
        ("messages/document", MessageType.DOCUMENT),
        ("messages/sticker", MessageType.STICKER),
        ("messages/location", MessageType.LOCATION),
        ("messages/contacts", MessageType.CONTACTS),
        ("messages/interactive_button_reply", MessageType.INTERACTIVE),
        ("messages/button", MessageType.BUTTON),
        ("messages/reaction", MessageType.REACTION),
        ("messages/order", MessageType.ORDER),
        ("messages/system", MessageType.SYSTEM),
        ("messages/unsupported", MessageType.UNSUPPORTED),
    ],
)
def test_each_documented_type_is_recognised(name: str, kind: MessageType) -> None:
    [message] = parse_notification(fixture(name)).messages
    assert message.type is kind


def one(name: str):
    [message] = parse_notification(fixture(name)).messages
    return message


def test_text_carries_body_profile_and_reply_context() -> None:
    message = one("messages/text_reply_context")
    raw = raw_items(fixture("messages/text_reply_context"), "messages")[0]
    assert message.text == raw["text"]["body"]
    assert message.context_id == raw["context"]["id"]
    assert message.profile_name
    assert message.phone == message.user == raw["from"]


def test_voice_flag_distinguishes_voice_notes_from_audio_files() -> None:
    voice, audio_file = one("messages/audio_voice"), one("messages/audio_file")
    assert voice.media is not None and voice.media.voice is True
    assert voice.media.mime_type == "audio/ogg; codecs=opus"
    assert audio_file.media is not None and audio_file.media.voice is False


def test_media_captions_filenames_and_stickers() -> None:
    assert one("messages/image").text == one("messages/image").media.caption
    assert one("messages/document").media.filename == "receipt.pdf"
    assert one("messages/sticker").media.animated is True


def test_location_has_coordinates() -> None:
    location = one("messages/location").location
    assert location is not None
    assert isinstance(location.latitude, float) and isinstance(location.longitude, float)


def test_interactive_and_button_replies_read_as_the_user_words() -> None:
    button = one("messages/interactive_button_reply")
    listed = one("messages/interactive_list_reply")
    template = one("messages/button")
    assert button.reply.kind == "button_reply" and button.text == button.reply.title
    assert listed.reply.description and listed.text == f"{listed.reply.title} ({listed.reply.description})"
    raw = raw_items(fixture("messages/button"), "messages")[0]
    assert template.text == raw["button"]["text"] and template.reply.id == raw["button"]["payload"]


def test_an_empty_interactive_reply_has_no_words() -> None:
    message = one("messages/interactive_empty")
    assert message.type is MessageType.INTERACTIVE
    assert message.text is None


def test_reactions_and_their_removal() -> None:
    assert one("messages/reaction").reaction.emoji
    removed = one("messages/reaction_removed").reaction
    assert removed.removed and removed.message_id


def test_unsupported_messages_keep_their_errors() -> None:
    assert [e.code for e in one("messages/unsupported").errors] == [131051]


def test_missing_contacts_block_is_tolerated() -> None:
    message = one("messages/text_no_contacts")
    assert message.profile_name is None and message.user and message.text


def test_business_scoped_user_without_phone() -> None:
    message = one("messages/text_user_id")
    assert message.phone is None
    assert message.user == message.user_id == "US.13491208655302741918"
    assert message.reply_to == message.user_id
    assert message.profile_name == "Riley Chen"


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "played", "failed"])
def test_each_status(status: str) -> None:
    parsed = parse_notification(fixture(f"statuses/{status}"))
    assert parsed.messages == () and parsed.problems == ()
    [item] = parsed.statuses
    assert item.status is StatusType(status) and item.status is not StatusType.UNKNOWN
    assert item.recipient and item.message_id.startswith("wamid.")


def test_sent_has_pricing_read_has_none_failed_has_errors() -> None:
    [sent] = parse_notification(fixture("statuses/sent")).statuses
    [read] = parse_notification(fixture("statuses/read")).statuses
    [failed] = parse_notification(fixture("statuses/failed")).statuses
    assert sent.conversation_id and sent.pricing_category
    assert read.conversation_id is None and read.pricing_category is None
    assert [e.code for e in failed.errors] == [131047] and failed.errors[0].details


def test_value_level_errors() -> None:
    parsed = parse_notification(fixture("errors/value_error"))
    [change_error] = parsed.errors
    assert [e.code for e in change_error.errors] == [130429]


def test_batch_across_entries_and_changes() -> None:
    parsed = parse_notification(fixture("batches/mixed_3_messages_2_statuses"))
    assert len(parsed.messages) == 3 and len(parsed.statuses) == 2
    assert {m.type for m in parsed.messages} == {MessageType.TEXT, MessageType.IMAGE}
    assert len({m.user for m in parsed.messages}) >= 2


def test_one_malformed_item_is_reported_and_its_neighbours_kept() -> None:
    parsed = parse_notification(fixture("batches/one_malformed"))
    assert [m.type for m in parsed.messages] == [MessageType.TEXT, MessageType.AUDIO]
    [problem] = parsed.problems
    assert problem.where == "entry[0].changes[0].messages[1]"
    assert "id" in problem.reason


@pytest.mark.parametrize(
    "bad_item",
    [
        "a string",
        42,
        None,
        [],
        {"type": "text", "from": "16505550000"},
        {"id": "wamid.y", "type": "location", "from": "1", "location": {"latitude": "north"}},
    ],
)
def test_odd_items_become_problems_not_crashes(bad_item: object) -> None:
    body = copy.deepcopy(fixture("messages/text"))
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages.insert(0, bad_item)
    parsed = parse_notification(body)
    assert len(parsed.messages) == 1 and len(parsed.problems) == 1


def test_a_problem_names_the_key_never_the_value_it_could_not_read() -> None:
    """A problem's reason is logged: a value quoted there could be anything the sender typed."""
    body = copy.deepcopy(fixture("messages/text"))
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(type="location", location={"latitude": "meet me at +33612345678", "longitude": 2.35})
    [problem] = parse_notification(body).problems
    assert problem.reason == "location latitude is not a number"


def test_types_and_statuses_meta_adds_later_parse_as_unknown() -> None:
    body = copy.deepcopy(fixture("messages/text"))
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["type"] = "hologram"
    [parsed] = parse_notification(body).messages
    assert parsed.type is MessageType.UNKNOWN and parsed.raw_type == "hologram"
    status_body = copy.deepcopy(fixture("statuses/sent"))
    status_body["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "teleported"
    [status] = parse_notification(status_body).statuses
    assert status.status is StatusType.UNKNOWN


@pytest.mark.parametrize("body", [{"object": "page"}, [], "text", None, {"entry": []}])
def test_other_objects_are_refused(body: object) -> None:
    with pytest.raises(NotWhatsApp):
        parse_notification(body)


def test_broken_entries_and_changes_are_tolerated() -> None:
    body = {
        "object": "whatsapp_business_account",
        "entry": [None, {"changes": "nope"}, {"changes": [{"value": None}, "x"]}],
    }
    parsed = parse_notification(body)
    assert parsed.messages == ()
    assert [p.where for p in parsed.problems] == [
        "entry[0]",
        "entry[1]",
        "entry[2].changes[0]",
        "entry[2].changes[1]",
    ]  # every broken part is reported, so the webhook logs the skip
