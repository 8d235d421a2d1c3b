"""Tail sampling: every error and slow trace kept at a 1 % ratio, parents' decisions respected, bounded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from otel_asgi_kit.asgi import fast
from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.export.tail_sampling import TailSampler
from otel_asgi_kit.metrics.injector import MetricsInjector
from otel_asgi_kit.settings import load_settings
from otel_asgi_kit.testing import aggregates, points_of
from tests.support.otlp_receiver import OtlpReceiver, wait_for
from tests.support.servers import kit_env, run_server

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-{:016x}-01"


def _setup(ratio: float, slow_s: float, path: str = "python") -> tuple[InMemorySpanExporter, Any, InMemoryMetricReader]:
    """``path``: the ASGI adapter's Python path, or its compiled one (whose span end decides in C)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(TailSampler([SimpleSpanProcessor(exporter)], ratio, slow_s))
    reader = InMemoryMetricReader()
    inst = Instrumentation(load_settings({}), provider, MeterProvider(metric_readers=[reader]))
    tracer = provider.get_tracer("shop")

    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(slow_s * 1.5)
        return PlainTextResponse("slow")

    async def fail(request: Request) -> Response:
        with tracer.start_as_current_span("db query"):
            pass
        raise RuntimeError("boom")

    if path == "compiled":
        pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")
        assert fast.core_for(inst, switched_on=True) is not None
        assert inst.end_span is not None  # the compiled span end, with the tail sampler's step
    else:
        inst.asgi_core = None
    install_framework_hooks()
    app = Starlette(routes=[Route("/ok", ok), Route("/slow", slow), Route("/fail", fail)])
    return exporter, (KitMiddleware(app, instrumentation=inst), inst), reader


def _send(app: Any, paths: list[tuple[str, dict[str, str]]]) -> None:
    async def run() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for path, headers in paths:
                await client.get(path, headers=headers)

    asyncio.run(run())


@pytest.mark.parametrize("path", ["python", "compiled"])
def test_every_error_and_slow_trace_is_kept_at_one_percent(path: str) -> None:
    """400 requests at ratio 0.01: all 40 failures (with their child span) and all 20 slow ones are exported,
    of the 340 plain ones about 1 %; the metrics still count all 400."""
    exporter, (app, inst), reader = _setup(ratio=0.01, slow_s=0.02, path=path)
    paths = ["/fail" if i % 10 == 0 else "/slow" if i % 20 == 5 else "/ok" for i in range(400)]
    _send(app, [(p, {}) for p in paths])
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans if s.kind is SpanKind.SERVER]
    assert names.count("GET /fail") == 40
    assert names.count("GET /slow") == 20
    assert names.count("GET /ok") <= 12  # 1 % of 340 is 3.4; trace ids are random
    assert sum(1 for s in spans if s.name == "db query") == 40
    data = MetricsInjector(Resource({}), *aggregates(inst))(reader.get_metrics_data())
    assert sum(p.count for p in points_of(data, "http.server.request.duration")) == 400


@pytest.mark.parametrize("path", ["python", "compiled"])
def test_a_sampled_remote_parent_keeps_the_trace_whole(path: str) -> None:
    """Requests whose caller sent a sampled traceparent are all exported: the distributed trace stays whole."""
    exporter, (app, _), _ = _setup(ratio=0.0, slow_s=10, path=path)
    _send(app, [("/ok", {"traceparent": SAMPLED_PARENT.format(i + 1)}) for i in range(30)])
    _send(app, [("/ok", {}) for _ in range(30)])
    spans = exporter.get_finished_spans()
    assert len(spans) == 30
    assert all(s.parent is not None and s.parent.is_remote for s in spans)


