"""The local trace pages: bounded buffers filled on span end, rendered (escaped) only when asked."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from otel_asgi_kit import admin
from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.pages import install_pages
from otel_asgi_kit.pages.recorder import TraceLogBuffer, TraceRecorder
from otel_asgi_kit.pages.render import page_handlers
from otel_asgi_kit.settings import load_settings

log = logging.getLogger("shop")


class Pages:
    def __init__(self, **limits: int) -> None:
        self.recorder = TraceRecorder(**limits)
        self.logs = TraceLogBuffer()
        self.provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        self.provider.add_span_processor(self.recorder)
        self.tracer = self.provider.get_tracer("test")
        self.html, self.json = page_handlers(self.recorder, self.logs, "shop")

    def server_span(self, name: str, duration_ms: float = 1, status: int = 200, start_ns: int = 10**18) -> int:
        span = self.tracer.start_span(
            name, kind=SpanKind.SERVER, start_time=start_ns, attributes={"http.response.status_code": status}
        )
        span.end(end_time=start_ns + int(duration_ms * 1e6))
        return span.get_span_context().trace_id

    def page(self, query: str = "") -> tuple[int, str]:
        status, content_type, body = self.html(query)
        assert content_type == "text/html; charset=utf-8"
        return status, body.decode()

    def data(self, query: str = "") -> tuple[int, Any]:
        status, content_type, body = self.json(query)
        assert content_type == "application/json"
        return status, json.loads(body)


@pytest.fixture
def pages() -> Iterator[Pages]:
    p = Pages()
    root = logging.getLogger()
    level = root.level
    root.addHandler(p.logs)
    root.setLevel(logging.INFO)
    try:
        yield p
    finally:
        root.removeHandler(p.logs)
        root.setLevel(level)


async def _fail(request: Request) -> Response:
    log.error("about to fail")
    raise RuntimeError("boom")


async def _request(pages: Pages, *paths: str) -> None:
    install_framework_hooks()
    tracer = pages.provider.get_tracer("shop")

    async def item(request: Request) -> Response:
        log.info("looking up item %s", request.path_params["item_id"])
        with tracer.start_as_current_span("db query"):
            pass
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{item_id}", item), Route("/fail", _fail)])
    inst = Instrumentation(load_settings({}), pages.provider, None)
    transport = httpx.ASGITransport(app=KitMiddleware(app, instrumentation=inst), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path in paths:
            await client.get(path)


def _trace_id(data: dict[str, Any], name: str) -> str:
    return next(r["trace_id"] for r in data["recent"] if r["name"] == name)


def test_requests_are_listed_per_route_with_failures(pages: Pages) -> None:
    """Real requests through the middleware appear per route, newest first, with the failed one counted."""
    asyncio.run(_request(pages, "/items/1", "/items/2", "/fail", "/nothing"))
    status, data = pages.data()
    assert status == 200
    assert [r["path"] for r in data["recent"]] == ["/nothing", "/fail", "/items/2", "/items/1"]
    routes = {r["name"]: (r["requests"], r["failed"]) for r in data["routes"]}
    assert routes == {"GET /items/{item_id}": (2, 0), "GET /fail": (1, 1), "GET": (1, 0)}
    assert [(r["name"], r["status_code"]) for r in data["failed"]] == [("GET /fail", 500)]


def test_unmatched_requests_say_no_route_matched(pages: Pages) -> None:
    """The 404 row is labelled as a request no route matched, not as a route called GET."""
    asyncio.run(_request(pages, "/items/1", "/nothing"))
    status, html = pages.page()
    assert status == 200
    assert "GET <span class=meta>(no route matched)</span>" in html
    assert "GET /items/{item_id} <span" not in html


def test_trace_page_shows_spans_events_and_log_lines(pages: Pages) -> None:
    """A trace's page has its server and child spans, the exception event and the log lines written in it."""
    asyncio.run(_request(pages, "/items/7", "/fail"))
    _, data = pages.data()
    ok_id, failed_id = _trace_id(data, "GET /items/{item_id}"), _trace_id(data, "GET /fail")

    status, detail = pages.data(f"trace={ok_id}")
    assert status == 200
    assert [s["name"] for s in detail["spans"]] == ["GET /items/{item_id}", "db query"]
    assert detail["spans"][0]["attributes"]["http.route"] == "/items/{item_id}"
    assert [(line["logger"], line["message"]) for line in detail["logs"]] == [("shop", "looking up item 7")]

    status, html = pages.page(f"trace={failed_id}")
    assert status == 200
    assert "<dt>http.route</dt><dd>/fail</dd>" in html
    assert "<b>event</b> exception" in html
    assert "<dt>exception.message</dt><dd>boom</dd>" in html
    assert "about to fail" in html
    assert '<tr class="failed"><td class=mono>' in html  # the ERROR log line is red


