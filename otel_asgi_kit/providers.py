"""Tracer, meter and logger providers from ``Settings``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from otel_asgi_kit.export.health import (
    ExportHealth,
    ReportingLogExporter,
    ReportingMetricExporter,
    ReportingSpanExporter,
)
from otel_asgi_kit.export.otlp import otlp_exporter
from otel_asgi_kit.export.tail_sampling import TailSampler
from otel_asgi_kit.metrics.snapshots import SnapshotExporter
from otel_asgi_kit.sdk.encoded import EncodingLogRecordProcessor, EncodingSpanProcessor
from otel_asgi_kit.sdk.log_processor import DirectBatchLogRecordProcessor
from otel_asgi_kit.sdk.periodic_reader import make_periodic_reader
from otel_asgi_kit.settings import BatchLimits, OtlpTarget, Settings
from otel_asgi_kit.spool import ProcessSpool

_SDK_SELF_METRICS = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"


@contextmanager
def _self_metrics() -> Iterator[None]:
    """The SDK's standard drop/export counters for what is built inside.

    The SDK reads this switch when a processor or exporter is constructed. It is
    set around those only: switched on for the TracerProvider it would also
    count every span start and end, on the request path. A user's own value wins.
    """
    if _SDK_SELF_METRICS in os.environ:
        yield
        return
    os.environ[_SDK_SELF_METRICS] = "true"
    try:
        yield
    finally:
        os.environ.pop(_SDK_SELF_METRICS, None)


class _BatchKwargs(TypedDict):
    max_queue_size: int
    schedule_delay_millis: int
    max_export_batch_size: int
    export_timeout_millis: int


def _batch_limits(limits: BatchLimits) -> _BatchKwargs:
    """OTEL_BSP_* / OTEL_BLRP_* as the batch processors' keyword arguments."""
    return {
        "max_queue_size": limits.max_queue_size,
        "schedule_delay_millis": limits.schedule_delay_ms,
        "max_export_batch_size": limits.max_export_batch_size,
        "export_timeout_millis": limits.export_timeout_ms,
    }


def _takes_encoded(exporter: object) -> bool:
    """Whether ``exporter`` is the kit's OTLP/HTTP exporter on its direct path (which takes encoded items)."""
    return bool(getattr(getattr(exporter, "inner", None), "direct", False))


def _spooled(spool: ProcessSpool | None, signal: str, target: OtlpTarget) -> dict[str, Any]:
    return spool.exporter_kwargs(signal, target) if spool is not None else {}


def build_sampler(settings: Settings) -> Sampler:
    name, arg = settings.sampler, settings.sampler_arg
    root: Sampler = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(
        name.removeprefix("parentbased_"), None
    ) or TraceIdRatioBased(arg)
    return ParentBased(root) if name.startswith("parentbased_") else root


def build_tracer_provider(
    settings: Settings, resource: Resource, health: ExportHealth, spool: ProcessSpool | None = None
) -> TracerProvider:
    provider = TracerProvider(sampler=build_sampler(settings), resource=resource)
    limits = settings.span_batch
    processors: list[SpanProcessor] = []
    for name in settings.traces_exporters:
        target = settings.otlp["traces"]
        with _self_metrics():
            exporter = (
                ReportingSpanExporter(
                    otlp_exporter("traces", target, **_spooled(spool, "traces", target)), health, target.endpoint
                )
                if name == "otlp"
                else ConsoleSpanExporter()
            )
            batching = EncodingSpanProcessor if _takes_encoded(exporter) else BatchSpanProcessor
            processors.append(batching(exporter, **_batch_limits(limits)))
    if settings.tail_sampling_ratio is not None and processors:
        ratio, slow_s = settings.tail_sampling_ratio, settings.tail_sampling_slow_ms / 1000
        processors = [TailSampler(processors, ratio, slow_s)]
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def build_meter_provider(
    settings: Settings,
    resource: Resource,
    snapshot_dir: Path | None,
    health: ExportHealth,
    inject: Callable[[MetricsData], MetricsData],
) -> tuple[MeterProvider, MetricReader | None]:
    """The provider, and the reader writing this process's Prometheus snapshot (if any).

    ``inject`` adds the kit's own aggregates (``metrics.injector``) to every export.
    """
    readers: list[MetricReader] = []
    snapshot_reader: MetricReader | None = None
    for name in settings.metrics_exporters:
        if name == "prometheus" and snapshot_dir is not None:
            instance = str(resource.attributes.get("service.instance.id", "0"))
            snapshot_reader = make_periodic_reader(
                SnapshotExporter(snapshot_dir, instance, inject),
                export_interval_millis=settings.metrics_snapshot_interval_ms,
            )
            readers.append(snapshot_reader)
        elif name in ("otlp", "console"):
            target = settings.otlp["metrics"]
            with _self_metrics():
                exporter = (
                    ReportingMetricExporter(otlp_exporter("metrics", target), health, target.endpoint, inject)
                    if name == "otlp"
                    else ConsoleMetricExporter()
                )
            readers.append(
                make_periodic_reader(
                    exporter,
                    export_interval_millis=settings.metric_export_interval_ms,
                    export_timeout_millis=settings.metric_export_timeout_ms,
                )
            )
    return MeterProvider(metric_readers=readers, resource=resource), snapshot_reader


def build_logger_provider(
    settings: Settings, resource: Resource, health: ExportHealth, spool: ProcessSpool | None = None
) -> LoggerProvider:
    provider = LoggerProvider(resource=resource)
    limits = settings.log_batch
    for name in settings.logs_exporters:
        target = settings.otlp["logs"]
        with _self_metrics():
            exporter = (
                ReportingLogExporter(
                    otlp_exporter("logs", target, **_spooled(spool, "logs", target)), health, target.endpoint
                )
                if name == "otlp"
                else ConsoleLogRecordExporter()
            )
            batching = EncodingLogRecordProcessor if _takes_encoded(exporter) else DirectBatchLogRecordProcessor
            processor = batching(exporter, **_batch_limits(limits))
        provider.add_log_record_processor(processor)
    return provider
