"""A collector that accepts connections and never answers, and a port nobody listens on."""

from __future__ import annotations

import socket
import threading

from tests.support.servers import free_port


class BlackHole:
    """Accepts TCP connections on 127.0.0.1 and reads forever without replying."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)


def refused_endpoint() -> str:
    """An endpoint whose port was just free: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"