def test_index_marks_failed_requests_and_links_traces(pages: Pages) -> None:
    """Failed requests are rows of class `failed` (red); each request links to its trace page."""
    ok_id = pages.server_span("GET /ok")
    failed_id = pages.server_span("GET /broken", status=503)
    status, html = pages.page()
    assert status == 200
    assert html.count('<tr class="failed"><td class=mono>') == 2  # recent table + failed table
    assert f'href="traces?trace={ok_id:032x}"' in html
    assert f'href="traces?trace={failed_id:032x}"' in html
    assert "<style>" in html and "<script" not in html and "http" not in html.split("<body>")[0].lower()


def test_values_from_requests_are_escaped(pages: Pages) -> None:
    """A hostile path, route name or log line cannot inject markup into the page."""
    span = pages.tracer.start_span("GET <img src=x onerror=alert(1)>", kind=SpanKind.SERVER)
    span.set_attribute("url.path", "/<script>alert(1)</script>")
    with trace.use_span(span, end_on_exit=True):
        log.info("<b>%s</b>", "<i>")
    trace_id = span.get_span_context().trace_id
    _, index = pages.page()
    _, detail = pages.page(f"trace={trace_id:032x}")
    for html in (index, detail):
        assert "<script>" not in html and "<img" not in html
    assert "/&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert "&lt;b&gt;&lt;i&gt;&lt;/b&gt;" in detail


def test_a_server_span_is_held_while_its_request_is_listed() -> None:
    """Server spans are held by the lists alone (recent, failed, the slowest per route); the ring of other
    spans keeps the requests' children, and server spans take none of its places."""
    pages = Pages(recent=2, failed=1, slowest_per_route=1, spans=4)
    trace_ids = []
    for i in range(4):
        start = 10**18 + i * 10**9
        server = pages.tracer.start_span(
            "GET /r", kind=SpanKind.SERVER, start_time=start, attributes={"http.response.status_code": 200}
        )
        with trace.use_span(server, end_on_exit=False):
            pages.tracer.start_span("db", start_time=start + 1).end(end_time=start + 2)
        server.end(end_time=start + (9 if i == 0 else 3) * 10**6)  # the first is the route's slowest
        trace_ids.append(server.get_span_context().trace_id)
    assert [s.name for s in pages.recorder._spans] == ["db"] * 4
    listed = {0, 2, 3}  # the slowest, and the two most recent
    for i, trace_id in enumerate(trace_ids):
        names = [s.name for s in pages.recorder.trace(trace_id)]
        assert names == (["GET /r", "db"] if i in listed else ["db"]), i


def test_spans_that_are_not_the_sdks_are_counted_too() -> None:
    """A server span from elsewhere (a plain ``ReadableSpan``: attributes a plain dict, maybe no end time)
    is read through its public fields and counted like the SDK's."""
    from opentelemetry.sdk.trace import ReadableSpan

    recorder = TraceRecorder()
    for status, end in ((503, 5), (200, None), (200, 9)):
        recorder.on_end(
            ReadableSpan(
                name="GET /x",
                kind=SpanKind.SERVER,
                attributes={"http.response.status_code": status},
                start_time=1,
                end_time=end,
            )
        )
    snapshot = recorder.snapshot()
    [route] = snapshot.routes
    assert (route.name, route.requests, route.failed) == ("GET /x", 3, 1)
    assert route.slowest[0].end_time == 9
    assert [s.attributes["http.response.status_code"] for s in snapshot.failed] == [503]


def test_recent_and_failed_buffers_are_bounded() -> None:
    """Past their size the oldest entries go; the per-route counts keep counting."""
    pages = Pages(recent=3, failed=2)
    for i in range(10):
        pages.server_span("GET /r", status=500 if i % 2 else 200, start_ns=10**18 + i)
    snapshot = pages.recorder.snapshot()
    assert [s.start_time for s in snapshot.recent] == [10**18 + 9, 10**18 + 8, 10**18 + 7]
    assert [s.start_time for s in snapshot.failed] == [10**18 + 9, 10**18 + 7]
    (route,) = snapshot.routes
    assert (route.requests, route.failed) == (10, 5)


