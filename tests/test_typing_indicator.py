"""The typing refresher on its own: it repeats, stops when told, and never outlives the attempt.

A real background thread and a real callable that records its calls (nothing of ours replaced);
the end-to-end case (a slow model, refreshes on the wire, none after the reply) is in test_vision.
"""

from __future__ import annotations

import threading
import time

from common.responder.typing_indicator import Typing
from tests.support.wait import wait_for


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[float] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, timeout: float) -> None:
        with self.lock:
            self.calls.append(timeout)
        if self.fail:
            raise ConnectionError("Graph API unreachable")


def test_it_refreshes_until_the_block_ends_and_never_after() -> None:
    send = Recorder()
    with Typing(send, every=0.05, deadline=time.monotonic() + 60) as typing:
        assert wait_for(lambda: len(send.calls) >= 3, timeout=30)
    after = len(send.calls)
    assert not typing.thread.is_alive()
    assert not wait_for(lambda: len(send.calls) > after, timeout=0.5)
    assert all(0 < timeout <= 5 for timeout in send.calls)  # each call is bounded


def test_it_stops_when_the_attempt_deadline_is_near() -> None:
    send = Recorder()
    with Typing(send, every=0.05, deadline=time.monotonic() + 0.5) as typing:
        assert wait_for(lambda: not typing.thread.is_alive(), timeout=30)
    assert send.calls == []  # under a second left: refreshing would outlive the attempt


def test_a_failed_refresh_ends_the_refreshing_not_the_work() -> None:
    send = Recorder(fail=True)
    with Typing(send, every=0.05, deadline=time.monotonic() + 60) as typing:
        assert wait_for(lambda: not typing.thread.is_alive(), timeout=30)
    assert len(send.calls) == 1


def test_an_exception_in_the_block_stops_it_too() -> None:
    send = Recorder()
    typing = Typing(send, every=0.05, deadline=time.monotonic() + 60)
    try:
        with typing:
            raise RuntimeError("the model failed")
    except RuntimeError:
        pass
    assert not typing.thread.is_alive()


def test_zero_means_never() -> None:
    send = Recorder()
    with Typing(send, every=0, deadline=time.monotonic() + 60) as typing:
        assert not typing.thread.is_alive()
    assert send.calls == []
