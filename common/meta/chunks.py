"""Split a long reply into WhatsApp-sized parts: on paragraphs, then sentences, then words.

Parts are measured in UTF-16 code units (how Meta counts), never cut inside a character or an
emoji sequence, and joined back they give the original text exactly.
"""

from __future__ import annotations

import re
import unicodedata

LIMIT = 4096
# Where a part may end, best first: after a blank line, a line, a sentence, a space.
BREAKS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"[.!?…。\uff01\uff1f]\s+"),
    re.compile(r"\s+"),
)
JOINERS = {"\u200d", "\ufe0f", "\ufe0e", "\u20e3"}  # zero-width joiner, variation selectors, keycap


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = LIMIT) -> list[str]:
    parts = []
    while units(text) > limit:
        cut = _best_cut(text, _fit(text, limit))
        parts.append(text[:cut])
        text = text[cut:]
    if text or not parts:
        parts.append(text)
    return parts


def _fit(text: str, limit: int) -> int:
    """How many characters fit in `limit` UTF-16 units."""
    count = total = 0
    for char in text:
        total += 2 if ord(char) > 0xFFFF else 1
        if total > limit:
            break
        count += 1
    return count


def _best_cut(text: str, end: int) -> int:
    window = text[:end]
    for pattern in BREAKS:
        cuts = [m.end() for m in pattern.finditer(window) if m.end() > end // 2]
        if cuts:
            return cuts[-1]
    return _safe_cut(text, end)


def _safe_cut(text: str, end: int) -> int:
    """Back off so that no combining mark, joiner or skin-tone modifier starts the next part."""
    cut = end
    while cut > 1 and (_binds(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    if _regional(text[cut]):  # flags are pairs of regional indicators: never split a pair
        run = 0
        while cut - run > 0 and _regional(text[cut - run - 1]):
            run += 1
        cut -= run % 2
    return cut if cut > 1 else end


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _binds(char: str) -> bool:
    return (
        char in JOINERS
        or unicodedata.combining(char) != 0
        or 0x1F3FB <= ord(char) <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= ord(char) <= 0xE007F  # tag characters (flag sequences)
    )
