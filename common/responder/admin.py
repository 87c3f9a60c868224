"""Commands for the humans in charge (`ADMIN_USERS`): /pause, /resume, /stats; and /usage for all.

Recognised only from an admin id (the guard checks); from anyone else they are ordinary text.
An admin's command is answered at its first attempt, whatever it says: a duration no calendar
holds (/pause 999999999d) or one under a minute gets an answer saying what to send instead.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from common.guard.policy import Policy, normalize
from common.store.counters import FOREVER, Usage, usage_on

if TYPE_CHECKING:
    from common.responder.guardrails import Guard

_DURATION = re.compile(r"(\d+)\s*([mhd])", re.IGNORECASE | re.ASCII)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
PAUSED_TEXT = "Paused {who} {when}: their messages are stored, not answered."
TOO_LONG_TEXT = (
    "A pause of {length} would end after the year 9999: too long to store. "
    "Send /pause{user} without a duration to pause until /resume."
)
TOO_SHORT_TEXT = "A pause lasts at least 1 minute, e.g. /pause{user} 30m."


def duration(word: str) -> timedelta | None:
    """`30m`, `2h`, `1d` → a timedelta; anything else None. OverflowError for more than a
    timedelta holds (e.g. 999999999999d)."""
    match = _DURATION.fullmatch(word)
    if not match:
        return None
    digits = match[1].lstrip("0") or "0"
    if len(digits) > 12:  # int() refuses thousands of digits; timedelta anything over ~2.7e12 minutes
        raise OverflowError(word)
    return timedelta(**{_UNITS[match[2].lower()]: int(digits)})


def run(text: str, guard: Guard) -> str | None:
    """The admin's answer, or None when the text is not an admin command (it goes to the model).

    `text` as typed: the command and the duration are read in any case, an id as written, since
    business-scoped ids are case-sensitive (phone numbers are normalised)."""
    words = text.split()
    name, args = words[0].lower(), words[1:]
    if name == "/stats" and not args:
        return stats(guard)
    if name not in ("/pause", "/resume") or len(args) > 2:
        return None
    user = normalize(args[0]) if args and not _DURATION.fullmatch(args[0]) else None
    rest = args[1:] if user else args
    if name == "/resume":
        if rest:
            return None
        guard.pauses.resume(user)
        return f"Resumed {'answers for ' + user if user else 'answers for everyone'}."
    if len(rest) > 1 or (rest and not _DURATION.fullmatch(rest[0])):
        return None
    who, named = user or "everyone", f" {user}" if user else ""
    if not rest:
        guard.pauses.pause(user, FOREVER)
        return PAUSED_TEXT.format(who=who, when="until /resume")
    try:
        length = duration(rest[0]) or timedelta(0)  # a duration: matched above
        until = datetime.now(UTC) + length
    except OverflowError:  # more than a timedelta or a datetime holds
        length, until = timedelta.max, FOREVER
    if until >= FOREVER:  # refused, not stored: an admin answer at the first attempt, never a retry
        return TOO_LONG_TEXT.format(length=rest[0], user=named)
    if length < timedelta(minutes=1):
        return TOO_SHORT_TEXT.format(user=named)
    guard.pauses.pause(user, until)
    return PAUSED_TEXT.format(who=who, when=f"until {until:%Y-%m-%d %H:%M} UTC")


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
    """/stats: today's totals over every user, summed as the query streams (1 read per user
    active today; admins only)."""
    day = guard.policy.day()
    users = messages = tokens = 0
    audio = 0.0
    for usage in usage_on(guard.db, day):
        users, messages = users + 1, messages + usage.messages
        tokens, audio = tokens + usage.tokens, audio + usage.audio
    budget = f" of {guard.policy.budget}" if guard.policy.budget else ""
    return (
        f"Today ({day}): {messages} messages from {users} users, "
        f"{tokens} tokens{budget}, {round(audio)} s of voice notes."
    )
