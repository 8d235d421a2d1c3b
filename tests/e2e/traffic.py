"""Bounded OTLP traffic from the real SDK, counting exactly what a collector accepted."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import set_span_in_context


@dataclass
class Accepted:
    """What the collector answered 2xx to (the SDK gives up on the rest and says so)."""

    spans: int = 0
    logs: int = 0
    failed_exports: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _CountingSpans(SpanExporter):
    def __init__(self, inner: SpanExporter, accepted: Accepted) -> None:
        self.inner, self.accepted = inner, accepted

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self.accepted.lock:
            if result is SpanExportResult.SUCCESS:
                self.accepted.spans += len(spans)
            else:
                self.accepted.failed_exports += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


class _CountingLogs(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, accepted: Accepted) -> None:
        self.inner, self.accepted = inner, accepted

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        result = self.inner.export(batch)
        with self.accepted.lock:
            if result is LogRecordExportResult.SUCCESS:
                self.accepted.logs += len(batch)
            else:
                self.accepted.failed_exports += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class Traffic:
    """Traces of ``spans_per_trace`` spans, each span with one log record, from one service, until stopped.

    Every span of trace N is started at once, so each export batch mixes
    traces; ``services`` > 1 sends the same trace from several services
    (each with its own endpoint), as a request crossing services would.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        traces_per_second: float = 10.0,
        spans_per_trace: int = 4,
        max_seconds: float = 300.0,
        service_prefix: str = "traffic",
    ) -> None:
        self.run_id = uuid.uuid4().hex[:10]
        self.service_names = [f"{service_prefix}-{self.run_id}-{i}" for i in range(len(endpoints))]
        self.accepted = Accepted()
        self.trace_ids: list[int] = []
        self.interval = 1.0 / traces_per_second
        self.spans_per_trace = spans_per_trace
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._providers: list[tuple[TracerProvider, LoggerProvider]] = []
        for endpoint, name in zip(endpoints, self.service_names, strict=True):
            resource = Resource.create({"service.name": name})
            tracer_provider = TracerProvider(resource=resource)
            # A 10 s export timeout: an SDK waiting on a full collector queue
            # retries within it instead of giving up at once.
            spans = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)
            tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    _CountingSpans(spans, self.accepted), schedule_delay_millis=200, max_queue_size=20_000
                )
            )
            logger_provider = LoggerProvider(resource=resource)
            logs = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=10)
            logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    _CountingLogs(logs, self.accepted), schedule_delay_millis=200, max_queue_size=20_000
                )
            )
            self._providers.append((tracer_provider, logger_provider))
        self._thread = threading.Thread(target=self._run, name="otlp-traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> Accepted:
        """Stop sending, flush everything queued in the SDK, return the accepted counts."""
        self._stop.set()
        self._thread.join(30)
        for tracer_provider, logger_provider in self._providers:
            tracer_provider.shutdown()
            logger_provider.shutdown()
        return self.accepted

    def spans_per_service(self) -> dict[str, int]:
        """How many spans each service started so far (the root's service starts one more)."""
        counts = dict.fromkeys(self.service_names, 0)
        for index in range(self.spans_per_trace):
            counts[self._service_of(index)] += len(self.trace_ids)
        return counts

    def _service_of(self, index: int) -> str:
        # Span 0 is the root, from the first service; children go round the services.
        return self.service_names[0 if index == 0 else index % len(self.service_names)]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds  # bounded even if stop() is never called
        tracers = [(tp.get_tracer("traffic"), lp.get_logger("traffic")) for tp, lp in self._providers]
        while not self._stop.is_set() and time.monotonic() < deadline:
            root_tracer, _ = tracers[0]
            root = root_tracer.start_span("GET /orders/{id}")
            context = set_span_in_context(root)
            self.trace_ids.append(root.get_span_context().trace_id)
            for index in range(1, self.spans_per_trace):
                # Spread the children over the services: a trace that crosses them.
                tracer, logger = tracers[self.service_names.index(self._service_of(index))]
                child = tracer.start_span(f"step {index}", context=context)
                logger.emit(
                    body=f"step {index}", severity_number=SeverityNumber.INFO, context=set_span_in_context(child)
                )
                child.end()
            tracers[0][1].emit(body="order served", severity_number=SeverityNumber.INFO, context=context)
            root.end()
            self._stop.wait(self.interval)
