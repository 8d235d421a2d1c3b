"""The admin port: ``/metrics`` (Prometheus text), ``/healthz`` and the kit's pages, apart from the app's port.

Other modules add pages with ``add_route(path, handler)``; a handler gets the
query string and returns ``(status, content type, body)``. Handlers run in the
admin server's threads, never on the app's event loop.

The pages show request paths, log lines and stack traces. So when the port
listens beyond loopback (containers bind ``0.0.0.0`` to be scraped) and no
token is set, only ``/metrics`` and ``/healthz`` are served unless the pages
are opened explicitly (``OTEL_ASGI_KIT_PAGES_PUBLIC``); start-up says so once.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder

from otel_asgi_kit.failsafe import report_once, warn

Page = Callable[[str], tuple[int, str, bytes]]
_routes: dict[str, Page] = {}
_OPEN_PATHS = frozenset({"/metrics", "/healthz"})
CLOSED_PAGES = (
    "the admin port listens beyond loopback and no OTEL_ASGI_KIT_ADMIN_TOKEN is set, so it serves only "
    "/metrics and /healthz; to open the pages (/kit/) set OTEL_ASGI_KIT_ADMIN_TOKEN=<secret> and send "
    "'Authorization: Bearer <secret>', or set OTEL_ASGI_KIT_PAGES_PUBLIC=true"
)


def add_route(path: str, handler: Page) -> None:
    """Serve ``handler`` at ``path`` on the admin port (e.g. ``/kit/traces``)."""
    _routes[path] = handler


def is_loopback(address: str) -> bool:
    """Whether a bound address is reachable only from this host (``0.0.0.0`` and ``::`` are not)."""
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class AdminServer:
    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, token: str = "", pages_public: bool = False
    ) -> None:
        self.registry = registry
        # Decided from the address actually bound, not from the name asked for.
        self._server = ThreadingHTTPServer((host, port), BaseHTTPRequestHandler)
        self.pages_open = bool(token) or pages_public or is_loopback(str(self._server.server_address[0]))
        self._server.RequestHandlerClass = _handler_for(registry, token, self.pages_open)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="otel-asgi-kit-admin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def close_inherited(self) -> None:
        """In a forked child: release the copied listening socket (no serving thread exists here)."""
        self._server.server_close()


def _handler_for(registry: CollectorRegistry, token: str, pages_open: bool) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            # /healthz stays open for orchestrators' probes; it tells nothing.
            if token and path != "/healthz" and not self._authorized():
                self._reply(401, "text/plain; charset=utf-8", b"bearer token required\n", challenge=True)
                return
            if not pages_open and path not in _OPEN_PATHS:
                self._reply(403, "text/plain; charset=utf-8", f"{CLOSED_PAGES}\n".encode())
                return
            if path == "/metrics":
                # Prometheus text, as always, unless OpenMetrics is asked for (it carries the exemplars).
                accept = self.headers.get("Accept") or ""
                if "application/openmetrics-text" in accept:
                    encode, content_type = choose_encoder(accept)
                    self._reply(200, content_type, encode(registry))
                else:
                    self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                self._reply(200, "text/plain; charset=utf-8", b"ok\n")
            elif path in _routes:
                try:
                    self._reply(*_routes[path](query))
                except Exception as exc:
                    report_once(f"admin page {path}", exc)
                    self._reply(500, "text/plain; charset=utf-8", b"page failed\n")
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found\n")

        def _authorized(self) -> bool:
            given = (self.headers.get("Authorization") or "").encode("latin-1", "replace")
            return hmac.compare_digest(given, expected)

        def _reply(self, status: int, content_type: str, body: bytes, challenge: bool = False) -> None:
            self.send_response(status)
            if challenge:
                self.send_header("WWW-Authenticate", "Bearer")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes are not app traffic

    return Handler


def start_admin_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    *,
    quiet: bool = False,
    token: str = "",
    pages_public: bool = False,
) -> AdminServer | None:
    """The running admin server, or ``None`` when the port is taken.

    ``quiet``: this process is a worker whose parent serves the port — the
    expected case under ``--workers N`` — so the clash is not reported.
    """
    try:
        server = AdminServer(host, port, registry, token, pages_public)
    except OSError as exc:
        if quiet:
            return None
        warn(
            f"admin port {host}:{port} (OTEL_EXPORTER_PROMETHEUS_HOST/PORT) could not be opened: "
            f"{exc.strerror or exc}; /metrics is not served by this process, everything else runs"
        )
        return None
    if not server.pages_open:
        warn(CLOSED_PAGES)
    server.start()
    return server
