"""The kit's logging → OTel handler and batch processor give what the stock ones give."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
from otel_asgi_kit.sdk.log_processor import DirectBatchLogRecordProcessor
from tests.support.otlp_receiver import attrs


def _log_everything(handler: logging.Handler) -> None:
    logger = logging.getLogger("test_otlp_log_handler.app")
    logger.propagate = False
    logger.setLevel(1)
    logger.addHandler(handler)
    try:
        with TracerProvider().get_tracer("t").start_as_current_span("request"):
            logger.info("plain %s", "args")
            logger.warning("with extra", extra={"http.route": "/x", "n": 3, "otel.event.name": "my.event"})
            logger.error("deprecated event name", extra={"event.name": "old.event"})
            try:
                raise ValueError("boom", 2)
            except ValueError:
                logger.exception("failed")
        logger.critical("outside any span")
        logger.log(5, "below debug")
        logger.log(60, "above critical")
        logger.debug({"structured": "body"})  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)


def _records(make: Any) -> list[Any]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource({"service.name": "logs"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    _log_everything(make(provider))
    return list(exporter.get_finished_logs())


def _decoded(records: list[Any]) -> ExportLogsServiceRequest:
    message = ExportLogsServiceRequest.FromString(encode_logs(records).SerializeToString())
    for rl in message.resource_logs:
        for sl in rl.scope_logs:
            for r in sl.log_records:
                r.observed_time_unix_nano = r.time_unix_nano = 0
                r.trace_id = r.span_id = b"x" if r.trace_id else b""
                for kv in r.attributes:
                    if kv.key == "exception.stacktrace":
                        kv.value.string_value = kv.value.string_value.split("\n")[-2]  # the line, not the paths
    return message


def test_same_records_as_the_stock_handler() -> None:
    ours = _records(OtlpLogHandler)
    stock = _records(lambda provider: LoggingHandler(logger_provider=provider))
    assert len(ours) == len(stock) == 8
    assert _decoded(ours) == _decoded(stock)
    assert [r.log_record.event_name for r in ours[1:3]] == ["my.event", "old.event"]
    assert ours[0].log_record.trace_id and not ours[4].log_record.trace_id


def test_a_failing_pipeline_never_breaks_the_caller(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(LoggerProvider):
        def get_logger(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("provider exploded")

    from otel_asgi_kit import failsafe

    failsafe._seen.clear()
    _log_everything(OtlpLogHandler(Broken()))
    assert capsys.readouterr().err.count("provider exploded") == 1


def _through(processor_class: Any) -> tuple[Any, list[Any]]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource({"service.name": "logs"}))
    processor = processor_class(exporter, schedule_delay_millis=10)
    provider.add_log_record_processor(processor)
    _log_everything(OtlpLogHandler(provider))
    processor.force_flush()
    provider.shutdown()
    return processor, list(exporter.get_finished_logs())


def test_batch_processor_exports_detached_copies() -> None:
    processor, ours = _through(DirectBatchLogRecordProcessor)
    assert hasattr(processor, "_batch_processor"), "the stock processor changed: on_emit falls back to it"
    assert len(ours) == 8
    assert all(len(r.log_record.context) == 0 for r in ours)  # no reference to the request's context
    _, stock = _through(BatchLogRecordProcessor)
    assert _decoded(ours) == _decoded(stock)


def test_access_log_records_carry_http_attributes() -> None:
    """uvicorn's access line becomes an OTLP record with method, URL, status and client as attributes."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/items/1?x=2", "1.1", 404), None,
    )  # fmt: skip
    OtlpLogHandler(provider).handle(record)
    (exported,) = exporter.get_finished_logs()
    attributes = dict(exported.log_record.attributes or {})
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 404
    assert attributes["url.original"] == "/items/1?x=2"
    assert attributes["client.address"] == "127.0.0.1"
    provider.shutdown()


_EXTRA_OBJECTS = """
import enum, logging, sys
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler

class ASGIRequest:
    def __str__(self): return "<ASGIRequest: GET '/fail'>"

class Level(enum.IntEnum):
    HIGH = 3

exporter = InMemoryLogRecordExporter()
provider = LoggerProvider()
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
handler = OtlpLogHandler(provider) if sys.argv[1] == "kit" else LoggingHandler(logger_provider=provider)
logger = logging.getLogger("django.request")
logger.propagate = False
logger.addHandler(handler)
logger.error("Internal Server Error: /fail", extra={
    "status_code": 500, "request": ASGIRequest(), "level": Level.HIGH,
    "nested": {"who": [ASGIRequest(), 1], 7: None}, "plain": ["a", "b"],
})
(record,) = exporter.get_finished_logs()
print(encode_logs([record]).SerializeToString().hex())  # what the OTLP exporter sends
"""


@pytest.mark.parametrize("handler", ["kit", "stock"])
def test_objects_in_extra_are_exported_as_text_without_sdk_warnings(handler: str) -> None:
    """Django's request object in ``extra=`` reaches OTLP as its text; the kit's handler prints no SDK warning."""
    run = subprocess.run([sys.executable, "-c", _EXTRA_OBJECTS, handler], capture_output=True, text=True, check=True)
    sent = ExportLogsServiceRequest.FromString(bytes.fromhex(run.stdout))
    attributes = attrs(sent.resource_logs[0].scope_logs[0].log_records[0].attributes)
    assert attributes["request"] == "<ASGIRequest: GET '/fail'>"
    assert attributes["status_code"] == 500
    if handler == "stock":  # the warning this test guards against, as the SDK prints it
        assert "Invalid type" in run.stderr and "ASGIRequest" in run.stderr
        return
    assert run.stderr == ""
    assert attributes["level"] == 3
    assert attributes["nested"] == {"who": ["<ASGIRequest: GET '/fail'>", 1], "7": None}
    assert attributes["plain"] == ["a", "b"]
