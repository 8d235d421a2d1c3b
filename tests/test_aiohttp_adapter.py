"""The aiohttp adapter through a real aiohttp server in the test process: what each kind of response records."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from websockets.sync.client import connect

from tests.conftest import Telemetry, make_telemetry
from tests.support.aiohttp_server import serve_in_thread
from tests.support.otlp_receiver import wait_for


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(3):
        await response.write(b"x" * 100)
        await asyncio.sleep(0.1)
    await response.write_eof()
    return response


async def _after(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write_eof(b"done")
    await asyncio.sleep(0.2)  # the app's own work after its response is complete
    return response


async def _login(request: web.Request) -> web.Response:
    raise web.HTTPUnauthorized(text="no")


async def _moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/elsewhere")


async def _gone(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def _fails(request: web.Request) -> web.Response:
    raise ValueError("boom")


async def _times_out(request: web.Request) -> web.Response:
    raise asyncio.TimeoutError()


async def _fails_after_its_response(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write_eof(b"sent")
    raise KeyError("after the response")


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data)
        await ws.send_bytes(b"ab")
    return ws


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Telemetry]]:
    telemetry = make_telemetry(
        {
            "OTEL_ASGI_KIT_TRUSTED_PROXIES": "127.0.0.1",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "x-shop",
        }
    )
    app = web.Application()
    for path, handler in (
        ("/stream", _stream),
        ("/after", _after),
        ("/login", _login),
        ("/moved", _moved),
        ("/gone/{name}", _gone),
        ("/ws", _echo),
        ("/fails", _fails),
        ("/times-out", _times_out),
        ("/fails-after", _fails_after_its_response),
        ("/healthz", _login),
    ):
        app.router.add_get(path, handler)
    with serve_in_thread(app, telemetry.instrumentation) as base_url:
        yield base_url, telemetry


def _span_of(telemetry: Telemetry, response: httpx.Response) -> ReadableSpan:
    """The response's SERVER span; the server records it just after the client has the last byte."""
    trace_id = int(response.headers["traceresponse"].split("-")[1], 16)
    spans = wait_for(
        lambda: [
            s
            for s in telemetry.spans.get_finished_spans()
            if s.context.trace_id == trace_id and s.kind.name == "SERVER"
        ],
        timeout=5,
    )
    (span,) = spans
    return span


def test_streaming_response_ends_at_its_last_byte(served: tuple[str, Telemetry]) -> None:
    """A StreamResponse written in three paced chunks: the span covers them and counts the 300 body bytes."""
    base, telemetry = served
    response = httpx.get(base + "/stream")
    span = _span_of(telemetry, response)
    assert len(response.content) == 300
    assert span.name == "GET /stream"
    assert (span.end_time - span.start_time) / 1e9 >= 0.3
    sizes = [p for p in telemetry.points("http.server.response.body.size") if p.attributes["http.route"] == "/stream"]
    assert sizes and sizes[0].sum == 300 * sizes[0].count


def test_work_after_the_last_byte_is_a_background_span(served: tuple[str, Telemetry]) -> None:
    """write_eof, then 0.2 s of work: the request ends at write_eof, the work is an INTERNAL child span."""
    base, telemetry = served
    response = httpx.get(base + "/after")
    span = _span_of(telemetry, response)
    assert (span.end_time - span.start_time) / 1e9 < 0.2
    (background,) = [
        s
        for s in telemetry.spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == span.context.span_id
    ]
    assert background.name == "GET /after background"
    assert (background.end_time - background.start_time) / 1e9 >= 0.19


def test_http_exceptions_are_answers_not_errors(
    served: tuple[str, Telemetry], caplog: pytest.LogCaptureFixture
) -> None:
    """HTTPFound/HTTPNotFound raised by a handler: the route is kept, no error; a 401 is a security event."""
    base, telemetry = served
    with caplog.at_level(logging.WARNING, logger="otel_asgi_kit.security"):
        moved = httpx.get(base + "/moved")
        gone = httpx.get(base + "/gone/x")
        login = httpx.get(base + "/login", headers={"X-Forwarded-For": "203.0.113.9"})
    assert (moved.status_code, gone.status_code, login.status_code) == (302, 404, 401)
    for response, route in ((moved, "/moved"), (gone, "/gone/{name}"), (login, "/login")):
        span = _span_of(telemetry, response)
        assert span.attributes["http.route"] == route
        assert span.status.status_code is not StatusCode.ERROR
        assert "error.type" not in span.attributes
    # The peer is a trusted proxy: the client is who it forwarded for.
    assert _span_of(telemetry, login).attributes["client.address"] == "203.0.113.9"
    (event,) = [r for r in caplog.records if r.name == "otel_asgi_kit.security"]
    assert event.__dict__["http.route"] == "/login" and event.__dict__["client.address"] == "203.0.113.9"
    failures = telemetry.points("http.server.auth.failures")
    assert [p.value for p in failures if p.attributes.get("http.route") == "/login"] == [1]


def test_what_the_app_raises_is_the_spans_error(served: tuple[str, Telemetry]) -> None:
    """aiohttp answers an exception with a 500 and a timeout with a 504: the span names the exception."""
    base, telemetry = served
    failed, timed_out = httpx.get(base + "/fails"), httpx.get(base + "/times-out")
    assert (failed.status_code, timed_out.status_code) == (500, 504)
    for response, kind in ((failed, "ValueError"), (timed_out, "TimeoutError")):
        span = _span_of(telemetry, response)
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == kind
        (event,) = [e for e in span.events if e.name == "exception"]
        assert str(event.attributes["exception.type"]).endswith(kind)  # asyncio.exceptions.TimeoutError on 3.10


