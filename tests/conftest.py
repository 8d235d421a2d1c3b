from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_asgi_kit.asgi.middleware import Instrumentation
from otel_asgi_kit.metrics.http_aggregator import MetricsInjector
from otel_asgi_kit.settings import load_settings
from tests.support.otlp_receiver import OtlpReceiver


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    instrumentation: Instrumentation

    def points(self, name: str) -> list:
        """Points of ``name`` as an exporter would get them: the SDK's plus the kit's own aggregates."""
        data = self.metrics.get_metrics_data()
        if self.instrumentation.http is not None:
            data = MetricsInjector(self.instrumentation.http, Resource({}))(data)
        found = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


def make_telemetry(env: dict[str, str] | None = None) -> Telemetry:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    settings = load_settings(env or {})
    return Telemetry(spans, reader, Instrumentation(settings, tracer_provider, meter_provider))


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    yield make_telemetry()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver on 127.0.0.1 for what a server process exports."""
    with OtlpReceiver() as rx:
        yield rx