def test_slowest_per_route_keeps_the_k_slowest() -> None:
    """Each route keeps its K slowest requests, slowest first, however many faster ones follow."""
    pages = Pages(slowest_per_route=3)
    for ms in (5, 50, 1, 30, 2, 40, 3, 10):
        pages.server_span("GET /a", duration_ms=ms)
    pages.server_span("GET /b", duration_ms=7)
    routes = {
        r.name: [round((s.end_time or 0) - (s.start_time or 0)) // 10**6 for s in r.slowest]
        for r in pages.recorder.snapshot().routes
    }
    assert routes == {"GET /a": [50, 40, 30], "GET /b": [7]}


def test_status_error_without_5xx_counts_as_failed() -> None:
    """A span whose status is ERROR is failed even when the response was not a 5xx."""
    pages = Pages()
    span = pages.tracer.start_span("GET /x", kind=SpanKind.SERVER, attributes={"http.response.status_code": 200})
    span.set_status(Status(StatusCode.ERROR, "cancelled"))
    span.end()
    pages.server_span("GET /x", status=404)
    assert [s.status.status_code for s in pages.recorder.snapshot().failed] == [StatusCode.ERROR]


def test_route_table_is_bounded() -> None:
    """Unbounded span names (not the kit's) cannot grow the route table past its limit."""
    pages = Pages(max_routes=5)
    for i in range(50):
        pages.server_span(f"GET /users/{i}")
    snapshot = pages.recorder.snapshot()
    assert len(snapshot.routes) == 5
    assert len(snapshot.recent) == 50


def test_slow_trace_is_kept_after_recent_buffer_moved_on() -> None:
    """The slowest request of a route stays viewable after many newer requests pushed it out of `recent`."""
    pages = Pages(recent=5, spans=5)
    slow_id = pages.server_span("GET /a", duration_ms=900)
    for _ in range(20):
        pages.server_span("GET /a", duration_ms=1)
    status, detail = pages.data(f"trace={slow_id:032x}")
    assert status == 200
    assert [s["duration_ms"] for s in detail["spans"]] == [900.0]


def test_log_records_are_not_formatted_on_the_request_path(pages: Pages) -> None:
    """Logging inside a span only stores the record; the message is built when the page is rendered."""

    class Counted:
        calls = 0

        def __str__(self) -> str:
            Counted.calls += 1
            return "counted"

    # Only the page's handler on this logger: pytest's own capture handler formats every record.
    logger = logging.getLogger("pages-only")
    logger.propagate, logger.handlers = False, [pages.logs]
    span = pages.tracer.start_span("GET /c", kind=SpanKind.SERVER)
    with trace.use_span(span, end_on_exit=True):
        logger.info("value %s", Counted())
    logger.info("outside any span %s", Counted())
    assert Counted.calls == 0
    _, detail = pages.data(f"trace={span.get_span_context().trace_id:032x}")
    assert [line["message"] for line in detail["logs"]] == ["value counted"]
    assert Counted.calls == 1
    logger.handlers = []


def test_a_bad_log_record_does_not_break_the_page(pages: Pages) -> None:
    """A record whose arguments do not fit its template is shown by its template."""
    span = pages.tracer.start_span("GET /bad", kind=SpanKind.SERVER)
    with trace.use_span(span, end_on_exit=True):
        pages.logs.handle(logging.LogRecord("shop", logging.INFO, __file__, 1, "%d items", ("many",), None))
    status, detail = pages.data(f"trace={span.get_span_context().trace_id:032x}")
    assert status == 200
    assert [line["message"] for line in detail["logs"]] == ["%d items"]


def test_unknown_or_malformed_trace_ids(pages: Pages) -> None:
    """An unknown trace id answers 404; a malformed one shows the index."""
    status, html = pages.page("trace=" + "ab" * 16)
    assert status == 404
    assert "Not held any more" in html
    status, html = pages.page("trace=<script>")
    assert status == 200
    assert "<h1>Traces</h1>" in html
    assert pages.data("trace=" + "0" * 31 + "1")[0] == 404


def test_install_pages_serves_them_on_the_admin_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """``install_pages`` records the provider's spans and serves both pages on the admin port, behind its token."""
    monkeypatch.setattr(admin, "_routes", {})
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    root = logging.getLogger()
    before = list(root.handlers)
    install_pages(provider)
    server = admin.start_admin_server("127.0.0.1", 0, CollectorRegistry(), token="t0k")
    assert server is not None
    try:
        span = provider.get_tracer("t").start_span("GET /pay", kind=SpanKind.SERVER)
        span.end()
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(base + "/kit/traces").status_code == 401
        auth = {"Authorization": "Bearer t0k"}
        page = httpx.get(base + "/kit/traces", headers=auth)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<b>checkout</b>" in page.text and "GET /pay" in page.text
        data = httpx.get(base + "/kit/traces.json", headers=auth).json()
        assert [r["name"] for r in data["recent"]] == ["GET /pay"]
    finally:
        server.stop()
        for handler in root.handlers:
            if handler not in before:
                root.removeHandler(handler)
        provider.shutdown()