def test_an_error_after_the_response_is_the_background_spans(served: tuple[str, Telemetry]) -> None:
    """The whole response went out, then the handler raised: the client got its 200 and the request span
    is a success; the error belongs to the work after the response (a background span), as on ASGI."""
    base, telemetry = served
    response = httpx.get(base + "/fails-after")
    assert (response.status_code, response.content) == (200, b"sent")
    span = _span_of(telemetry, response)
    assert span.attributes["http.response.status_code"] == 200 and "error.type" not in span.attributes
    assert span.status.status_code is not StatusCode.ERROR
    parent = span.context.span_id
    (background,) = wait_for(
        lambda: [s for s in telemetry.spans.get_finished_spans() if s.parent and s.parent.span_id == parent],
        timeout=5,
    )
    assert background.name == "GET /fails-after background" and background.kind.name == "INTERNAL"
    assert background.attributes["error.type"] == "KeyError"
    assert background.status.status_code is StatusCode.ERROR


def test_excluded_path_is_untraced(served: tuple[str, Telemetry]) -> None:
    """/healthz matches the default exclusions: answered, no span, no trace header."""
    base, telemetry = served
    before = len(telemetry.spans.get_finished_spans())
    response = httpx.get(base + "/healthz")
    assert response.status_code == 401 and "traceresponse" not in response.headers
    assert len(telemetry.spans.get_finished_spans()) == before


def test_a_routes_path_is_kept_by_route_and_unmatched_requests_keep_nothing(served: tuple[str, Telemetry]) -> None:
    """The route's path is read from its resource once; 404s (a new SystemRoute each) neither name a route nor stay."""
    from otel_asgi_kit.aiohttp import middleware

    base, telemetry = served
    first, second = httpx.get(base + "/gone/a"), httpx.get(base + "/gone/b")
    assert {_span_of(telemetry, r).attributes["http.route"] for r in (first, second)} == {"/gone/{name}"}
    kept = dict(middleware._ROUTES)
    assert "/gone/{name}" in kept.values()
    missing = [httpx.get(base + f"/nowhere/{n}") for n in range(5)]
    assert all(r.status_code == 404 for r in missing)
    assert all("http.route" not in (_span_of(telemetry, r).attributes or {}) for r in missing)
    assert middleware._ROUTES == kept


def test_aiohttps_fields_are_read_directly_once_they_agree_with_its_properties(
    served: tuple[str, Telemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scheme and client (the request's), status and headers (the response's) and the matched route come from
    aiohttp's fields, checked against its properties (the request's on the first request, the others on real
    objects when the module loads); where a check fails, the properties are read and that is said once."""
    from aiohttp.web_response import StreamResponse
    from aiohttp.web_urldispatcher import UrlMappingMatchInfo

    from otel_asgi_kit.aiohttp import middleware

    base, telemetry = served
    response = httpx.get(base + "/login")
    span = _span_of(telemetry, response)
    assert middleware._request_fields is True and middleware._response_fields() is True
    assert middleware._ROUTE_FIELD is True and middleware._route_field() is True
    assert (span.attributes["url.scheme"], span.attributes["client.address"]) == ("http", "127.0.0.1")
    assert span.attributes["http.response.status_code"] == 401

    said: list[str] = []
    monkeypatch.setattr(middleware, "warn_once", said.append)
    monkeypatch.setattr(middleware, "_request_fields", None)  # checked again, on an aiohttp whose fields differ
    monkeypatch.setattr(middleware, "_scheme", lambda request: "gopher")
    for _ in range(2):
        span = _span_of(telemetry, httpx.get(base + "/login"))
        assert span.attributes["url.scheme"] == "http"
    assert middleware._request_fields is False
    assert said == [middleware._FIELDS_DIFFER.format("request")]
    monkeypatch.setattr(StreamResponse, "status", property(lambda self: 0))
    assert middleware._response_fields() is False
    monkeypatch.setattr(UrlMappingMatchInfo, "route", property(lambda self: None))
    assert middleware._route_field() is False
    assert said[1:] == [middleware._FIELDS_DIFFER.format(what) for what in ("response", "route match")]


def test_websocket_counts_both_kinds_of_message(served: tuple[str, Telemetry]) -> None:
    """send_str and send_bytes each count once per message; received text counted by its UTF-8 size."""
    base, telemetry = served
    with connect(base.replace("http://", "ws://") + "/ws") as ws:
        trace_id = int(ws.response.headers["traceresponse"].split("-")[1], 16)
        for text in ("é", "zz"):
            ws.send(text)
            assert ws.recv(timeout=5) == text
            assert ws.recv(timeout=5) == b"ab"
    # The server ends the span once it has seen the close.
    (span,) = wait_for(lambda: [s for s in telemetry.spans.get_finished_spans() if s.context.trace_id == trace_id])
    assert span.name == "WS /ws"
    assert span.attributes["websocket.messages.received"] == 2
    assert span.attributes["websocket.messages.sent"] == 4
    received = [
        p.value
        for p in telemetry.points("websocket.server.message.bytes")
        if p.attributes.get("websocket.message.direction") == "received" and p.attributes.get("http.route") == "/ws"
    ]
    assert received == [4]  # "é" is 2 bytes, "zz" 2


def test_contrib_aiohttp_server_instrumentor_is_skipped() -> None:
    """The distro never loads the contrib aiohttp-server instrumentor: the kit's span is the only one."""
    from otel_asgi_kit.distro import KitDistro

    class EntryPoint:
        name = "aiohttp-server"

        def load(self) -> object:
            raise AssertionError("the contrib aiohttp-server instrumentor was loaded")

    KitDistro().load_instrumentor(EntryPoint())
