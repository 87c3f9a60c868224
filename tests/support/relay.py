"""A TCP relay in front of a real emulator that can play an outage: connections are cut until
`restore()` (and again after `outage()`; refused, with `refuse=True`, as by a host that is down),
otherwise piped through byte for byte. Nothing of the emulator is faked."""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    def __init__(self, target: str, up: bool = False) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.cut = 0  # connections closed while down
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
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with self._lock:
            self._live -= {source, sink}
        for sock in (source, sink):
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
