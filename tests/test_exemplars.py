"""Exemplars: a sampled request's trace id on its duration bucket, through snapshots, in OpenMetrics only."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from otel_asgi_kit.admin import start_admin_server
from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
from otel_asgi_kit.metrics.openmetrics import ExemplarCollector, install_exemplars
from otel_asgi_kit.metrics.prometheus import MergedPrometheusReader
from otel_asgi_kit.metrics.snapshots import write_snapshot

BOUNDS = (0.01, 0.1, 1.0)
KEY = ("GET", "/items/{id}", 200, None, "http")


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def _worker_snapshot(directory: Path, instance: str, metrics: HttpServerMetrics) -> None:
    scope = ScopeMetrics(InstrumentationScope("t"), metrics.collect(), "")
    write_snapshot(directory, instance, MetricsData([ResourceMetrics(Resource({}), [scope], "")]))


def _scrape(registry: CollectorRegistry, accept: str) -> tuple[str, str]:
    server = start_admin_server("127.0.0.1", 0, registry)
    assert server is not None
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.headers["Content-Type"], response.read().decode()
    finally:
        server.stop()


def test_aggregator_keeps_the_last_sampled_request_per_bucket() -> None:
    """Each bucket holds the newest sampled request that fell in it; unsampled ones leave no exemplar."""
    metrics = HttpServerMetrics(BOUNDS)
    metrics.request_finished(KEY, 0.005, None, 0, ("GET", "http"), _context(1, 1), 1_000)
    metrics.request_finished(KEY, 0.05, None, 0, ("GET", "http"), _context(2, 2), 2_000)
    metrics.request_finished(KEY, 0.06, None, 0, ("GET", "http"), _context(3, 3), 3_000)
    metrics.request_finished(KEY, 0.5, None, 0, ("GET", "http"), None, 0)
    (point,) = metrics.collect()[0].data.data_points
    assert point.bucket_counts == [1, 2, 1, 0]
    assert sorted((e.trace_id, e.value, e.time_unix_nano) for e in point.exemplars) == [
        (1, 0.005, 1000),
        (3, 0.06, 3000),
    ]


def test_openmetrics_scrape_carries_exemplars_of_every_worker(tmp_path: Path) -> None:
    """Two workers' snapshots: the OpenMetrics scrape has each one's exemplar, the text format none."""
    for worker, (value, trace_id) in enumerate([(0.005, 0xA1), (0.5, 0xB2)]):
        metrics = HttpServerMetrics(BOUNDS)
        metrics.request_finished(KEY, value, None, 0, ("GET", "http"), _context(trace_id, 7), 1_700_000_000_000_000_000)
        _worker_snapshot(tmp_path, f"w{worker}", metrics)
    registry = CollectorRegistry(auto_describe=True)
    MergedPrometheusReader(tmp_path, Resource({"service.name": "svc"}), registry, None)

    content_type, body = _scrape(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    exemplars = {}
    for family in text_string_to_metric_families(body):  # the strict OpenMetrics parser accepts it
        for sample in family.samples:
            if sample.exemplar is not None:
                exemplars[sample.labels["le"]] = sample.exemplar
    assert {le: e.labels["trace_id"] for le, e in exemplars.items()} == {
        "0.01": f"{0xA1:032x}",
        "1.0": f"{0xB2:032x}",
    }
    assert exemplars["1.0"].value == 0.5 and exemplars["1.0"].timestamp.sec == 1_700_000_000
    assert exemplars["0.01"].labels["span_id"] == f"{7:016x}"

    content_type, text = _scrape(registry, "text/plain")
    assert content_type.startswith("text/plain")
    assert "trace_id" not in text and "# {" not in text
    counts = {
        s.labels["le"]: s.value
        for f in text_families(text)
        for s in f.samples
        if s.name == "http_server_request_duration_seconds_bucket"
    }
    assert counts == {"0.01": 1, "0.1": 1, "1.0": 2, "+Inf": 2}


def test_a_reader_without_the_known_collector_warns_and_scrapes_plainly(capsys: object) -> None:
    """An exporter whose reader has no ``_collector``: one warning, the registry untouched."""
    registry = CollectorRegistry()

    class Reader:
        pass

    install_exemplars(registry, Reader(), dict)
    assert not any(isinstance(c, ExemplarCollector) for c in registry._collector_to_names)
    assert re.search(r"no exemplars", capsys.readouterr().err)  # type: ignore[attr-defined]
