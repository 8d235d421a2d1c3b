"""Trace-page filters: a dashboard click's route, slowness and failure select the matching held requests."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_asgi_kit.pages.filters import TraceFilter, apply, parse_filter
from otel_asgi_kit.pages.recorder import TraceLogBuffer, TraceRecorder
from otel_asgi_kit.pages.render import page_handlers


def _recorder() -> TraceRecorder:
    recorder = TraceRecorder()
    provider = TracerProvider()
    provider.add_span_processor(recorder)
    tracer = provider.get_tracer("t")
    for name, ms, failed in [
        ("GET /a", 5, False),
        ("GET /a", 300, False),
        ("GET /a", 400, True),
        ("GET /b", 900, False),
    ]:
        span = tracer.start_span(name, kind=SpanKind.SERVER, start_time=1_000_000_000)
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=1_000_000_000 + ms * 1_000_000)
    return recorder


def test_route_slowness_and_failure_select_held_requests() -> None:
    """route + min_ms keeps that route's requests at least that slow; failed=1 only its failures."""
    snapshot = _recorder().snapshot()
    slow = apply(snapshot, parse_filter("route=GET+/a&min_ms=250"))
    assert sorted(s.end_time - s.start_time for s in slow.recent) == [300_000_000, 400_000_000]
    assert [r.name for r in slow.routes] == ["GET /a"]
    failed = apply(snapshot, parse_filter("route=GET%20/a&failed=1"))
    assert [s.end_time - s.start_time for s in failed.recent] == [400_000_000]
    assert apply(snapshot, TraceFilter(route="GET /zz")).recent == []


@pytest.mark.parametrize("query", ["min_ms=-1", "min_ms=nan", "min_ms=1e99", "min_ms=x", "failed=maybe", "sort=1"])
def test_bad_filter_values_are_a_400_naming_the_parameter(query: str) -> None:
    """The trace pages answer an unusable filter with 400 and the parameter's name, in HTML and JSON."""
    html_page, json_page = page_handlers(_recorder(), TraceLogBuffer(), "svc")
    name = query.split("=")[0]
    for handler in (html_page, json_page):
        status, _, body = handler(query)
        assert status == 400 and name.encode() in body