def test_children_ending_after_the_root_follow_its_decision() -> None:
    """A child that ends after its root (work after the response) is exported with a kept trace only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(TailSampler([SimpleSpanProcessor(exporter)], ratio=0.0, slow_s=0.05))
    tracer = provider.get_tracer("t")
    for slow in (False, True):
        root = tracer.start_span("root", kind=SpanKind.SERVER)
        if slow:
            time.sleep(0.06)
        root.end()
        child = tracer.start_span("late child", context=trace.set_span_in_context(root))
        child.end()
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["root", "late child"]


def test_waiting_children_are_bounded_and_never_silently_lost() -> None:
    """With room for 2 waiting traces, a third pushes the oldest out to the exporter; shutdown flushes the rest."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    sampler = TailSampler([SimpleSpanProcessor(exporter)], ratio=0.0, slow_s=10, max_waiting_traces=2)
    provider.add_span_processor(sampler)
    tracer = provider.get_tracer("t")
    roots = [tracer.start_span(f"root {i}") for i in range(3)]
    for i, root in enumerate(roots):
        tracer.start_span(f"child {i}", context=trace.set_span_in_context(root)).end()
    assert [s.name for s in exporter.get_finished_spans()] == ["child 0"]
    provider.shutdown()
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["child 0", "child 1", "child 2"]


def test_settings_switch_it_on() -> None:
    """OTEL_ASGI_KIT_TAIL_SAMPLING_RATIO turns tail sampling on; a bad value is named and leaves it off."""
    on = load_settings({"OTEL_ASGI_KIT_TAIL_SAMPLING_RATIO": "0.1", "OTEL_ASGI_KIT_TAIL_SAMPLING_SLOW_MS": "250"})
    assert (on.tail_sampling_ratio, on.tail_sampling_slow_ms) == (0.1, 250)
    bad = load_settings({"OTEL_ASGI_KIT_TAIL_SAMPLING_RATIO": "most"})
    assert bad.tail_sampling_ratio is None
    assert any("OTEL_ASGI_KIT_TAIL_SAMPLING_RATIO='most'" in line for line in bad.problems)
    assert load_settings({}).tail_sampling_ratio is None


@pytest.mark.server
def test_a_real_server_exports_only_the_failures_at_ratio_zero(receiver: OtlpReceiver) -> None:
    """Under opentelemetry-instrument with ratio 0: the failed request's trace arrives, the plain ones do not,
    and /metrics still counts every request."""
    env = kit_env(receiver.endpoint, OTEL_ASGI_KIT_TAIL_SAMPLING_RATIO="0")
    with run_server("uvicorn", "examples.starlette_app:app", env) as srv:
        for _ in range(5):
            httpx.get(srv.base_url + "/items/1")
        failed = httpx.get(srv.base_url + "/fail")
        spans = wait_for(lambda: receiver.spans())
        time.sleep(1.5)  # anything else would have been exported by now
        spans = receiver.spans()

        def scrape() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{srv.admin_port}/metrics").text
            return text if 'http_route="/items/{item_id}"' in text else None

        metrics = wait_for(scrape)
    assert [s.name for s in spans] == ["GET /fail"]
    assert spans[0].trace_id == failed.headers["traceresponse"].split("-")[1]
    count = [
        line
        for line in metrics.splitlines()
        if line.startswith("http_server_request_duration_seconds_count") and "/items/{item_id}" in line
    ]
    assert count and float(count[0].rsplit(" ", 1)[1]) == 5


@pytest.mark.parametrize("path", ["python", "compiled"])
def test_exemplars_point_only_at_kept_traces(path: str) -> None:
    """At ratio 0 only the failures are exported: every latency exemplar is one of their traces."""
    exporter, (app, inst), reader = _setup(ratio=0.0, slow_s=10, path=path)
    _send(app, [("/fail" if i % 5 == 0 else "/ok", {}) for i in range(50)])
    exported = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert len(exported) == 10
    data = MetricsInjector(Resource({}), *aggregates(inst))(reader.get_metrics_data())
    exemplars = [e for p in points_of(data, "http.server.request.duration") for e in p.exemplars]
    assert exemplars  # the failures' buckets have theirs
    assert {e.trace_id for e in exemplars} <= exported
