"""Telemetry never throws into the app: hostile inputs and failing exporters are contained.

Every scope goes through the Python request path and the compiled one (``asgi.fast``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.export.health import ExportHealth, ReportingSpanExporter
from tests.conftest import make_telemetry

TELEMETRY = make_telemetry({"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*"})
_COMPILED: list[Any] = []


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


APP = KitMiddleware(_ok, instrumentation=TELEMETRY.instrumentation)


def _compiled_app() -> Any:
    """The same app on the compiled request path (which takes requests without header capture)."""
    if not _COMPILED:
        _COMPILED.append(KitMiddleware(_ok, instrumentation=make_telemetry(compiled=True).instrumentation))
    return _COMPILED[0]


def _call(scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent = _call_one(APP, dict(scope))
    compiled = _call_one(_compiled_app(), dict(scope))
    assert [(m["type"], m.get("status"), m.get("body")) for m in compiled] == [
        (m["type"], m.get("status"), m.get("body")) for m in sent
    ]
    return sent


def _call_one(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


header_bytes = st.binary(min_size=0, max_size=300)
known = st.sampled_from([b"traceparent", b"tracestate", b"baggage", b"content-length", b"user-agent", b"host"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.lists(st.tuples(st.one_of(known, header_bytes), header_bytes), max_size=12),
    path=st.text(max_size=200),
    method=st.text(max_size=20),
    query=st.binary(max_size=200),
)
def test_hostile_requests_are_answered(
    headers: list[tuple[bytes, bytes]], path: str, method: str, query: bytes
) -> None:
    """Any headers (non-UTF-8, malformed traceparent/baggage), path, method or query: the app answers 200."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers,
        "scheme": "http",
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
    }
    sent = _call(scope)
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"ok"


@settings(max_examples=200, deadline=None)
@given(traceparent=st.text(max_size=80), baggage=st.text(max_size=500))
def test_malformed_context_headers_start_a_new_trace(traceparent: str, baggage: str) -> None:
    """Garbage traceparent/baggage is ignored (a fresh root span), never an error."""
    headers = [
        (b"traceparent", traceparent.encode("utf-8", "surrogatepass")),
        (b"baggage", baggage.encode("utf-8", "surrogatepass")),
    ]
    sent = _call({"type": "http", "method": "GET", "path": "/", "headers": headers})
    assert sent[0]["status"] == 200


def test_huge_header_and_path() -> None:
    """A 1 MB header and a 64 KB path are served and recorded without blowing up."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/" + "a" * 65536,
        "headers": [(b"x-big", b"b" * 1_000_000), (b"user-agent", b"\xff\xfe" * 1000)],
    }
    assert _call(scope)[0]["status"] == 200


def test_failing_exporter_is_contained(capsys: pytest.CaptureFixture[str]) -> None:
    """An exporter that raises reports one line and returns FAILURE instead of raising."""

    class Exploding:
        def export(self, spans: Any) -> SpanExportResult:
            raise ConnectionError("collector exploded")

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 0) -> bool:
            return True

    exporter = ReportingSpanExporter(Exploding(), ExportHealth(), "http://collector:4318/v1/traces")  # type: ignore[arg-type]
    assert exporter.export([object()] * 3) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert exporter.export([object()]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "cannot export traces to http://collector:4318/v1/traces: collector exploded" in err[0]
