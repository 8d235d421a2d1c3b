"""The request path: one SERVER span, route templates, trace header, metrics, containment."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from otel_asgi_kit import failsafe
from otel_asgi_kit.asgi import fast
from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.sdk.server_span import ServerSpanStarter
from tests.conftest import Telemetry, make_telemetry


async def _item(request: Request) -> Response:
    return PlainTextResponse("x" * int(request.query_params.get("size", "2")))


async def _slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params["delay"]))
    return PlainTextResponse("y" * int(request.query_params["size"]))


async def _fail(request: Request) -> Response:
    raise RuntimeError("boom")


def _app() -> Starlette:
    install_framework_hooks()
    v1 = Starlette(routes=[Route("/items/{item_id}", _item)])
    users = Starlette(routes=[Mount("/v1", app=v1)])
    return Starlette(
        routes=[
            Route("/items/{item_id}", _item, methods=["GET", "POST"]),
            Route("/slow", _slow),
            Route("/fail", _fail),
            Route("/healthz", _item),
            Mount("/users/{uid}", app=users),
        ]
    )


def _client(app: Any, telemetry: Telemetry, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    wrapped = KitMiddleware(app, instrumentation=telemetry.instrumentation)
    transport = httpx.ASGITransport(app=wrapped, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _get(telemetry: Telemetry, path: str, app: Any = None, **kwargs: Any) -> httpx.Response:
    async with _client(app or _app(), telemetry, raise_app_exceptions=False) as client:
        return await client.request(kwargs.pop("method", "GET"), path, **kwargs)


def test_one_server_span_named_by_route_template(telemetry: Telemetry) -> None:
    """A matched request gives exactly one SERVER span `GET /items/{item_id}` with stable semconv."""
    response = asyncio.run(_get(telemetry, "/items/42?size=3"))
    assert response.status_code == 200
    (span,) = telemetry.spans.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["url.path"] == "/items/42"
    assert span.attributes["http.response.status_code"] == 200
    assert "error.type" not in span.attributes


def test_mounted_sub_apps_give_the_full_template(telemetry: Telemetry) -> None:
    """Nested mounts, one with a parameter, combine into one template without raw values."""
    response = asyncio.run(_get(telemetry, "/users/77/v1/items/5"))
    assert response.status_code == 200
    (span,) = telemetry.spans.get_finished_spans()
    assert span.name == "GET /users/{uid}/v1/items/{item_id}"


def test_unmatched_request_has_no_route(telemetry: Telemetry) -> None:
    """A 404 is named by its method alone and carries no http.route."""
    asyncio.run(_get(telemetry, "/nothing/here"))
    (span,) = telemetry.spans.get_finished_spans()
    assert span.name == "GET"
    assert span.attributes is not None
    assert "http.route" not in span.attributes
    assert span.attributes["http.response.status_code"] == 404


def test_unknown_method_is_other(telemetry: Telemetry) -> None:
    """Made-up methods become _OTHER (original kept on the span) and the span is named HTTP."""
    asyncio.run(_get(telemetry, "/nothing", method="FROBNICATE"))
    (span,) = telemetry.spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "FROBNICATE"
    assert span.name == "HTTP"


def test_client_trace_context_is_continued(telemetry: Telemetry) -> None:
    """A W3C traceparent makes the server span its child; baggage is accepted."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = asyncio.run(_get(telemetry, "/items/1", headers={"traceparent": parent, "baggage": "tenant=a"}))
    (span,) = telemetry.spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert response.headers["traceresponse"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


def test_every_response_carries_the_trace_id(telemetry: Telemetry) -> None:
    """traceresponse names the server span, for 200, 404 and 500 alike."""

    async def run() -> list[httpx.Response]:
        return [await _get(telemetry, p) for p in ("/items/1", "/nope", "/fail")]

    responses = asyncio.run(run())
    spans = telemetry.spans.get_finished_spans()
    assert [r.status_code for r in responses] == [200, 404, 500]
    for response, span in zip(responses, spans, strict=True):
        version, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
        assert version == "00" and int(flags, 16) & 1  # sampled
        assert trace_id == format(span.context.trace_id, "032x")
        assert span_id == format(span.context.span_id, "016x")


def test_exception_is_recorded(telemetry: Telemetry) -> None:
    """An unhandled exception marks the span ERROR with the exception event and error.type."""
    asyncio.run(_get(telemetry, "/fail"))
    (span,) = telemetry.spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    assert [e.name for e in span.events] == ["exception"]


def test_bare_app_raising_before_responding_still_gets_500_with_header(telemetry: Telemetry) -> None:
    """When the app raises before http.response.start, the kit answers 500 with the trace id."""

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("no response")

    response = asyncio.run(_get(telemetry, "/x", app=bare))
    (span,) = telemetry.spans.get_finished_spans()
    assert response.status_code == 500
    assert response.headers["traceresponse"].split("-")[1] == format(span.context.trace_id, "032x")
    assert span.attributes is not None and span.attributes["error.type"] == "ValueError"


def test_excluded_paths_have_no_span_and_no_metrics(telemetry: Telemetry) -> None:
    """/healthz is excluded by default: no span, no duration point, no trace header."""
    response = asyncio.run(_get(telemetry, "/healthz"))
    assert response.status_code == 200
    assert "traceresponse" not in response.headers
    assert telemetry.spans.get_finished_spans() == ()
    assert telemetry.points("http.server.request.duration") == []


def test_exclusions_follow_the_standard_variable() -> None:
    """OTEL_PYTHON_EXCLUDED_URLS replaces the default list."""
    telemetry = make_telemetry({"OTEL_PYTHON_EXCLUDED_URLS": "^/items"})
    asyncio.run(_get(telemetry, "/items/1"))
    asyncio.run(_get(telemetry, "/healthz"))
    assert [s.name for s in telemetry.spans.get_finished_spans()] == ["GET /healthz"]


def test_response_sizes_are_per_request_under_concurrency(telemetry: Telemetry) -> None:
    """Two overlapping requests each record their own response size."""

    async def run() -> None:
        async with _client(_app(), telemetry) as client:
            await asyncio.gather(client.get("/slow?delay=0.05&size=10"), client.get("/slow?delay=0.01&size=5000"))

    asyncio.run(run())
    (point,) = telemetry.points("http.server.response.body.size")
    assert point.count == 2
    assert point.sum == 5010
    assert point.min == 10 and point.max == 5000


def test_metric_attributes_are_an_allow_list(telemetry: Telemetry) -> None:
    """Random paths, hosts and methods add no series: method, route, status, error, scheme only."""

    async def run() -> None:
        rng = random.Random(7)
        async with _client(_app(), telemetry) as client:
            for _ in range(300):
                await client.request(
                    rng.choice(["GET", "BREW", "PURGE"]),
                    f"/r{rng.getrandbits(64):x}",
                    headers={"host": f"h{rng.getrandbits(32)}.example", "user-agent": str(rng.random())},
                )

    asyncio.run(run())
    points = telemetry.points("http.server.request.duration")
    assert sum(p.count for p in points) == 300
    assert len(points) <= 2  # GET and _OTHER, both 404 without a route
    for point in points:
        assert set(point.attributes) <= {
            "http.request.method",
            "http.route",
            "http.response.status_code",
            "error.type",
            "url.scheme",
        }
        assert point.attributes["http.request.method"] in {"GET", "_OTHER"}


def test_duration_and_active_requests(telemetry: Telemetry) -> None:
    """Duration is recorded with the route; active requests go back to zero."""
    asyncio.run(_get(telemetry, "/items/1"))
    (duration,) = telemetry.points("http.server.request.duration")
    assert duration.count == 1
    assert duration.attributes["http.route"] == "/items/{item_id}"
    assert duration.attributes["http.response.status_code"] == 200
    assert duration.explicit_bounds[0] == 0.005 and duration.explicit_bounds[-1] == 60
    (active,) = telemetry.points("http.server.active_requests")
    assert active.value == 0


def test_request_body_size_only_when_known(telemetry: Telemetry) -> None:
    """A body with Content-Length is measured; a GET without one records nothing."""

    async def run() -> None:
        async with _client(_app(), telemetry) as client:
            await client.post("/items/1", content=b"z" * 1234)
            await client.get("/items/1")

    asyncio.run(run())
    (point,) = telemetry.points("http.server.request.body.size")
    assert point.count == 1 and point.sum == 1234


def test_failing_tracer_never_breaks_the_app(telemetry: Telemetry, capsys: pytest.CaptureFixture[str]) -> None:
    """If starting the span throws, the request is still served and the failure reported once."""

    class Broken:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer exploded")

    telemetry.instrumentation.tracer = Broken()  # type: ignore[assignment]
    telemetry.instrumentation.server_spans = ServerSpanStarter(Broken())  # type: ignore[arg-type]
    if telemetry.instrumentation.asgi_core is not None:  # the compiled path took the old starter: again
        fast.core_for(telemetry.instrumentation, switched_on=True)
    failsafe._seen.clear()

    async def run() -> list[int]:
        return [(await _get(telemetry, "/items/1")).status_code for _ in range(3)]

    assert asyncio.run(run()) == [200, 200, 200]
    err = capsys.readouterr().err
    assert err.count("tracer exploded") == 1
    assert "starting a request span failed and was contained" in err


def test_captured_headers_are_redacted() -> None:
    """Capturing every header keeps names but replaces credential values."""
    telemetry = make_telemetry({"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*"})
    asyncio.run(
        _get(
            telemetry,
            "/items/1",
            headers={"authorization": "Bearer hunter2", "x-session-id": "abc", "x-color": "blue"},
        )
    )
    (span,) = telemetry.spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["http.request.header.authorization"] == ("REDACTED",)
    assert span.attributes["http.request.header.x-session-id"] == ("REDACTED",)
    assert span.attributes["http.request.header.x-color"] == ("blue",)


def test_wrapping_twice_is_one_span(telemetry: Telemetry) -> None:
    """An app wrapped by the kit twice (launcher + code) still records one span."""
    inner = KitMiddleware(_app(), instrumentation=telemetry.instrumentation)
    asyncio.run(_get(telemetry, "/items/1", app=inner))
    assert len(telemetry.spans.get_finished_spans()) == 1
