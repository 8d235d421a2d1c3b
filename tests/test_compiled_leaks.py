"""The compiled request path and span end keep nothing per request: memory is flat once the bounded buffers are full.

A reference the C code forgets to release is not a cycle (``test_no_cycles``
would not see it): the object just stays. Here thousands of requests go
through the compiled ASGI path (``Core.start``, ``finish_common``, the
compiled span end with the encoding processor, trace pages and tail
sampler) and through ``Core.start_request`` (the aiohttp adapter's entry),
after a warm-up that fills every bounded buffer; ``tracemalloc`` must then
find the Python heap flat. One leaked 32-byte object per request would be
hundreds of kB here.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from otel_asgi_kit.asgi import fast
from otel_asgi_kit.asgi.frameworks import install_framework_hooks
from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.export.tail_sampling import TailSampler
from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
from otel_asgi_kit.pages.recorder import TraceRecorder
from otel_asgi_kit.resource import StableResource
from otel_asgi_kit.sdk import accel
from otel_asgi_kit.sdk.encoded import EncodingSpanProcessor
from otel_asgi_kit.settings import load_settings

pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")

WARM = 3000
MEASURED = 12000
ALLOWED = 192 * 1024  # bytes of growth over MEASURED requests: well under one object per request


class _Discard(SpanExporter):
    def export(self, batch: Any) -> Any:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@pytest.fixture
def compiled_writers() -> Any:
    accel.use(True)
    assert accel.compiled(), accel.status()
    yield
    accel.use(False)


def _instrumentation(tail: bool) -> tuple[Instrumentation, TracerProvider]:
    provider = TracerProvider(resource=StableResource({"service.name": "leaks"}))
    batch = EncodingSpanProcessor(_Discard(), schedule_delay_millis=50, max_queue_size=4096)
    provider.add_span_processor(TailSampler([batch], 0.5, 1.0, max_decisions=256) if tail else batch)
    provider.add_span_processor(TraceRecorder(recent=10, slowest_per_route=2, failed=5, spans=50))
    settings = load_settings({})
    inst = Instrumentation(
        settings,
        provider,
        MeterProvider(metric_readers=[InMemoryMetricReader()]),
        http_metrics=HttpServerMetrics(settings.duration_buckets, compiled=True),
    )
    assert fast.core_for(inst, switched_on=True) is not None and inst.end_span is not None
    return inst, provider


def _growth(run: Any) -> int:
    run(WARM)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        run(MEASURED)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


@pytest.mark.parametrize("tail", [False, True], ids=["export-all", "tail-sampled"])
def test_the_compiled_asgi_path_keeps_nothing_per_request(compiled_writers: Any, tail: bool) -> None:
    inst, provider = _instrumentation(tail)

    async def item(request: Request) -> Response:
        return PlainTextResponse("ok")

    install_framework_hooks()
    app = KitMiddleware(Starlette(routes=[Route("/items/{item_id}", item)]), instrumentation=inst)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/1",
        "raw_path": b"/items/1",
        "query_string": b"q=1",
        "root_path": "",
        "headers": [(b"host", b"t"), (b"user-agent", b"leaks")],
        "client": ("127.0.0.1", 4000),
        "server": ("t", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    def run(n: int) -> None:
        async def many() -> None:
            for _ in range(n):
                await app(dict(scope), receive, send)

        asyncio.run(many())

    grown = _growth(run)
    provider.shutdown()
    assert grown < ALLOWED, f"{grown} bytes more after {MEASURED} requests"


def test_the_aiohttp_entry_keeps_nothing_per_request(compiled_writers: Any) -> None:
    inst, provider = _instrumentation(tail=False)
    core = inst.asgi_core

    def run(n: int) -> None:
        for i in range(n):
            # a new query string each time (its redacted text is a new object) and every other one an unknown
            # method (its cut method_original): 0.4 kept one reference to each
            method = "PROPFIND" if i % 2 else "GET"
            request = core.start_request(method, "http", "/items/1", f"q={i}", None, "leaks", "1.1", 4, None)
            request.response_started(200)
            request.response_bytes += 2
            request.response_complete()
            assert request.finish_common("/items/{item_id}", "127.0.0.1", None, False)

    grown = _growth(run)
    provider.shutdown()
    assert grown < ALLOWED, f"{grown} bytes more after {MEASURED} requests"


def test_the_compiled_log_paths_keep_nothing_per_record(compiled_writers: Any) -> None:
    """``LogDirect`` (OTLP bytes queued) and ``EcsLine`` (the stdout line), inside a span and outside one."""
    import io
    import logging

    from opentelemetry import trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter
    from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
    from otel_asgi_kit.sdk.encoded import EncodingLogRecordProcessor

    class Discard(LogRecordExporter):
        def export(self, batch: Any) -> Any:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    provider = LoggerProvider(resource=StableResource({"service.name": "leaks"}))
    provider.add_log_record_processor(
        EncodingLogRecordProcessor(Discard(), schedule_delay_millis=50, max_queue_size=4096)
    )
    otlp = OtlpLogHandler(provider)
    stdout = logging.StreamHandler(io.StringIO())
    stdout.setFormatter(EcsJsonFormatter("leaks"))
    logger = logging.getLogger("test_compiled_leaks.logs")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [otlp, stdout]
    span = trace.NonRecordingSpan(trace.SpanContext(1 << 100, 1 << 60, False, trace.TraceFlags(1)))

    def run(n: int) -> None:
        stream: Any = stdout.stream
        stream.seek(0)
        stream.truncate()
        for i in range(n):
            if i % 2:
                with trace.use_span(span):
                    logger.info("record %d", i)
            else:
                logger.warning("outside")
        stream.seek(0)
        stream.truncate()

    try:
        grown = _growth(run)
        formatter = stdout.formatter
        assert isinstance(formatter, EcsJsonFormatter) and formatter._compiled is not None
        assert otlp._direct_state[2] is not None  # both compiled paths were the ones run
    finally:
        logger.handlers = []
        provider.shutdown()
    assert grown < ALLOWED, f"{grown} bytes more after {MEASURED} records"
