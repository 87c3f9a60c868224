"""Serve one local stand-in (simulator, offline model, example business) until make dev stops it."""

from __future__ import annotations

import signal
from typing import Any, Protocol

from common import log


class Server(Protocol):
    daemon_threads: bool

    def serve_forever(self) -> None: ...
    def server_close(self) -> None: ...


def run(server: Server, name: str, **fields: Any) -> int:
    """Serve until SIGTERM or SIGINT (exit 0); open streams do not hold up the exit."""
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(f"{name}: listening", **fields)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
