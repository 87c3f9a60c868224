"""Splitting long replies into WhatsApp-sized parts."""

from __future__ import annotations

import pytest

from common.meta.chunks import LIMIT, split_text, units


def test_short_text_is_one_part() -> None:
    assert split_text("hello") == ["hello"]
    assert split_text("") == [""]


def test_paragraphs_are_preferred_over_sentences() -> None:
    first = "A sentence. " * 300  # 3600 characters
    text = first + "\n\n" + "Another paragraph. " * 100
    parts = split_text(text)
    assert parts[0] == first + "\n\n"
    assert "".join(parts) == text


def test_sentences_then_words() -> None:
    text = "word " * 2000  # no sentence ends at all
    parts = split_text(text)
    assert all(units(p) <= LIMIT for p in parts)
    assert all(p.endswith(" ") for p in parts[:-1])  # cut after a space, never inside a word
    assert "".join(parts) == text


@pytest.mark.parametrize("emoji", ["👍🏽", "👨‍👩‍👧", "🇫🇷", "é"])
def test_never_inside_an_emoji_or_character(emoji: str) -> None:
    text = "x" + emoji * 3000  # no spaces: the hard cut must land between whole emoji
    parts = split_text(text)
    assert all(units(p) <= LIMIT for p in parts)
    assert "".join(parts) == text
    for part in parts[1:]:
        assert part.startswith(emoji)


def test_limit_counts_utf16_units() -> None:
    text = "😀" * 3000  # 6000 UTF-16 units, 3000 code points
    parts = split_text(text)
    assert len(parts) == 2
    assert units(parts[0]) == 4096
