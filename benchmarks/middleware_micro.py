"""In-process cost of the kit's middleware on one Starlette request, without server or network.

    .venv/bin/python benchmarks/middleware_micro.py            # SDK tracer, spans to a no-op exporter
    .venv/bin/python benchmarks/middleware_micro.py --noop     # no-op tracer: the kit's own code only
    .venv/bin/python benchmarks/middleware_micro.py --exemplar # what keeping an exemplar adds per request
    .venv/bin/python benchmarks/middleware_micro.py --cpu      # this thread's CPU time: steadier on a busy host

Alternates bare and wrapped calls of the same app (20,000 each, two rounds)
and prints µs per request and the difference. Export encoding is not
included (the exporter does nothing); see run.py for the whole picture.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import timeit
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.settings import load_settings

SCOPE = {
    "type": "http",
    "method": "GET",
    "path": "/items/1",
    "raw_path": b"/items/1",
    "query_string": b"",
    "headers": [(b"host", b"x"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
    "scheme": "http",
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 8000),
    "http_version": "1.1",
    "root_path": "",
}


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("x")


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    pass


async def _per_request(app: Any, n: int, clock: Any = time.perf_counter) -> float:
    start = clock()
    for _ in range(n):
        await app(dict(SCOPE), _receive, _send)
    return (clock() - start) / n * 1e6


def exemplar_cost(n: int) -> None:
    """The HTTP aggregate's per-request call without and with a sampled span context (best of 7 rounds)."""
    from opentelemetry.trace import SpanContext, TraceFlags

    from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics

    metrics = HttpServerMetrics((0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
    key = ("GET", "/items/{id}", 200, None, "http")
    active = ("GET", "http")
    ctx = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    finished = metrics.request_finished

    def plain() -> None:
        finished(key, 0.003, None, 10, active)

    def sampled() -> None:
        # what the core adds: the sampled check, then the context and end time passed on
        finished(key, 0.003, None, 10, active, ctx if ctx.trace_flags & 1 else None, 1)

    for name, call in (("plain", plain), ("exemplar", sampled)):
        # CPU time of this thread, not wall time: other processes on a busy host do not count
        best = min(timeit.Timer(call, timer=time.thread_time).timeit(number=n) for _ in range(7))
        print(f"request_finished {name:8} {best / n * 1e9:7.0f} ns/request")


async def main(noop: bool, n: int, clock: Any = time.perf_counter) -> None:
    if noop:
        tracer_provider: Any = NoOpTracerProvider()
    else:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=100_000))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    inst = Instrumentation(load_settings({}), tracer_provider, meter_provider)
    bare = Starlette(routes=[Route("/items/{id}", _item)])
    kit = KitMiddleware(bare, instrumentation=inst)
    for _ in range(2):
        b = await _per_request(bare, n, clock)
        k = await _per_request(kit, n, clock)
        print(f"bare {b:6.1f} µs   kit {k:6.1f} µs   overhead {k - b:6.1f} µs/request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", action="store_true", help="no-op tracer: measure only the kit's own code")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--cpu", action="store_true", help="time this thread's CPU, not the wall clock")
    parser.add_argument("--exemplar", action="store_true", help="the cost of keeping exemplars, in isolation")
    args = parser.parse_args()
    if args.exemplar:
        exemplar_cost(args.requests * 10)
    else:
        asyncio.run(main(args.noop, args.requests, time.thread_time if args.cpu else time.perf_counter))
