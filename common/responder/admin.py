"""Commands for the humans in charge (`ADMIN_USERS`): /pause, /resume, /stats; and /usage for all.

Recognised only from an admin id (the guard checks); from anyone else they are ordinary text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from common.guard.policy import Policy, normalize
from common.store import history
from common.store.counters import FOREVER, Usage

if TYPE_CHECKING:
    from common.responder.guardrails import Guard

_DURATION = re.compile(r"(\d+)\s*([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def duration(word: str) -> timedelta | None:
    """`30m`, `2h`, `1d` → a timedelta; anything else None."""
    match = _DURATION.fullmatch(word)
    return timedelta(**{_UNITS[match[2]]: int(match[1])}) if match else None


def run(command: str, guard: Guard) -> str | None:
    """The admin's answer, or None when the text is not an admin command (it goes to the model)."""
    words = command.split()
    name, args = words[0], words[1:]
    if name == "/stats" and not args:
        return stats(guard)
    if name not in ("/pause", "/resume") or len(args) > 2:
        return None
    user = normalize(args[0]) if args and duration(args[0]) is None else None
    rest = args[1:] if user else args
    if name == "/resume":
        if rest:
            return None
        guard.pauses.resume(user)
        return f"Resumed {'answers for ' + user if user else 'answers for everyone'}."
    length = duration(rest[0]) if rest else None
    if (rest and length is None) or len(rest) > 1:
        return None
    until = datetime.now(UTC) + length if length else FOREVER
    guard.pauses.pause(user, until)
    who = user or "everyone"
    when = f"until {until:%Y-%m-%d %H:%M} UTC" if length else "until /resume"
    return f"Paused {who} {when}: their messages are stored, not answered."


def usage_text(usage: Usage, policy: Policy) -> str:
    """/usage: what the user has used and has left today."""

    def line(what: str, used: float, limit: float) -> str:
        left = "no limit" if not limit else f"{max(0, limit - used):g} left"
        return f"{what}: {used:g} used, {left}"

    return "\n".join(
        [
            f"Today ({usage.day}):",
            line("messages answered", usage.turns, policy.max_turns),
            line("tokens", usage.tokens, policy.max_tokens),
            line("voice-note seconds", round(usage.audio), policy.max_audio_seconds),
            f"Resets at {policy.resets_at()}.",
        ]
    )


def stats(guard: Guard) -> str:
    """/stats: today's totals over every user (1 read per user active today; admins only)."""
    day = guard.policy.day()
    fields = ["usageTurns", "usageTokens", "usageAudio", "usageMessages"]
    today = guard.db.where_equal(history.COLLECTION, "usageDay", day, select=fields)
    found = [Usage.of({"usageDay": day, **document}, day) for document in today]
    users, messages = len(found), sum(u.messages for u in found)
    tokens, audio = sum(u.tokens for u in found), sum(u.audio for u in found)
    budget = f" of {guard.policy.budget}" if guard.policy.budget else ""
    return (
        f"Today ({day}): {messages} messages from {users} users, "
        f"{tokens} tokens{budget}, {round(audio)} s of voice notes."
    )
