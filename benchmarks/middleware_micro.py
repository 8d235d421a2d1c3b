"""In-process cost of the kit's middleware on one Starlette request, without server or network.

    .venv/bin/python benchmarks/middleware_micro.py            # SDK tracer, spans to a no-op exporter
    .venv/bin/python benchmarks/middleware_micro.py --noop     # no-op tracer: the kit's own code only

Alternates bare and wrapped calls of the same app (20,000 each, two rounds)
and prints µs per request and the difference. Export encoding is not
included (the exporter does nothing); see run.py for the whole picture.
"""

from __future__ import annotations

import argparse
import asyncio
import time
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


async def _per_request(app: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await app(dict(SCOPE), _receive, _send)
    return (time.perf_counter() - start) / n * 1e6


async def main(noop: bool, n: int) -> None:
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
        b = await _per_request(bare, n)
        k = await _per_request(kit, n)
        print(f"bare {b:6.1f} µs   kit {k:6.1f} µs   overhead {k - b:6.1f} µs/request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", action="store_true", help="no-op tracer: measure only the kit's own code")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.noop, args.requests))
