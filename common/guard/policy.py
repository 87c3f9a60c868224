"""The guardrail settings and the pure decisions on them: who is who, which day it is, what is stale.

Everything here is read from the environment once per instance (`Policy.from_env`) and needs no
Firestore: the allowlist, admin ids, per-user daily limits, the day boundary (`LIMITS_TIMEZONE`),
the message age limit and the cap on the parts of one reply.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from common import config
from common.meta.chunks import LIMIT, units

TEXT_DEFAULTS = {
    "NOT_ALLOWED_TEXT": "Sorry, this number only answers registered users.",
    "LIMIT_TEXT": "You have reached today's limit. I can answer again after {reset}.",
    "BUSY_TEXT": "Sorry, I am very busy today and cannot answer. Please try again tomorrow.",
    "SHORTENED_TEXT": "(answer shortened)",
}
CHARS_PER_TOKEN = 4  # a rough English average: MAX_REPLY_PARTS -> the model's max_completion_tokens


def normalize(user: str) -> str:
    """A phone number in any usual spelling (+44 20-7946 0000) becomes its digits; a BSUID stays."""
    user = user.strip()
    digits = re.sub(r"[\s()+.-]", "", user)
    return digits if digits.isdigit() else user


def id_set(raw: str | None) -> frozenset[str]:
    return frozenset(normalize(part) for part in (raw or "").split(",") if part.strip())


def ids_of(*known: str | None) -> frozenset[str]:
    """Every id one sender is known by (phone number and/or business-scoped id)."""
    return frozenset(normalize(i) for i in known if i)


@dataclass(frozen=True, slots=True)
class Policy:
    allowed: frozenset[str]  # empty = everyone
    admins: frozenset[str]
    max_turns: int  # model turns per user per day; 0 = no limit
    max_tokens: int  # model tokens (prompt + completion) per user per day; 0 = no limit
    max_audio_seconds: float  # voice-note seconds per user per day; 0 = no limit
    budget: int  # tokens per day for the whole bot; 0 = no ceiling
    timezone: ZoneInfo
    max_age_hours: float  # 0 = never stale
    max_parts: int
    texts: dict[str, str]
    echo_pause_hours: float = 0  # coexistence: an answer from the Business app pauses the bot

    @classmethod
    def from_env(cls) -> Policy:
        def text(name: str) -> str:
            value = config.get(name) or TEXT_DEFAULTS[name]  # empty counts as unset, as everywhere
            return "" if value == "-" else value.replace("\\n", "\n")  # "-": say nothing

        return cls(
            allowed=id_set(config.get("ALLOWED_USERS")),
            admins=id_set(config.get("ADMIN_USERS")),
            max_turns=int(config.number("MAX_TURNS_PER_DAY", 0)),
            max_tokens=int(config.number("MAX_TOKENS_PER_DAY", 0)),
            max_audio_seconds=config.number("MAX_AUDIO_SECONDS_PER_DAY", 0),
            budget=int(config.number("DAILY_TOKEN_BUDGET", 0)),
            timezone=ZoneInfo(config.get("LIMITS_TIMEZONE") or "UTC"),
            max_age_hours=config.number("MAX_MESSAGE_AGE_HOURS", 23),
            max_parts=max(1, int(config.number("MAX_REPLY_PARTS", 3))),
            texts={name: text(name) for name in TEXT_DEFAULTS},
            echo_pause_hours=config.number("ECHO_PAUSE_HOURS", 0),
        )

    def allows(self, ids: frozenset[str]) -> bool:
        return not self.allowed or bool(ids & self.allowed)

    def is_admin(self, ids: frozenset[str]) -> bool:
        return bool(ids & self.admins)

    def day(self, now: datetime | None = None) -> str:
        """Today in LIMITS_TIMEZONE, e.g. "2026-11-26": the key of every daily counter."""
        return (now or datetime.now(UTC)).astimezone(self.timezone).date().isoformat()

    def resets_at(self, now: datetime | None = None) -> str:
        """When today's counters start again, in the users' time zone: "2026-11-27 00:00 UTC"."""
        local = (now or datetime.now(UTC)).astimezone(self.timezone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), self.timezone)
        return midnight.strftime("%Y-%m-%d %H:%M ") + (midnight.tzname() or str(self.timezone))

    def stale(self, timestamp: int, now: float | None = None) -> bool:
        """Sent more than MAX_MESSAGE_AGE_HOURS ago (a burst of retries after an outage)."""
        age = (time.time() if now is None else now) - timestamp
        return self.max_age_hours > 0 and timestamp > 0 and age > self.max_age_hours * 3600

    def model_max_tokens(self) -> int:
        """OPENAI_MAX_TOKENS if set, else what fits in MAX_REPLY_PARTS messages."""
        return int(config.number("OPENAI_MAX_TOKENS", self.max_parts * LIMIT // CHARS_PER_TOKEN))

    def cap(self, parts: list[str], taken: int = 0) -> list[str]:
        """At most MAX_REPLY_PARTS messages, `taken` of them already used (a voice note): the
        last one kept is cut at a break, with a note."""
        room = max(self.max_parts - taken, 1)
        if len(parts) <= room:
            return parts
        note = "\n\n" + self.texts["SHORTENED_TEXT"]
        kept, last = parts[: room - 1], parts[room - 1]
        space = LIMIT - units(note)
        while units(last) > space:
            last = last[: len(last) - (units(last) - space)]
        cut = max(last.rfind("\n"), last.rfind(". "), last.rfind(" "))
        if cut > len(last) // 2:
            last = last[: cut + 1]
        return [*kept, last.rstrip() + note]
