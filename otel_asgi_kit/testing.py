"""Assert on the telemetry your app produces, in memory: ``capture_telemetry()`` and the ``otel_kit`` fixture.

While a capture is active every kit middleware (``otel_asgi_kit.instrument(app)``,
the server hooks) records into it, and every ``logging`` record becomes an
OTLP log record with the trace context of the request that wrote it::

    def test_item(otel_kit):
        TestClient(otel_asgi_kit.instrument(app)).get("/items/1")
        otel_kit.assert_span("GET /items/{item_id}", **{"http.response.status_code": 200})

Only the kit's own spans are captured: OpenTelemetry's global tracer
provider can be set once per process, so spans you start with
``trace.get_tracer(...)`` go to ``capture.tracer_provider`` only if you ask it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import DataPointT, InMemoryMetricReader, Metric, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_asgi_kit._state import use_instrumentation
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
from otel_asgi_kit.metrics.injector import MetricsInjector
from otel_asgi_kit.settings import load_settings

__all__ = ["CapturedLog", "KitCapture", "aggregates", "capture_telemetry", "points_of"]


@dataclass(frozen=True)
class CapturedLog:
    """One ``logging`` record as the kit exports it; ids are hex, empty outside a span."""

    message: str
    level: str
    logger: str
    trace_id: str
    span_id: str
    attributes: Mapping[str, Any]


class KitCapture:
    """In-memory spans, metrics and logs of everything the kit records while active."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.settings = load_settings(environ or {})
        self.resource = Resource.create()
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=self.resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader], resource=self.resource)
        self.log_exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.logger_provider = LoggerProvider(resource=self.resource)
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))
        self.log_handler = OtlpLogHandler(self.logger_provider)
        self.instrumentation = Instrumentation(self.settings, self.tracer_provider, self.meter_provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans in end order, optionally only those called ``name``."""
        spans = self.span_exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``; fails when there are none or several."""
        found = self.spans(name)
        if len(found) != 1:
            raise AssertionError(f"expected exactly one span {name!r}, found {len(found)}; {self._names()}")
        return found[0]

    def assert_span(self, name: str, **attributes: Any) -> ReadableSpan:
        """The one span called ``name``, checked to carry each of ``attributes`` with that value."""
        span = self.span(name)
        actual = dict(span.attributes or {})
        wrong = {k: actual.get(k, "<missing>") for k, v in attributes.items() if actual.get(k, _MISSING) != v}
        if wrong:
            expected = {k: attributes[k] for k in wrong}
            raise AssertionError(f"span {name!r}: expected {expected}, got {wrong}; all attributes: {actual}")
        return span

    def metric_points(self, name: str) -> list[DataPointT]:
        """Current (cumulative) data points of the metric ``name``, as an exporter would get them."""
        data = self.metric_reader.get_metrics_data()
        # The per-request HTTP and WebSocket metrics are the kit's own aggregates, added at collection time.
        data = MetricsInjector(self.resource, *aggregates(self.instrumentation))(data)
        return points_of(data, name)

    def logs(self) -> list[CapturedLog]:
        """Log records written while the capture was active, oldest first."""
        return [_captured(r) for r in self.log_exporter.get_finished_logs()]

    def clear(self) -> None:
        """Forget the spans and log records so far (metrics are cumulative and stay)."""
        self.span_exporter.clear()
        self.log_exporter.clear()

    def _names(self) -> str:
        names = sorted({s.name for s in self.spans()})
        return f"spans seen: {names}" if names else "no spans were recorded"


_MISSING = object()


def aggregates(instrumentation: Instrumentation) -> list[Callable[[], list[Metric]]]:
    """The ``collect`` functions of the kit's own metric aggregates in ``instrumentation``."""
    found: list[Callable[[], list[Metric]]] = []
    if instrumentation.http is not None:
        found.append(instrumentation.http.collect)
    if instrumentation.websocket is not None:
        found.append(instrumentation.websocket.collect)
    return found


def points_of(data: MetricsData | None, name: str) -> list[DataPointT]:
    """Every data point of the metric ``name`` in ``data``."""
    points: list[DataPointT] = []
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def _captured(record: ReadableLogRecord) -> CapturedLog:
    log = record.log_record
    return CapturedLog(
        message=str(log.body),
        level=log.severity_text or "",
        logger=record.instrumentation_scope.name if record.instrumentation_scope else "",
        trace_id=f"{log.trace_id:032x}" if log.trace_id else "",
        span_id=f"{log.span_id:016x}" if log.span_id else "",
        attributes=dict(log.attributes or {}),
    )


@contextmanager
def capture_telemetry(environ: Mapping[str, str] | None = None, level: int = logging.INFO) -> Iterator[KitCapture]:
    """Record what the kit produces into a fresh ``KitCapture``; everything is put back on exit.

    ``environ``: settings as environment variables (default: none, the kit's
    defaults). ``level``: the root logger lets records of this level through
    while the capture is active.
    """
    capture = KitCapture(environ)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(capture.log_handler)
    if previous_level == logging.NOTSET or previous_level > level:
        root.setLevel(level)
    try:
        with use_instrumentation(capture.instrumentation):
            yield capture
    finally:
        root.removeHandler(capture.log_handler)
        root.setLevel(previous_level)
        capture.tracer_provider.shutdown()
        capture.meter_provider.shutdown()
        capture.logger_provider.shutdown()
