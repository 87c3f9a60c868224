"""A bounded load generator on loopback: N concurrent senders, each with its own keep-alive session."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests


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


def run(
    url: str, make_request: Callable[[int], tuple[bytes, dict[str, str]]], senders: int, total: int
) -> LoadResult:
    """POST `total` requests from `senders` threads; latency per request, throughput overall."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def sender() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            body, headers = make_request(index)
            started = time.perf_counter()
            try:
                ok = session.post(url, data=body, headers=headers, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += 0 if ok else 1

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return LoadResult(
        senders=senders,
        requests=total,
        errors=errors,
        p50_ms=round(statistics.median(latencies) * 1000, 2),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
        per_second=round(total / wall, 1),
    )
