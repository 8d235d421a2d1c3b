"""Tracer, meter and logger providers from ``Settings``."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from otel_asgi_kit.exporters import otlp_exporter
from otel_asgi_kit.metrics.snapshots import SnapshotExporter
from otel_asgi_kit.settings import Settings


def build_sampler(settings: Settings) -> Sampler:
    name, arg = settings.sampler, settings.sampler_arg
    root: Sampler = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(
        name.removeprefix("parentbased_"), None
    ) or TraceIdRatioBased(arg)
    return ParentBased(root) if name.startswith("parentbased_") else root


def build_tracer_provider(settings: Settings, resource: Resource) -> TracerProvider:
    provider = TracerProvider(sampler=build_sampler(settings), resource=resource)
    limits = settings.span_batch
    for name in settings.traces_exporters:
        exporter = otlp_exporter("traces", settings.otlp["traces"]) if name == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=limits.max_queue_size,
                schedule_delay_millis=limits.schedule_delay_ms,
                max_export_batch_size=limits.max_export_batch_size,
                export_timeout_millis=limits.export_timeout_ms,
            )
        )
    return provider


def build_meter_provider(
    settings: Settings, resource: Resource, snapshot_dir: Path | None
) -> tuple[MeterProvider, MetricReader | None]:
    """The provider, and the reader writing this process's Prometheus snapshot (if any)."""
    readers: list[MetricReader] = []
    snapshot_reader: MetricReader | None = None
    for name in settings.metrics_exporters:
        if name == "prometheus" and snapshot_dir is not None:
            instance = str(resource.attributes.get("service.instance.id", "0"))
            snapshot_reader = PeriodicExportingMetricReader(
                SnapshotExporter(snapshot_dir, instance),
                export_interval_millis=settings.metrics_snapshot_interval_ms,
            )
            readers.append(snapshot_reader)
        elif name in ("otlp", "console"):
            exporter = otlp_exporter("metrics", settings.otlp["metrics"]) if name == "otlp" else ConsoleMetricExporter()
            readers.append(
                PeriodicExportingMetricReader(
                    exporter,
                    export_interval_millis=settings.metric_export_interval_ms,
                    export_timeout_millis=settings.metric_export_timeout_ms,
                )
            )
    return MeterProvider(metric_readers=readers, resource=resource), snapshot_reader


def build_logger_provider(settings: Settings, resource: Resource) -> LoggerProvider:
    provider = LoggerProvider(resource=resource)
    limits = settings.log_batch
    for name in settings.logs_exporters:
        exporter = otlp_exporter("logs", settings.otlp["logs"]) if name == "otlp" else ConsoleLogRecordExporter()
        provider.add_log_record_processor(
            BatchLogRecordProcessor(
                exporter,
                max_queue_size=limits.max_queue_size,
                schedule_delay_millis=limits.schedule_delay_ms,
                max_export_batch_size=limits.max_export_batch_size,
                export_timeout_millis=limits.export_timeout_ms,
            )
        )
    return provider
