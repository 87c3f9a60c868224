"""A small example business for `make dev`: orders and bookings, with idempotent writes.

What examples/actions.yaml calls. It shows what an endpoint receives (JSON arguments, or the
query string for GET; `Idempotency-Key`; `X-WhatsBot-User`; the bearer token) and how to honour
the key: the first request with a key does the work and keeps its answer; a request with the
same key gets that answer again (header `Idempotent-Replayed: true`) and changes nothing; one
that arrives while the first is still working gets 409 (the bot tries again with the same key).
Run by `make dev` as `python -m local.example_business` on EXAMPLE_BUSINESS_PORT [8092].
"""

from __future__ import annotations

import hmac
import itertools
import json
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from common import config, log
from local import serving

DEFAULT_TOKEN = "local-business-token"  # noqa: S105 - a local stand-in (EXAMPLE_BUSINESS_TOKEN)
ORDERS = {
    "A1001": {"status": "shipped", "carrier": "DHL", "eta": "in 2 days"},
    "A1002": {"status": "being packed", "eta": "ships tomorrow"},
    "A1003": {"status": "delivered", "delivered": "last Monday"},
}


@dataclass
class Shop:
    """The business's logic, without HTTP: `handle` answers (status, body, replayed)."""

    token: str = DEFAULT_TOKEN
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # key -> its answer
    working: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    numbers: Any = field(default_factory=lambda: itertools.count(1))

    def handle(
        self, method: str, path: str, arguments: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], bool]:
        given = headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return 401, {"error": "a valid bearer token is required"}, False
        route = (method, path.rstrip("/"))
        if route == ("POST", "/orders/status") or route == ("GET", "/orders/status"):
            return *self.order(str(arguments.get("order_id") or "")), False
        if route == ("GET", "/bookings"):
            return *self.booking(str(arguments.get("booking_id") or "")), False
        if route == ("POST", "/bookings"):
            return self.once(headers.get("idempotency-key", ""), lambda: self.book(arguments, headers))
        return 404, {"error": f"no route {method} {path}"}, False

    def order(self, order_id: str) -> tuple[int, dict[str, Any]]:
        found = ORDERS.get(order_id.strip().upper())
        if found is None:
            return 404, {"error": f"there is no order {order_id!r}", "known_examples": sorted(ORDERS)}
        return 200, {"order_id": order_id.upper(), **found}

    def booking(self, booking_id: str) -> tuple[int, dict[str, Any]]:
        found = self.bookings.get(booking_id)
        return (200, found) if found else (404, {"error": f"there is no booking {booking_id!r}"})

    def book(self, arguments: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """A write: a new booking number each time it runs, so a repeat would show."""
        number = f"B-{next(self.numbers):04d}"
        booking = {
            "booking_id": number,
            "date": arguments.get("date"),
            "time": arguments.get("time"),
            "people": arguments.get("people"),
            "name": arguments.get("name"),
            "booked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self.bookings[number] = booking
        log.info("example business: booked", booking=number, user=headers.get("x-whatsbot-user", ""))
        return 201, booking

    def once(self, key: str, work: Any) -> tuple[int, dict[str, Any], bool]:
        """The idempotent pattern: one key, one effect; the same answer for every repeat."""
        if not key:
            return 400, {"error": "Idempotency-Key is required for a booking"}, False
        with self.lock:
            if key in self.done:
                status, body = self.done[key]
                return status, body, True
            if key in self.working:
                return 409, {"error": "a request with this Idempotency-Key is still being processed"}, False
            self.working.add(key)
        try:
            status, body = work()
        finally:
            with self.lock:
                self.working.discard(key)
        if status < 500:  # a failure a retry may fix is not remembered
            with self.lock:
                self.done[key] = (status, body)
        return status, body, False


def handler(shop: Shop) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            arguments: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    self._json(400, {"error": "the body must be a JSON object"}, False)
                    return
                arguments.update(body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._json(*shop.handle(self.command, parts.path, arguments, headers))

        def _json(self, status: int, body: dict[str, Any], replayed: bool) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if replayed:
                self.send_header("Idempotent-Replayed", "true")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> int:
    port = int(config.get("EXAMPLE_BUSINESS_PORT", "8092") or 8092)
    shop = Shop(token=config.get("EXAMPLE_BUSINESS_TOKEN") or DEFAULT_TOKEN)
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(shop))
    return serving.run(server, "example business", url=f"http://127.0.0.1:{port}")


if __name__ == "__main__":
    sys.exit(main())
