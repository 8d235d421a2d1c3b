"""The kit's direct OTLP encoder against the stock one and the proto definitions.

The stock encoder (opentelemetry-exporter-otlp-proto-common) builds protobuf
messages from opentelemetry-proto; the kit writes the bytes itself. For the same
spans and log records both must decode to equal messages — and, since both
write fields in field-number order, to equal bytes.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from otel_asgi_kit.resource import StableResource
from otel_asgi_kit.sdk import wire, wire_logs

ODD_VALUES: dict[str, Any] = {
    "str": "plain",
    "empty": "",
    "unicode": "grüße — 日本",
    "true": True,
    "false": False,
    "zero": 0,
    "small": 7,
    "negative": -42,
    "int64.max": (1 << 63) - 1,
    "int64.min": -(1 << 63),
    "float": 3.25,
    "nan.free.negative.float": -0.5,
    "strs": ("a", "b"),
    "ints": [1, -2, 300],
    "floats": [0.5, 1.5],
    "bools": [True, False],
    "long": "x" * 300,
}


def _spans() -> list[Any]:
    exporter = InMemorySpanExporter()
    spans = []
    for resource in (StableResource({"service.name": "a", "n": 1}), Resource({"service.name": "b"}, "https://s/1")):
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("scope.one", "1.2", schema_url="https://opentelemetry.io/schemas/1.30.0")
        other = provider.get_tracer("scope.two", attributes={"scope.attr": "v"})
        bare = provider.get_tracer("unversioned")
        remote = SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(1),
            trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
        )
        from opentelemetry import trace

        parent_ctx = trace.set_span_in_context(NonRecordingSpan(remote))
        with tracer.start_as_current_span("GET /items/{id}", kind=SpanKind.SERVER, context=parent_ctx) as server:
            server.set_attributes(ODD_VALUES)
            server.add_event("something", {"k": "v", "n": 1})
            server.add_event("")
            try:
                raise ValueError("boom")
            except ValueError as exc:
                server.record_exception(exc)
            server.set_status(Status(StatusCode.ERROR, "ValueError: boom"))
            # (a link without trace_state: the stock encoder would drop it, see test_link_trace_state_is_kept)
            linked = SpanContext(server.get_span_context().trace_id, 0x1234, is_remote=False)
            with other.start_as_current_span("child", links=[Link(linked, {"l": 1})]) as child:
                child.set_status(Status(StatusCode.OK))
            for kind in SpanKind:
                bare.start_span(f"kind {kind.name}", kind=kind).end()
        spans.extend(exporter.get_finished_spans())
        exporter.clear()
    return spans


def test_spans_encode_to_the_stock_bytes() -> None:
    spans = _spans()
    ours = wire.encode_trace_request(spans)
    stock = encode_spans(spans).SerializePartialToString()
    assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(stock)
    assert ours == stock
    decoded = ExportTraceServiceRequest.FromString(ours)
    assert len(decoded.resource_spans) == 2
    assert sum(len(s.spans) for r in decoded.resource_spans for s in r.scope_spans) == len(spans)


def test_repeated_encoding_uses_the_caches_and_stays_equal() -> None:
    spans = _spans()
    first = wire.encode_trace_request(spans)
    assert wire.encode_trace_request(spans) == first == encode_spans(spans).SerializePartialToString()


def test_cache_is_bounded_under_high_cardinality() -> None:
    provider = TracerProvider(resource=Resource({"service.name": "x"}))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for i in range(wire._CACHE_LIMIT + 100):
        tracer.start_span("s", attributes={"url.path": f"/items/{i}"}).end()
    spans = exporter.get_finished_spans()
    assert wire.encode_trace_request(spans) == encode_spans(spans).SerializePartialToString()
    assert len(wire._kv_cache) <= wire._CACHE_LIMIT


def test_link_trace_state_is_kept() -> None:
    """The one deliberate difference: the stock encoder drops a link's trace_state."""
    provider = TracerProvider(resource=Resource({}))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    linked = SpanContext(1, 2, is_remote=True, trace_state=TraceState([("k", "v")]))
    provider.get_tracer("t").start_span("s", links=[Link(linked)]).end()
    decoded = ExportTraceServiceRequest.FromString(wire.encode_trace_request(exporter.get_finished_spans()))
    link = decoded.resource_spans[0].scope_spans[0].spans[0].links[0]
    assert (link.trace_state, link.span_id, link.flags) == ("k=v", (2).to_bytes(8, "big"), 0x300)


def test_values_otlp_cannot_carry_leave_out_only_that_attribute() -> None:
    provider = TracerProvider(resource=Resource({}))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("t").start_span("s", attributes={"ok": "yes", "huge": 1 << 70, "bad": "\ud800x"})
    span.end()
    decoded = ExportTraceServiceRequest.FromString(wire.encode_trace_request(exporter.get_finished_spans()))
    attrs = {kv.key: kv.value for kv in decoded.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert set(attrs) == {"ok", "bad"}
    assert attrs["bad"].string_value == "?x"  # repaired by the codec, not dropped


@pytest.mark.parametrize("body", ["a message", "", {"structured": [1, "two"]}, 5, None])
def test_log_records_encode_to_the_stock_bytes(body: Any) -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=StableResource({"service.name": "logs"}, "https://s/2"))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"test_otlp_wire.{id(body)}")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    tracer_provider = TracerProvider()
    try:
        with tracer_provider.get_tracer("t").start_as_current_span("s"):
            logger.warning(body, extra={"http.route": "/x", "n": 3})
        logger.error("outside a span: %s", "formatted")
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("with a stack")
    finally:
        logger.removeHandler(handler)
    records = exporter.get_finished_logs()
    assert len(records) == 3
    ours = wire_logs.encode_logs_request(records)
    stock = encode_logs(records).SerializeToString()
    assert ExportLogsServiceRequest.FromString(ours) == ExportLogsServiceRequest.FromString(stock)
    assert ours == stock


def test_varint_matches_protobuf() -> None:
    from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]

    for n in (0, 1, 127, 128, 300, 16383, 16384, (1 << 63) - 1):
        assert wire.varint(n) == _VarintBytes(n)
    assert wire.varint(-1) == b"\xff" * 9 + b"\x01"


def test_the_exporters_send_the_kit_bytes(receiver: Any) -> None:
    """On the installed exporter release the direct path is taken, and a real HTTP receiver decodes it."""
    from otel_asgi_kit.export.otlp import otlp_exporter
    from otel_asgi_kit.settings import load_settings

    settings = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    spans = _spans()
    exporter = otlp_exporter("traces", settings.otlp["traces"])
    assert exporter.direct, "the stock exporter changed: otel_asgi_kit.sdk.otlp_http no longer applies"
    assert exporter.export(spans).name == "SUCCESS"
    assert receiver.received.raw == [encode_spans(spans).SerializePartialToString()]
    assert len(receiver.spans()) == len(spans)
    log_exporter = otlp_exporter("logs", settings.otlp["logs"])
    assert log_exporter.direct
    exporter.shutdown()
    log_exporter.shutdown()
