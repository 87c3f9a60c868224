"""Structured log lines: JSON with severity and message; ids digested and users masked by the sink."""

from __future__ import annotations

import hashlib
import json

import pytest

from common import log

WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzNzJFQTA4Q0FCMzNFNzFDMDJDNgA="  # holds 16505551234
# docs/logs.md: the digest is "m-" and the first 12 hex digits of the id's SHA-256.
WAMID_DIGEST = "m-" + hashlib.sha256(WAMID.encode()).hexdigest()[:12]


def logged(capsys: pytest.CaptureFixture[str], **fields: object) -> dict[str, object]:
    log.warning("something odd", **fields)
    [line] = capsys.readouterr().out.splitlines()
    return json.loads(line)


def test_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    record = logged(capsys, user=log.mask("16505551234"), parts=2)
    assert record["severity"] == "WARNING"
    assert record["message"] == "something odd"
    assert record["user"] == "***1234"
    assert record["parts"] == 2


def test_the_digest_is_short_stable_and_documented() -> None:
    assert log.digest(WAMID) == WAMID_DIGEST == log.digest(WAMID)
    assert len(WAMID_DIGEST) == 14
    assert log.digest(WAMID + "x") != WAMID_DIGEST


@pytest.mark.parametrize("key", ["message_id", "context_id"])
def test_id_fields_are_replaced_by_their_digest(capsys: pytest.CaptureFixture[str], key: str) -> None:
    assert logged(capsys, **{key: WAMID})[key] == WAMID_DIGEST


def test_a_digest_passed_in_is_kept_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert logged(capsys, message_id=WAMID_DIGEST)["message_id"] == WAMID_DIGEST


def test_a_wamid_anywhere_in_a_value_is_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    record = logged(capsys, reason=f"Graph API 400: bad id {WAMID}.", ids=[WAMID], extra={"quote": WAMID})
    assert WAMID not in json.dumps(record)
    assert record["reason"] == f"Graph API 400: bad id {WAMID_DIGEST}."
    assert record["ids"] == [WAMID_DIGEST]
    assert record["extra"] == {"quote": WAMID_DIGEST}


def test_other_objects_are_logged_as_scrubbed_text(capsys: pytest.CaptureFixture[str]) -> None:
    class Holder:
        def __str__(self) -> str:
            return f"Holder({WAMID})"

    assert logged(capsys, error=Holder())["error"] == f"Holder({WAMID_DIGEST})"


@pytest.mark.parametrize("key", ["user", "recipient", "to"])
def test_user_fields_are_masked_even_when_the_caller_forgot(
    capsys: pytest.CaptureFixture[str], key: str
) -> None:
    assert logged(capsys, **{key: "16505551234"})[key] == "***1234"
    assert logged(capsys, **{key: "US.13491208655302741918"})[key] == "***1918"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [("16505551234", "***1234"), ("1234", "***"), ("", ""), (None, ""), ("***1234", "***1234")],
)
def test_mask_keeps_at_most_the_last_four(raw: str | None, masked: str) -> None:
    assert log.mask(raw) == masked


def test_a_run_of_eight_digits_in_free_text_keeps_only_its_last_four(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = logged(
        capsys,
        reason="(#131000) could not send to +16505551234 (US.13491208655302741918)",
        detail=["wa_id=16505551234"],
    )
    assert record["reason"] == "(#131000) could not send to +***1234 (US.***1918)"
    assert record["detail"] == ["wa_id=***1234"]


@pytest.mark.parametrize(
    "kept",
    [
        "body over 3145728 bytes",  # 7 digits: a size, not a number to hide
        "m-123456789012",  # a digest
        "conversations/a1234567890b1234567890c",  # a hash, digits inside a word
        "graph_v25 code 1234567890abc",
    ],
)
def test_digits_inside_words_and_short_numbers_are_kept(
    capsys: pytest.CaptureFixture[str], kept: str
) -> None:
    assert logged(capsys, reason=kept)["reason"] == kept


def test_our_own_numeric_ids_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    record = logged(capsys, phone_number_id="106540352242922", event_id="17283746501234")
    assert record["phone_number_id"] == "106540352242922"
    assert record["event_id"] == "17283746501234"


def test_a_failure_names_its_causes_and_where_but_quotes_only_its_own_scrubbed_text() -> None:
    def fetch() -> None:
        raise ConnectionError(f"Max retries exceeded with url: /v1/documents/{WAMID}?to=16505551234")

    try:
        try:
            fetch()
        except ConnectionError as exc:
            raise RuntimeError("Firestore UNAVAILABLE: ConnectionError") from exc
    except RuntimeError as exc:
        failure = log.failure(exc)
    assert failure["error"] == "RuntimeError < ConnectionError"
    assert failure["where"].startswith("test_log.py:")
    assert failure["reason"] == "Firestore UNAVAILABLE: ConnectionError"
    assert "Max retries" not in json.dumps(failure)
