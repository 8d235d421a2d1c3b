"""Spans and log records encoded when they end (``sdk.encoded``), and the log handler's direct path.

What is queued must become the very request the stock encoder builds from the
same objects; the direct log path must write the record the SDK's path writes;
(``tests/test_no_cycles.py`` checks what a request leaves behind).
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
from otel_asgi_kit.resource import StableResource
from otel_asgi_kit.sdk import encoded, otlp_http
from tests.test_otlp_wire import _spans


class _Keep(SpanExporter, LogRecordExporter):
    """Keeps what the batch processor hands over (encoded items or objects)."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def export(self, batch: Any) -> Any:
        self.batches.append(list(batch))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_encoded_items_make_the_stock_request() -> None:
    spans = _spans()  # two resources, several scopes, events, links, a remote parent, every kind
    items = [encoded.span_item(span) for span in spans]
    assert all(type(item) is bytes for item in items)
    stock = encode_spans(spans).SerializePartialToString()
    assert otlp_http.encode_trace_request(items) == stock
    mixed = [spans[0], *items[1:-1], spans[-1]]  # objects the processor could not encode, among items
    assert otlp_http.encode_trace_request(mixed) == stock


def test_the_span_processor_queues_bytes_and_they_are_exported() -> None:
    keep = _Keep()
    provider = TracerProvider(resource=StableResource({"service.name": "enc"}))
    processor = encoded.EncodingSpanProcessor(keep, schedule_delay_millis=60_000)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(5):
        with tracer.start_as_current_span(f"s{i}"):
            pass
    processor.force_flush()
    queued = [item for batch in keep.batches for item in batch]
    assert len(queued) == 5 and all(type(item) is bytes for item in queued)
    request = ExportTraceServiceRequest.FromString(otlp_http.encode_trace_request(queued))
    # decoded, not searched for b"s4": random span and trace ids may hold those two bytes too
    names = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(names) == [f"s{i}" for i in range(5)]
    processor.shutdown()


def test_an_equal_scope_from_a_new_tracer_reuses_its_group() -> None:
    provider = TracerProvider(resource=StableResource({"service.name": "g"}))
    first = provider.get_tracer("same", "1").start_span("a")
    again = provider.get_tracer("same", "1").start_span("b")  # a new InstrumentationScope object
    first.end()
    again.end()
    a, b = encoded.span_item(first), encoded.span_item(again)
    assert type(a) is bytes and type(b) is bytes and a[:2] == b[:2]


def _handler_provider(keep: _Keep) -> tuple[LoggerProvider, encoded.EncodingLogRecordProcessor]:
    provider = LoggerProvider(resource=StableResource({"service.name": "logs"}))
    processor = encoded.EncodingLogRecordProcessor(keep, schedule_delay_millis=60_000)
    provider.add_log_record_processor(processor)
    return provider, processor


def _log_a_few(handler: logging.Handler) -> None:
    logger = logging.getLogger("test_encoded.direct")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    tracer = TracerProvider().get_tracer("t")
    try:
        with tracer.start_as_current_span("request"):
            logger.info("inside %s", "a span", extra={"http.route": "/x", "n": 3, "obj": object.__new__(_Keep)})
            logger.warning("event", extra={"otel.event.name": "kit.test"})
        logger.error("outside: grüße\nnew line")
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("with a stack")
    finally:
        logger.removeHandler(handler)


def _decoded_records(batches: list[list[Any]]) -> list[Any]:
    items = [item for batch in batches for item in batch]
    request = ExportLogsServiceRequest.FromString(otlp_http.encode_logs_request(items))
    records = [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    for record in records:
        # what differs between two emissions: the clock and the (random) ids, whose presence stays compared
        record.observed_time_unix_nano = record.time_unix_nano = 0
        record.trace_id = b"t" if record.trace_id else b""
        record.span_id = b"s" if record.span_id else b""
        for kv in record.attributes:
            if kv.key == "obj":
                kv.value.string_value = kv.value.string_value.split(" at ")[0]
    return records


class _Noop(LogRecordProcessor):
    def on_emit(self, log_record: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def test_the_direct_log_path_writes_what_the_sdk_path_writes() -> None:
    direct_keep, sdk_keep = _Keep(), _Keep()
    direct_provider, direct_processor = _handler_provider(direct_keep)
    sdk_provider, sdk_processor = _handler_provider(sdk_keep)
    sdk_provider.add_log_record_processor(_Noop())  # a second processor: the SDK's path
    direct_handler, sdk_handler = OtlpLogHandler(direct_provider), OtlpLogHandler(sdk_provider)
    _log_a_few(direct_handler)
    _log_a_few(sdk_handler)
    assert direct_handler._direct() is not None and sdk_handler._direct() is None
    direct_processor.force_flush()
    sdk_processor.force_flush()
    direct, via_sdk = _decoded_records(direct_keep.batches), _decoded_records(sdk_keep.batches)
    assert len(direct) == 4
    assert direct == via_sdk
    assert direct[0].trace_id and direct[0].body.string_value == "inside a span"


def test_a_processor_added_later_sees_every_later_record() -> None:
    keep = _Keep()
    provider, processor = _handler_provider(keep)
    handler = OtlpLogHandler(provider)
    seen: list[Any] = []

    class _Collect(_Noop):
        def on_emit(self, log_record: Any) -> None:
            seen.append(log_record.log_record.body)

    _log_a_few(handler)
    provider.add_log_record_processor(_Collect())
    _log_a_few(handler)
    processor.force_flush()
    assert seen == ["inside a span", "event", "outside: grüße\nnew line", "with a stack"]
    assert len(_decoded_records(keep.batches)) == 8


def test_without_the_private_queue_the_stock_processor_path_runs() -> None:
    """A later SDK that renames ``_batch_processor``: spans are queued as objects, as by the stock processor."""
    keep = _Keep()
    processor = encoded.EncodingSpanProcessor(keep, schedule_delay_millis=60_000)
    processor._emit = None  # what __init__ finds when the field is gone
    provider = TracerProvider(resource=StableResource({"service.name": "fallback"}))
    provider.add_span_processor(processor)
    provider.get_tracer("t").start_span("s").end()
    processor.force_flush()
    queued = [item for batch in keep.batches for item in batch]
    assert len(queued) == 1 and type(queued[0]) is not bytes
    assert b"fallback" in otlp_http.encode_trace_request(queued)
    processor.shutdown()
