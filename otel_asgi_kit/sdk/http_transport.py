"""The collector POSTs of the kit's OTLP/HTTP exporters over ``http.client``, when nothing needs ``requests``.

The stock exporters send through a ``requests`` session, and in a process
under ``opentelemetry-instrument`` every POST also passes the ``requests``
and ``urllib3`` instrumentations' wrappers (suppressed, but run): 1.5 ms of
CPU per batch of 512 spans here, on the export thread that shares the
request path's core. One ``http.client`` connection does the same POST for
0.17 ms (``benchmarks/README.md``). The stock client keeps its retries,
backoff, compression, headers and timeouts: only its transport is replaced,
through its ``BaseHTTPTransport`` interface.

``replace_transport`` does it only when the session's own settings say
nothing else is needed: the endpoint is ``http`` or ``https``, no proxy
applies to it, no netrc or session authentication, and TLS is what
``ssl`` can do from the session's ``verify`` (True, False, a CA file or
directory) and ``cert`` (a file or a (cert, key) pair). These settings were
read once from the environment by ``otlp_http._read_environment_once``.
Otherwise, or when the transport interface is not the one this was written
for, the ``requests`` transport stays. ``sdk.shortcuts`` lists it for
``doctor``.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

try:  # the stock exporters' transport interface (opentelemetry-exporter-otlp-proto-common >= 1.45)
    from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport
except ImportError:  # another release: the requests transport stays
    BaseHTTPResult = BaseHTTPTransport = None  # type: ignore[assignment,misc]

_CONNECTION_ERRORS = (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException, ssl.SSLError, OSError)


if BaseHTTPTransport is not None:

    @dataclass(frozen=True, slots=True)
    class HTTPClientResult(BaseHTTPResult):
        body: bytes = field(default=b"", compare=False)
        response_headers: Mapping[str, str] = field(default_factory=dict, compare=False)

        def content(self) -> bytes:
            return self.body

        def headers(self) -> Mapping[str, str]:
            return self.response_headers

    class HTTPClientTransport(BaseHTTPTransport):
        """One kept-alive ``http.client`` connection to the endpoint; reconnects after any failure."""

        def __init__(self, url: str, verify: bool | str, cert: str | tuple[str, str] | None, fallback: Any) -> None:
            parts = urlsplit(url)
            self._scheme, self._netloc = parts.scheme, parts.netloc
            self._host = parts.hostname or ""
            self._port = parts.port
            self._context = _tls_context(verify, cert) if parts.scheme == "https" else None
            self._fallback = fallback  # other URLs (none from the stock client) go the old way
            self._lock = threading.Lock()
            self._connection: http.client.HTTPConnection | None = None

        def request(
            self,
            method: str,
            url: str,
            *,
            headers: dict[str, str] | None = None,
            timeout: float | None = None,
            data: bytes | None = None,
        ) -> BaseHTTPResult:
            parts = urlsplit(url)
            if parts.scheme != self._scheme or parts.netloc != self._netloc:
                return self._fallback.request(method, url, headers=headers, timeout=timeout, data=data)  # type: ignore[no-any-return]
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            with self._lock:
                try:
                    connection = self._connect(timeout)
                    connection.request(method, target, body=data, headers=headers or {})
                    response = connection.getresponse()
                    body = response.read()
                except Exception as error:
                    self._close()
                    return HTTPClientResult(error=error)
                if response.will_close:
                    self._close()
            return HTTPClientResult(
                status_code=response.status,
                reason=response.reason,
                body=body,
                response_headers=_Headers(response.getheaders()),
            )

        def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
            connection = self._connection
            if connection is None:
                if self._context is not None:
                    connection = http.client.HTTPSConnection(
                        self._host, self._port, timeout=timeout, context=self._context
                    )
                else:
                    connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
                self._connection = connection
            else:
                connection.timeout = timeout
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
            return connection

        def _close(self) -> None:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

        def is_connection_error(self, exception: Exception | None) -> bool:
            return isinstance(exception, _CONNECTION_ERRORS)

        def close(self) -> None:
            with self._lock:
                self._close()
            self._fallback.close()


class _Headers(dict[str, str]):
    """Response headers, case-insensitive as the transport interface asks; repeated ones comma-joined."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        for name, value in pairs:
            key = name.lower()
            super().__setitem__(key, f"{self[key]}, {value}" if key in self else value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def _tls_context(verify: bool | str, cert: str | tuple[str, str] | None) -> ssl.SSLContext:
    """What ``requests`` (urllib3) does with ``verify`` and ``cert``."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        if os.path.isdir(verify):
            context = ssl.create_default_context(capath=verify)
        else:
            context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context(cafile=_certifi_bundle())
    if isinstance(cert, tuple):
        context.load_cert_chain(cert[0], cert[1])
    elif cert:
        context.load_cert_chain(cert)
    return context


def _certifi_bundle() -> str | None:
    """The CA bundle ``requests`` verifies against by default (``certifi``), if installed."""
    try:
        from requests.utils import DEFAULT_CA_BUNDLE_PATH
    except ImportError:
        return None
    return DEFAULT_CA_BUNDLE_PATH if isinstance(DEFAULT_CA_BUNDLE_PATH, str) else None


def replace_transport(client: Any) -> bool:
    """Give the stock OTLP client ``client`` the ``http.client`` transport when its ``requests`` session needs
    nothing more (see the module's text); True if it did."""
    if BaseHTTPTransport is None:
        return False
    transport = getattr(client, "_transport", None)
    session = getattr(transport, "_session", None)
    url = getattr(client, "_endpoint", None)
    if not isinstance(transport, BaseHTTPTransport) or session is None or not isinstance(url, str):
        return False
    try:
        from requests.utils import select_proxy

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or session.trust_env:
            return False  # trust_env: the environment was not read once (otlp_http), requests reads it per POST
        if select_proxy(url, session.proxies) is not None or session.auth is not None:
            return False
        verify, cert = session.verify, session.cert
        if not isinstance(verify, (bool, str)) or not (cert is None or isinstance(cert, (str, tuple))):
            return False
        replacement = HTTPClientTransport(url, verify, cert, transport)
    except Exception:  # a requests or port that differs from what this was written for: requests stays
        return False
    client._transport = replacement
    return True
