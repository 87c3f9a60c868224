"""What the webhook function does with a request: Meta's handshake, and signed POSTs to Pub/Sub.

Every message that deserves an answer, of any type, goes to one topic: the transcriber's
(TOPIC_AUDIO), ordered by user. Pub/Sub orders per topic and key only, so a voice note on one topic
and a text on another could reach the model in either order; on one ordered topic the transcriber
takes a user's messages one at a time and hands each on to the text topic (a transcript, or the
message unchanged) before it is given the next. Framework-free: takes plain values, returns (body,
status, headers), which Flask accepts as is.

Statuses are logged and acknowledged; the `sent`/`delivered` of a part of our own reply (its
callback data: common/bus/part_sent.py) is also published to TOPIC_STATUS, with no ordering key,
so that it never waits behind the user's messages (the responder records it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping

from common import config, log
from common.bus.part_sent import PartSent
from common.bus.publisher import Published, PublishError
from common.guard.admission import admit, admit_echo
from common.guard.echoes import parse_echoes
from common.guard.policy import Policy
from common.meta.payload import MessageType, Notification, NotWhatsApp, parse_notification
from common.meta.signature import Verdict, verify

Response = tuple[str, int, dict[str, str]]
PublishAll = Callable[[list[tuple[str, Published]]], int]

# Logged, never published; every other type (and types Meta adds later) is, for the responder to
# decide what to say.
NOT_ANSWERED = frozenset({MessageType.REACTION, MessageType.SYSTEM})


def reply(code: int, /, **body: object) -> Response:
    """A JSON answer: {"status": "ok"|"error", "reason": …}."""
    return json.dumps(body), code, {"Content-Type": "application/json"}


def handshake(params: Mapping[str, str], verify_token: str | None) -> Response:
    """GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=… → the challenge, as text."""
    mode, token = params.get("hub.mode"), params.get("hub.verify_token")
    challenge = params.get("hub.challenge")
    if not (mode and token and challenge):
        log.warning("handshake: missing parameters")
        return reply(400, status="error", reason="missing hub.mode, hub.verify_token or hub.challenge")
    if mode != "subscribe" or not verify_token or token != verify_token:
        log.warning("handshake: verification failed", token_configured=bool(verify_token))
        return reply(403, status="error", reason="verification failed")
    log.info("handshake: webhook verified")
    return challenge, 200, {"Content-Type": "text/plain; charset=utf-8"}


def receive(raw_body: bytes, signature: str | None, app_secret: str, publish_all: PublishAll) -> Response:
    """Check, parse and publish one POST; 200 only once every envelope is confirmed."""
    verdict = verify(raw_body, signature, app_secret)
    if verdict is Verdict.MISSING:
        log.warning("POST refused: no X-Hub-Signature-256 header")
        return reply(401, status="error", reason="missing X-Hub-Signature-256")
    if verdict is Verdict.MISMATCH:
        log.warning("POST refused: signature mismatch")
        return reply(403, status="error", reason="invalid signature")
    try:
        body = json.loads(raw_body)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        log.warning("POST refused: body is not JSON", bytes=len(raw_body))
        return reply(400, status="error", reason="body is not valid JSON")
    try:
        notification = parse_notification(body)
    except NotWhatsApp as exc:
        log.warning("POST refused: not a WhatsApp notification")
        return reply(400, status="error", reason=str(exc))

    log_unanswered(notification)
    policy = _policy()  # guardrails: stale messages and strangers (common/guard/admission.py)
    topic = inbound_topic()
    answered = [m for m in notification.messages if m.type not in NOT_ANSWERED]
    routed = [item for m in answered if (item := admit(m, topic, policy))]
    routed += [item for echo in parse_echoes(body) if (item := admit_echo(echo, topic, policy))]
    try:
        published = publish_all(routed) if routed else 0
    except PublishError as exc:
        log.error("POST not accepted: publishing failed, Meta will retry", reason=str(exc))
        return reply(503, status="error", reason="could not queue messages, retry later")
    for _, envelope in routed:
        log.info(
            "message queued", message_id=envelope.message_id, type=envelope.type, user=log.mask(envelope.user)
        )
    return reply(200, status="ok", published=published + queue_part_statuses(notification, publish_all))


def queue_part_statuses(notification: Notification, publish_all: PublishAll) -> int:
    """Our parts' `sent`/`delivered` statuses, to the responder. Best effort: a lost one only means
    that a takeover after a crash may send that part again, so it never fails the POST."""
    topic = config.get("TOPIC_STATUS") or ""
    found = [(topic, c) for s in notification.statuses if (c := PartSent.of(s.callback, s.raw_status))]
    if not found:
        return 0
    try:
        return publish_all(list(found))
    except PublishError as exc:
        log.warning("part statuses not queued", count=len(found), reason=str(exc))
        return 0


@functools.cache
def _policy() -> Policy:
    """Read once per instance (about 80 µs), like every setting."""
    return Policy.from_env()


def inbound_topic() -> str:
    """The one topic every user's messages enter by (see the module docstring): strangers' notices
    and the business's echoes too, so that nothing of a user overtakes the rest."""
    return config.get("TOPIC_AUDIO") or ""


def log_unanswered(notification: Notification) -> None:
    """Statuses, reactions, system messages, errors and malformed items: logged, never answered."""
    for problem in notification.problems:
        log.warning("skipped malformed item", where=problem.where, reason=problem.reason)
    for message in notification.messages:
        if message.type in NOT_ANSWERED:
            log.info(
                "not answered", message_id=message.id, type=message.raw_type, user=log.mask(message.user)
            )
    for status in notification.statuses:
        log.info(
            "status",
            message_id=status.message_id,
            status=status.raw_status,
            recipient=log.mask(status.recipient),
            error_codes=[e.code for e in status.errors] or None,
        )
    for change_error in notification.errors:
        log.error(
            "WhatsApp reported errors",
            phone_number_id=change_error.phone_number_id,
            error_codes=[e.code for e in change_error.errors],
            titles=[e.title for e in change_error.errors],
        )
