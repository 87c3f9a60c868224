"""HTTP entry point `webhook`: Meta's handshake (GET) and signed notifications (POST)."""

from __future__ import annotations

import threading

import functions_framework
from flask import Request

from common import config, log, startup  # startup first: pauses the collector
from common.bus.publisher import Published, Publisher
from common.webhook.handler import Response, handshake, receive, reply

_publisher: Publisher | None = None  # one Pub/Sub client per instance, created on first POST
_lock = threading.Lock()  # the first POSTs arrive together: build the client only once
_warned_no_secret = False
startup.done()  # imports done; the Pub/Sub client is frozen too once built


def _publish_all(items: list[tuple[str, Published]]) -> int:
    global _publisher
    if _publisher is None:
        with _lock:
            if _publisher is None:
                try:
                    _publisher = Publisher()
                finally:
                    startup.done()
    return _publisher.publish_all(items)


@functions_framework.http
def webhook(request: Request) -> Response:
    try:
        return _answer(request)
    except Exception as exc:  # a fault of ours: Meta retries a 500; a traceback could quote the body
        log.error("request failed: Meta will retry", **log.failure(exc))
        return reply(500, status="error", reason="internal error")


def _answer(request: Request) -> Response:
    if request.method == "GET":
        return handshake(request.args, config.get("WHATSAPP_VERIFY_TOKEN"))
    if request.method != "POST":
        body, status, headers = reply(405, status="error", reason=f"method {request.method} not allowed")
        return body, status, {**headers, "Allow": "GET, POST"}

    app_secret = config.get("WHATSAPP_APP_SECRET")
    if not app_secret:
        global _warned_no_secret
        if not _warned_no_secret:
            log.error("WHATSAPP_APP_SECRET is not set: refusing every POST until it is configured")
            _warned_no_secret = True
        return reply(500, status="error", reason="webhook is not configured")

    limit = int(config.number("MAX_BODY_BYTES"))
    if (request.content_length or 0) > limit:
        return reply(413, status="error", reason=f"body over {limit} bytes")
    # Exact bytes, never re-serialised; a buffer the size of the body, not of the limit (3 MB a POST)
    raw_body = request.stream.read((request.content_length or limit) + 1)
    if len(raw_body) > limit:
        return reply(413, status="error", reason=f"body over {limit} bytes")
    return receive(raw_body, request.headers.get("X-Hub-Signature-256"), app_secret, _publish_all)
