from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
from otel_asgi_kit.metrics.injector import MetricsInjector
from otel_asgi_kit.settings import load_settings
from otel_asgi_kit.testing import aggregates, points_of
from tests.support.otlp_receiver import OtlpReceiver


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    instrumentation: Instrumentation

    def points(self, name: str) -> list[Any]:
        """Points of ``name`` as an exporter would get them: the SDK's plus the kit's own aggregates."""
        data = MetricsInjector(Resource({}), *aggregates(self.instrumentation))(self.metrics.get_metrics_data())
        return points_of(data, name)


def make_telemetry(env: dict[str, str] | None = None, *, compiled: bool = False) -> Telemetry:
    """In-memory telemetry; ``compiled``: its ASGI requests take the compiled path of ``otel_asgi_kit_accel``."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    settings = load_settings(env or {})
    http = HttpServerMetrics(settings.duration_buckets, compiled=compiled)
    instrumentation = Instrumentation(settings, tracer_provider, meter_provider, http_metrics=http)
    if compiled:
        from otel_asgi_kit.asgi import fast

        if fast.core_for(instrumentation, switched_on=True) is None:
            pytest.skip("otel-asgi-kit-accel with its compiled request path is not installed")
    return Telemetry(spans, reader, instrumentation)


@pytest.fixture(params=["python", "compiled"])
def telemetry(request: pytest.FixtureRequest) -> Iterator[Telemetry]:
    """Every test with this fixture runs on the ASGI adapter's Python path and on its compiled one."""
    yield make_telemetry(compiled=request.param == "compiled")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver on 127.0.0.1 for what a server process exports."""
    with OtlpReceiver() as rx:
        yield rx


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI (``CI`` set) a skip is a failure: a real part that is missing there must not pass unseen.

    A ``skipif`` marker states a platform or interpreter condition up front (e.g. a test that needs
    Python 3.11's tomllib on the 3.10 run): that one stays a skip."""
    outcome = yield
    report = outcome.get_result()
    declared = item.get_closest_marker("skipif") is not None
    if report.skipped and os.environ.get("CI") and not declared and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must have every real part: {reason}"
