"""Structured log lines: JSON with severity and message, phone numbers masked."""

from __future__ import annotations

import json

import pytest

from common import log


def test_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    log.warning("something odd", message_id="wamid.1", user=log.mask("16505551234"))
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["severity"] == "WARNING"
    assert record["message"] == "something odd"
    assert record["user"] == "***1234"
    assert record["message_id"] == "wamid.1"


@pytest.mark.parametrize(
    ("raw", "masked"), [("16505551234", "***1234"), ("1234", "***"), ("", ""), (None, "")]
)
def test_mask_keeps_at_most_the_last_four(raw: str | None, masked: str) -> None:
    assert log.mask(raw) == masked
