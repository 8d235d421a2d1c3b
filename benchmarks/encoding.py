"""µs per span and per log record to OTLP protobuf bytes: the stock encoder against the kit's.

    .venv/bin/python benchmarks/encoding.py

Builds 512 server spans shaped like the kit's (8 attributes) and 512 log
records with trace context, then times each encoder over the whole batch,
alternating, 3 rounds; checks that they give the same bytes. "kit" is the
kit's Python writer; "compiled" the same with the optional compiled writer
(``accel/``, shown when it is installed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
from otel_asgi_kit.resource import StableResource
from otel_asgi_kit.sdk import accel, otlp_http, wire, wire_logs

BATCH = 512
RESOURCE = StableResource({"service.name": "bench", "service.instance.id": "a1b2", "host.name": "h"})


def server_spans() -> Sequence[Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otel_asgi_kit", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.30.0")
    for i in range(BATCH):
        span = tracer.start_span(
            "GET",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "url.path": f"/items/{i}",
                "url.scheme": "http",
                "user_agent.original": "wrk",
                "network.protocol.version": "1.1",
            },
        )
        span.update_name("GET /items/{id}")
        span.set_attributes(
            {"http.route": "/items/{id}", "http.response.status_code": 200, "client.address": "127.0.0.1"}
        )
        span.end()
    return exporter.get_finished_spans()


def log_records(spans: Sequence[Any]) -> Sequence[Any]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("bench.encoding")
    logger.propagate = False
    logger.addHandler(OtlpLogHandler(provider))
    tracer = TracerProvider().get_tracer("t")
    for i in range(BATCH):
        with tracer.start_as_current_span("request"):
            logger.warning("item %d looked up", i)
    return exporter.get_finished_logs()


def per_item_us(encode: Callable[[], bytes], rounds: int = 10) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        encode()
    return (time.perf_counter() - start) / rounds / BATCH * 1e6


def main() -> None:
    spans = server_spans()
    logs = log_records(spans)
    compiled = accel.use(True).startswith("compiled")
    cases: dict[str, dict[str, Callable[[], bytes]]] = {
        "span": {
            "stock": lambda: encode_spans(spans).SerializePartialToString(),
            "kit": lambda: wire.encode_trace_request(spans),
            "compiled": lambda: otlp_http.encode_trace_request(spans),
        },
        "log record": {
            "stock": lambda: encode_logs(logs).SerializeToString(),
            "kit": lambda: wire_logs.encode_logs_request(logs),
            "compiled": lambda: otlp_http.encode_logs_request(logs),
        },
    }
    print(f"compiled writer: {accel.status()}")
    for name, encoders in cases.items():
        if not compiled:
            del encoders["compiled"]
        first = encoders["stock"]()
        assert all(encode() == first for encode in encoders.values()), f"{name}: the encoders disagree"
        results: dict[str, list[float]] = {label: [] for label in encoders}
        for _ in range(3):
            for label, encode in encoders.items():
                results[label].append(per_item_us(encode))
        medians = {label: sorted(values)[1] for label, values in results.items()}
        stock = medians["stock"]
        shown = "   ".join(f"{label} {us:5.1f} µs ({stock / us:.1f}x)" for label, us in medians.items())
        print(f"{name:10s}  {shown}   same bytes, batch of {BATCH}")


if __name__ == "__main__":
    main()
