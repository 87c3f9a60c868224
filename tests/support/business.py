"""A loopback business endpoint for the actions' tests: the example shop, plus ways to misbehave.

Real HTTP on 127.0.0.1 (FakeServer): every request is recorded with its headers, so a test counts
the calls per Idempotency-Key; `fail()` answers the next N with a status (and a delay), and the
extra routes redirect (/redirect), answer 1 MB (/big) or trickle (/slow).
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from local.example_business import DEFAULT_TOKEN, Shop
from tests.support.fakes import Answer, FakeServer, Recorded

BIG = 1024 * 1024


class FakeBusiness(FakeServer):
    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.shop = Shop(token=token)
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.shop = Shop(token=self.token)

    def keys(self, path: str = "") -> Counter[str]:
        """Requests per Idempotency-Key (of paths containing `path`), whatever they were answered."""
        return Counter(r.headers.get("Idempotency-Key", "") for r in list(self.requests) if path in r.path)

    def calls(self, path: str = "") -> list[Recorded]:
        return [r for r in list(self.requests) if path in r.path]

    def route(self, request: Recorded) -> Answer:
        parts = urlsplit(request.path)
        if parts.path == "/redirect":
            return Answer(302, {"moved": True}, {"Location": f"{self.url}/orders/status"})
        if parts.path == "/big":
            return Answer(200, {"items": ["x" * 1000] * (BIG // 1000)})
        arguments = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if request.body:
            arguments.update(json.loads(request.body))
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, body, replayed = self.shop.handle(request.method, parts.path, arguments, headers)
        return Answer(status, body, {"Idempotent-Replayed": "true"} if replayed else {})
