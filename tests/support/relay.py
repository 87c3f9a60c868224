"""A TCP relay in front of a real emulator that can play an outage: connections are cut until
`restore()` (and again after `outage()`; refused, with `refuse=True`, as by a host that is down),
otherwise piped through byte for byte; `refuse_for()` is an outage of a moment; `lose_answer()`
lets the next request through but not its answer. Nothing of the emulator is faked."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Relay:
    def __init__(self, target: str, up: bool = False) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.cut = 0  # connections closed while down
        self.lost = 0  # chunks of answers that lose_answer() dropped
        self._losing: float | None = None  # lose_answer(): seconds from the request to the cut
        self._cutting = False
        self._up = threading.Event()
        if up:
            self._up.set()
        self._live: set[socket.socket] = set()  # both ends of every piped connection
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def restore(self) -> None:
        if self._server.fileno() == -1:  # refusing: listen on the same port again
            self._server = socket.create_server(("127.0.0.1", int(self.address.rsplit(":", 1)[1])))
            threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        self._up.set()

    def outage(self, refuse: bool = False) -> None:
        """Down from now on: open connections are closed too (a client's pooled ones with them);
        new ones are cut once accepted, or refused."""
        self._up.clear()
        if refuse:
            with contextlib.suppress(OSError):
                self._server.close()
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            _close(sock)

    def refuse_for(self, seconds: float) -> None:
        """Refuse every connection (open ones closed) for `seconds`, then relay again."""
        self.outage(refuse=True)
        threading.Timer(seconds, self.restore).start()

    def lose_answer(self, after: float = 1.0) -> None:
        """The next request reaches the target, its answer never comes back: from now on what the
        target sends is dropped, and `after` seconds after the client next sends something every
        connection is cut (the client sees the call fail, as when a network path breaks)."""
        with self._lock:
            self._losing = after

    def close(self) -> None:
        self.outage()
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            if not self._up.is_set():
                self.cut += 1
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._live |= {client, upstream}
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(source, sink, answers), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                losing = self._losing
                if losing is not None and answers:
                    self.lost += 1
                    continue  # the answer is dropped
                sink.sendall(chunk)
                if losing is not None:  # the request went through: cut once the target acted on it
                    self._cut_after(losing)
        with self._lock:
            self._live -= {source, sink}
        for sock in (source, sink):
            _close(sock)

    def _cut_after(self, seconds: float) -> None:
        with self._lock:
            if self._cutting:
                return
            self._cutting = True

        def cut() -> None:
            time.sleep(seconds)
            with self._lock:
                live, self._live = self._live, set()
                self._losing, self._cutting = None, False
            for sock in live:
                _close(sock)

        threading.Thread(target=cut, daemon=True).start()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
