"""Hostile input through a real aiohttp server: always answered, bounded series, no secret exported."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Telemetry, make_telemetry
from tests.support.aiohttp_server import serve_in_thread

SECRET = "s3cr3t-value"
METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY", "_OTHER"}
ROUTES = {"/items/{item_id}", "/ok", None}
TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VISIBLE = "".join(chr(c) for c in range(0x20, 0x7F)) + "".join(chr(c) for c in range(0xA0, 0x100))


async def _item(request: web.Request) -> web.Response:
    return web.Response(text=request.match_info["item_id"])


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, Telemetry]]:
    """An aiohttp AppRunner on 127.0.0.1 in a thread, the kit's hooks recording into memory."""
    telemetry = make_telemetry({"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*"})
    app = web.Application()
    app.router.add_route("*", "/items/{item_id}", _item)
    app.router.add_route("*", "/ok", _ok)
    with serve_in_thread(app, telemetry.instrumentation) as base_url:
        yield int(base_url.rsplit(":", 1)[1]), telemetry


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # aiohttp answered and closed while we were still sending
            pass
    return b"".join(chunks)


header_name = st.text(alphabet=TOKEN, min_size=1, max_size=40)
header_value = st.text(alphabet=VISIBLE, max_size=300)
known = st.sampled_from(["traceparent", "tracestate", "baggage", "user-agent", "x-forwarded-for", "forwarded"])


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    # Mostly methods aiohttp's parser takes, so most requests reach the app; now and then any token.
    method=st.one_of(*[st.sampled_from(sorted(METHODS - {"_OTHER", "CONNECT"}))] * 3, st.text(TOKEN, min_size=1)),
    path=st.text(alphabet=VISIBLE.replace(" ", "").replace("#", ""), max_size=200),
    host=st.text(alphabet=VISIBLE.replace(" ", ""), max_size=100),
    headers=st.lists(st.tuples(st.one_of(known, header_name), header_value), max_size=12),
    encode=st.sampled_from([True, True, True, False]),
)
def test_hostile_requests_are_answered(
    server: tuple[int, Telemetry], method: str, path: str, host: str, headers: list[tuple[str, str]], encode: bool
) -> None:
    """Odd methods, random paths and hosts, malformed headers and traceparent: every request gets an answer."""
    port, _ = server
    if encode:  # most get past aiohttp's parser to the app; raw ones test the parser's own answers
        path = quote(path, safe="/%")
    target = "/items/" + path if path[:1] != "/" else path
    lines = [f"{method} {target}?token={SECRET}&q=1 HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {SECRET}"]
    lines += [
        f"{name}: {value}"
        for name, value in headers
        if name.lower() not in ("content-length", "transfer-encoding", "host")
    ]
    raw = ("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1")
    answer = _exchange(port, raw)
    assert answer.startswith(b"HTTP/1."), answer[:200]  # aiohttp answers a parser error in HTTP/1.0


def test_huge_and_malformed_headers_are_answered(server: tuple[int, Telemetry]) -> None:
    """Oversized and malformed headers, a non-HTTP line: answered (big ones by the app), the server lives on."""
    port, _ = server
    big = _exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 8000 + b"\r\nConnection: close\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 200")  # within aiohttp's limit: served and recorded
    _exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 1_000_000 + b"\r\n\r\n")  # refused by aiohttp
    for raw in (
        b"GET /ok HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\xfe\x00\x01\r\nConnection: close\r\n\r\n",
        b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n",
        b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ):
        assert _exchange(port, raw).startswith(b"HTTP/1.")
    assert _exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_series_stay_bounded_and_no_secret_is_exported(server: tuple[int, Telemetry]) -> None:
    """After the hostile runs: methods and routes come from closed sets, and the secret is nowhere in a span."""
    port, telemetry = server
    _exchange(
        port,
        f"GET /items/1?token={SECRET} HTTP/1.1\r\nHost: x\r\nCookie: s={SECRET}\r\nConnection: close\r\n\r\n".encode(),
    )
    points = telemetry.points("http.server.request.duration")
    assert points
    assert {p.attributes["http.request.method"] for p in points} <= METHODS
    assert {p.attributes.get("http.route") for p in points} <= ROUTES
    assert len(points) <= len(METHODS) * len(ROUTES) * 5  # a few statuses each, whatever the input
    spans = telemetry.spans.get_finished_spans()
    assert len(spans) >= 10, len(spans)  # hostile requests got past aiohttp's parser and were traced
    captured = [s for s in spans if "http.request.header.authorization" in (s.attributes or {})]
    assert captured and all(s.attributes["http.request.header.authorization"] == ("REDACTED",) for s in captured)
    for span in spans:
        assert SECRET not in str(dict(span.attributes or {})) + span.name
