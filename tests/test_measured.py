"""What is measured is what the user saw: background work after the response, whole and broken streams."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI
from opentelemetry.trace import SpanKind, StatusCode
from starlette.responses import StreamingResponse

from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.testing import capture_telemetry

log = logging.getLogger("shop.mail")


def _app() -> FastAPI:
    app = FastAPI()

    async def send_mail(to: str) -> None:
        await asyncio.sleep(0.5)
        log.info("mail sent to %s", to)

    @app.post("/signup")
    async def signup(background: BackgroundTasks) -> dict[str, str]:
        background.add_task(send_mail, "a@example.com")
        return {"status": "ok"}

    async def chunks() -> Any:
        for i in range(10):
            await asyncio.sleep(0.05)
            yield f"data: {i}\n\n"

    @app.get("/events")
    async def events() -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def _duration_seconds(span: Any) -> float:
    return float(span.end_time - span.start_time) / 1e9


def _call(method: str, path: str) -> httpx.Response:
    """One request through the kit's middleware around the app, in-process."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=KitMiddleware(_app()))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path)

    return asyncio.run(run())


def test_background_task_is_not_request_latency() -> None:
    """A 0.5 s background job: span and histogram keep the response's duration; the job is an INTERNAL
    span of the same trace and its log line carries that trace."""
    with capture_telemetry() as kit:
        assert _call("POST", "/signup").status_code == 200
        server = kit.span("POST /signup")
        background = kit.span("POST /signup background")
        (point,) = kit.metric_points("http.server.request.duration")
        logs = [r for r in kit.logs() if "mail sent" in r.message]

    assert _duration_seconds(server) < 0.25
    assert point.sum < 0.25 and point.count == 1
    assert background.kind is SpanKind.INTERNAL
    assert background.parent is not None and background.parent.span_id == server.context.span_id
    assert background.context.trace_id == server.context.trace_id
    assert _duration_seconds(background) >= 0.45
    assert background.start_time >= server.end_time
    (line,) = logs
    assert line.trace_id == format(server.context.trace_id, "032x")


def test_a_whole_stream_is_measured_whole() -> None:
    """A 10 x 50 ms server-sent-event stream lasts ~0.5 s on the span and in the histogram, no error."""
    with capture_telemetry() as kit:
        assert _call("GET", "/events").text.count("data:") == 10
        span = kit.span("GET /events")
        (point,) = kit.metric_points("http.server.request.duration")
    assert 0.45 <= _duration_seconds(span) < 2
    assert point.sum >= 0.45
    assert "error.type" not in (span.attributes or {})
    assert kit.spans("GET /events background") == []


def test_a_dropped_stream_is_marked_incomplete() -> None:
    """A client that goes away after 3 of 10 chunks: ERROR with error.type incomplete_response, on the
    span and on the metric series."""
    with capture_telemetry() as kit:
        app = KitMiddleware(_app())
        sent: list[dict[str, Any]] = []
        three_sent = asyncio.Event

        async def run() -> None:
            gone = three_sent()

            async def receive() -> dict[str, Any]:
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                if sum(1 for m in sent if m["type"] == "http.response.body" and m.get("body")) >= 3:
                    gone.set()

            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/events",
                "raw_path": b"/events",
                "query_string": b"",
                "headers": [(b"host", b"t")],
                "client": ("127.0.0.1", 5000),
                "server": ("127.0.0.1", 80),
            }
            await app(scope, receive, send)

        asyncio.run(run())
        span = kit.span("GET /events")
        (point,) = kit.metric_points("http.server.request.duration")
    bodies = [m for m in sent if m["type"] == "http.response.body" and m.get("body")]
    assert 3 <= len(bodies) < 10
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "incomplete_response"
    assert point.attributes["error.type"] == "incomplete_response"
