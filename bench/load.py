"""A cheap load generator: raw keep-alive HTTP/1.1 over sockets, from a few forked processes.

Each process drives its share of the senders with one selector loop (no HTTP library, requests
built and signed before the clock starts), so the generator costs the server as little CPU as
possible on a shared 2-core machine.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

PROCESSES = 2


@dataclass(frozen=True)
class LoadResult:
    senders: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    per_second: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The exact bytes of one keep-alive POST."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.started = 0.0

    def response(self) -> tuple[int, bool] | None:
        """(status, keep-alive) once a whole response is buffered, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buffer[:end].decode("latin-1").lower().split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in head if h.startswith("content-length:")), 0)
        if len(self.buffer) < end + 4 + length:
            return None
        self.buffer = self.buffer[end + 4 + length :]
        return int(head[0].split()[1]), "connection: close" not in head


def _worker(url: str, requests: list[bytes], senders: int, ready, go, results) -> None:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    selector = selectors.DefaultSelector()
    connections = [_Connection(address) for _ in range(min(senders, len(requests)))]
    queue = iter(requests)
    latencies: list[float] = []
    errors = 0
    ready.put(True)
    go.wait()
    started = time.monotonic()

    def send(connection: _Connection) -> bool:
        request = next(queue, None)
        if request is None:
            selector.unregister(connection.sock)
            connection.sock.close()
            return False
        connection.started = time.perf_counter()
        connection.sock.sendall(request)
        return True

    for connection in connections:
        selector.register(connection.sock, selectors.EVENT_READ, connection)
        send(connection)
    while selector.get_map():
        for key, _ in selector.select():
            connection = key.data
            try:
                chunk = connection.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:  # the server closed the connection: count it, reconnect, go on
                errors += 1
                selector.unregister(connection.sock)
                connection.sock.close()
                connection.__init__(address)
                selector.register(connection.sock, selectors.EVENT_READ, connection)
                send(connection)
                continue
            connection.buffer += chunk
            answer = connection.response()
            if answer is None:
                continue
            latencies.append(time.perf_counter() - connection.started)
            status, keep_alive = answer
            errors += status != 200
            if not keep_alive:
                selector.unregister(connection.sock)
                connection.sock.close()
                connection.__init__(address)
                selector.register(connection.sock, selectors.EVENT_READ, connection)
            send(connection)
    results.put((latencies, errors, started, time.monotonic()))


def run(url: str, requests: list[bytes], senders: int) -> LoadResult:
    """Send every request in `requests` from `senders` concurrent keep-alive connections."""
    context = multiprocessing.get_context("forkserver")  # no fork() of a process with gRPC threads
    processes = min(PROCESSES, senders)
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    workers = []
    for index in range(processes):
        share = requests[index::processes]
        count = senders // processes + (index < senders % processes)
        workers.append(context.Process(target=_worker, args=(url, share, count, ready, go, results)))
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=60)
    go.set()
    outcomes = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    latencies = [latency for outcome in outcomes for latency in outcome[0]]
    wall = max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
    return LoadResult(
        senders=senders,
        requests=len(latencies),
        errors=sum(o[1] for o in outcomes),
        p50_ms=round(statistics.median(latencies) * 1000, 2),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
        per_second=round(len(latencies) / wall, 1),
    )
