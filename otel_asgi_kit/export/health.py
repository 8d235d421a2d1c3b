"""When the collector is down: one clear line now and then, counted drops, never a flood.

The SDK reports export trouble through ``logging`` — a warning per dropped
span when a queue is full, one per retry — and those records would go into
the very pipeline that is failing, or flood stdout. Here:

* the exporters are wrapped to print at most one stderr line per signal per
  ``interval`` saying what is wrong and where (and one when it recovers);
* the SDK's own ``opentelemetry`` log records stop at a handler that keeps
  the last exporter error as the reason, swallows the per-span "queue full"
  warnings, and passes other warnings to stderr at most once per message
  per ``interval``;
* what is dropped is counted by the SDK's standard self-metrics, which
  ``providers`` switches on for the batch processors and exporters only:
  ``otel_sdk_processor_{span,log}_processed_total{error_type="queue_full"}``
  and ``otel_sdk_exporter_*_exported_total{error_type=...}`` on ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_asgi_kit.failsafe import warn

_QUEUE_FULL = "Queue full, dropping %s."


class ExportHealth:
    def __init__(self, interval_s: float = 60.0) -> None:
        self._interval = interval_s
        self._lock = threading.Lock()
        self._last_warning: dict[str, float] = {}
        self._failing: dict[str, bool] = {}
        self._reason: dict[str, str] = {}

    def note_reason(self, signal: str, reason: str) -> None:
        self._reason[signal] = reason

    def failed(self, signal: str, endpoint: str, count: int, reason: str | None = None) -> None:
        if reason:
            self._reason[signal] = reason
        now = time.monotonic()
        with self._lock:
            self._failing[signal] = True
            if now - self._last_warning.get(signal, -1e9) < self._interval:
                return
            self._last_warning[signal] = now
        because = self._reason.get(signal, "no answer")
        warn(
            f"cannot export {signal} to {endpoint}: {because}; {count} dropped in this batch and more "
            f"while it stays unreachable (counted in otel_sdk_*_total{{error_type=...}} on /metrics); "
            f"next report in {self._interval:.0f}s"
        )

    def succeeded(self, signal: str, endpoint: str) -> None:
        if not self._failing.get(signal):
            return
        with self._lock:
            self._failing[signal] = False
            self._last_warning.pop(signal, None)
        warn(f"export of {signal} to {endpoint} works again")

    def warn_limited(self, key: str, line: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning.get(key, -1e9) < self._interval:
                return
            self._last_warning[key] = now
        warn(line)


class SdkDiagnostics(logging.Handler):
    """Receives the SDK's own log records instead of the root logger."""

    def __init__(self, health: ExportHealth) -> None:
        super().__init__(logging.WARNING)
        self._health = health

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.msg == _QUEUE_FULL:
                return  # one per dropped item; counted by the processor's own metric
            signal = _signal_of(record.name)
            if signal is not None:
                self._health.note_reason(signal, _one_line(record.getMessage()))
                return
            self._health.warn_limited(str(record.msg), f"{record.name}: {_one_line(record.getMessage())}")
        except Exception:
            self.handleError(record)


def _signal_of(logger_name: str) -> str | None:
    if ".exporter." not in logger_name:
        return None
    for marker, signal in (("trace", "traces"), ("log", "logs"), ("metric", "metrics")):
        if marker in logger_name.rsplit(".", 1)[-1]:
            return signal
    return "export"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def install_sdk_diagnostics(health: ExportHealth) -> None:
    logger = logging.getLogger("opentelemetry")
    for handler in [h for h in logger.handlers if isinstance(h, SdkDiagnostics)]:
        logger.removeHandler(handler)
    logger.addHandler(SdkDiagnostics(health))
    logger.propagate = False


class ReportingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, health: ExportHealth, endpoint: str) -> None:
        self._inner, self._health, self._endpoint = inner, health, endpoint

    @property
    def inner(self) -> Any:
        return self._inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            self._health.failed("traces", self._endpoint, len(spans), _one_line(str(exc)))
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._health.succeeded("traces", self._endpoint)
        else:
            self._health.failed("traces", self._endpoint, len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class ReportingLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, health: ExportHealth, endpoint: str) -> None:
        self._inner, self._health, self._endpoint = inner, health, endpoint

    @property
    def inner(self) -> Any:
        return self._inner

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            self._health.failed("logs", self._endpoint, len(batch), _one_line(str(exc)))
            return LogRecordExportResult.FAILURE
        if result is LogRecordExportResult.SUCCESS:
            self._health.succeeded("logs", self._endpoint)
        else:
            self._health.failed("logs", self._endpoint, len(batch))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


class ReportingMetricExporter(MetricExporter):
    """Also adds the kit's own aggregates (``inject``) to each export."""

    def __init__(
        self,
        inner: MetricExporter,
        health: ExportHealth,
        endpoint: str,
        inject: Callable[[MetricsData], MetricsData] | None = None,
    ) -> None:
        super().__init__(
            # Private fields of MetricExporter (no public getter); the SDK defaults if absent.
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self._inner, self._health, self._endpoint = inner, health, endpoint
        self._inject = inject

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self._inject is not None:
            metrics_data = self._inject(metrics_data)
        if not metrics_data.resource_metrics:
            return MetricExportResult.SUCCESS  # nothing to say: no empty request to the collector
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            self._health.failed("metrics", self._endpoint, _points(metrics_data), _one_line(str(exc)))
            return MetricExportResult.FAILURE
        if result is MetricExportResult.SUCCESS:
            self._health.succeeded("metrics", self._endpoint)
        else:
            self._health.failed("metrics", self._endpoint, _points(metrics_data))
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for rm in metrics_data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )
