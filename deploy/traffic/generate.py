"""Steady, bounded demo traffic for the docker-compose stack (stdlib only).

Every panel of deploy/grafana/dashboards/red.json gets data: requests over
several routes (200, 404, 500), a route that blocks the event loop, and a
WebSocket that stays open and exchanges a message every few requests.

TRAFFIC_TARGET      base URL                      (default http://proxy:8000)
TRAFFIC_PATHS       comma-separated paths         (default: routes of examples/starlette_app.py, a 500, a 404, /block)
TRAFFIC_WS_PATH     WebSocket path, "" for none   (default /ws/traffic)
TRAFFIC_RPS         requests per second           (default 4)
TRAFFIC_DURATION_S  stop after this many seconds  (default 3600)
"""

from __future__ import annotations

import base64
import itertools
import os
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_PATHS = "/items/1,/items/42,/v1/items/7,/fail,/does-not-exist,/items/3,/block"
WS_EVERY = 4  # requests between two WebSocket messages
WS_RECONNECT_EVERY = 10  # messages per connection: connections open and close too, every ~10 s at 4 rps


class WebSocket:
    """The smallest RFC 6455 client the demo needs: text frames, masked, no extensions."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1024)
            if not chunk:
                raise OSError("connection closed during the WebSocket handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise OSError(f"WebSocket handshake refused: {head.splitlines()[0]!r}")

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        else:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise OSError("WebSocket closed by the server")
            data += chunk
        return data

    def exchange(self, text: str) -> str:
        """Send a text message and return the server's next message (the example app echoes)."""
        self._send_frame(0x1, text.encode())
        _, second = self._recv_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._recv_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._recv_exact(8))
        return self._recv_exact(length).decode(errors="replace")

    def close(self) -> None:
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


class Session:
    """One long-lived WebSocket, reopened after errors and every WS_RECONNECT_EVERY messages."""

    def __init__(self, url: str) -> None:
        self.url, self.ws, self.sent = url, None, 0

    def tick(self) -> str:
        try:
            if self.ws is None:
                self.ws = WebSocket(self.url)
            self.ws.exchange(f"ping {self.sent}")
            self.sent += 1
            if self.sent % WS_RECONNECT_EVERY == 0:
                self.close()
            return "ws"
        except OSError:
            self.close()
            return "ws-error"

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (scheme checked)
            return int(response.status)
    except urllib.error.HTTPError as exc:  # 4xx/5xx are traffic too
        return exc.code
    except OSError:
        return 0  # app restarting; keep going


def main() -> None:
    target = os.environ.get("TRAFFIC_TARGET", "http://proxy:8000").rstrip("/")
    if not target.startswith(("http://", "https://")):
        raise SystemExit(f"TRAFFIC_TARGET={target!r} is not an http(s) URL")
    paths = os.environ.get("TRAFFIC_PATHS", DEFAULT_PATHS).split(",")
    ws_path = os.environ.get("TRAFFIC_WS_PATH", "/ws/traffic")
    rps = float(os.environ.get("TRAFFIC_RPS", "4"))
    deadline = time.monotonic() + float(os.environ.get("TRAFFIC_DURATION_S", "3600"))
    session = Session("ws" + target.removeprefix("http") + ws_path) if ws_path else None
    counts: dict[str, int] = {}
    # Round-robin: every route gets the same share, run after run.
    for n, path in enumerate(itertools.cycle(paths), start=1):
        if time.monotonic() >= deadline:
            break
        outcome = str(get(f"{target}{path}"))
        counts[outcome] = counts.get(outcome, 0) + 1
        if session is not None and n % WS_EVERY == 0:
            outcome = session.tick()
            counts[outcome] = counts.get(outcome, 0) + 1
        if n % 100 == 0:
            print(f"traffic: {counts}", flush=True)
        time.sleep(1 / rps)
    if session is not None:
        session.close()
    print(f"traffic: done {counts}", flush=True)


if __name__ == "__main__":
    main()
