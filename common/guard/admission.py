"""The webhook's guardrails, before anything is published: stale messages and strangers.

A stale message (older than MAX_MESSAGE_AGE_HOURS: a burst of Meta's retries after an outage) is
acknowledged and logged, never published. A stranger's message (not in ALLOWED_USERS) is
published, on the same topic as any other, stripped of its words and media and marked `refused`,
so that nothing of it is downloaded, transcribed or shown to a model (the transcriber hands it on
as it is), and the responder sends the day's one NOT_ALLOWED_TEXT through its claim (exactly once,
like any reply).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from common import log
from common.bus.envelope import NOT_ALLOWED, Envelope
from common.guard.echoes import Echo
from common.guard.policy import Policy, ids_of

if TYPE_CHECKING:  # the parser is the webhook's; the responder imports this module for NOT_ALLOWED
    from common.meta.payload import Message


def admit(message: Message, topic: str, policy: Policy) -> tuple[str, Envelope] | None:
    """The message as it goes to `topic`; None: acknowledged, not published."""
    fields = {"message_id": message.id, "type": message.raw_type, "user": log.mask(message.user)}
    if policy.stale(message.timestamp):
        log.info("stale message: acknowledged, not answered", **fields)
        return None
    envelope = Envelope.from_message(message)
    if policy.allows(ids_of(message.phone, message.user_id, message.user)):
        return topic, envelope
    log.info("not on ALLOWED_USERS: not downloaded, not transcribed, no model", **fields)
    stripped = replace(
        envelope, text=None, media=None, profile_name=None, context_id=None, refused=NOT_ALLOWED
    )
    return topic, stripped


def admit_echo(echo: Echo, topic: str, policy: Policy) -> tuple[str, Envelope] | None:
    """A coexistence echo becomes a pause for that user (ECHO_PAUSE_HOURS; 0: ignored)."""
    if not policy.echo_pause_hours or policy.stale(echo.timestamp):
        return None
    log.info(
        "the business answered from the app: pausing the bot", message_id=echo.id, user=log.mask(echo.user)
    )
    return topic, echo.envelope()
