"""What the admin port's ``/metrics`` shows: the sum of every worker's snapshot.

The stock ``PrometheusMetricReader`` does the exposition (names, units,
``target_info``); this reader only feeds it the merged snapshots instead of
one process's live state, so a scrape of the single admin port is exact
whichever process holds it and however many workers there are.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import Metric, MetricReader, MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.metrics.openmetrics import exemplar_index, install_exemplars
from otel_asgi_kit.metrics.snapshots import Merged, merge_directory

# Per-process attributes make no sense on a sum over processes.
_PER_PROCESS = frozenset({"service.instance.id", "process.pid"})
# Semantic-convention names whose Prometheus form breaks Prometheus' own rules: a gauge may not end in
# ``_count`` (``promtool check metrics``). These take the names Prometheus' own process collectors use.
PROMETHEUS_NAMES = {
    "process.thread.count": "process.threads",
    "process.unix.file_descriptor.count": "process.open_fds",
}


class MergedPrometheusReader(PrometheusMetricReader):
    def __init__(
        self,
        directory: Path,
        resource: Resource,
        registry: CollectorRegistry,
        own_reader: MetricReader | None,
    ) -> None:
        super().__init__(scope_info_enabled=False, registry=registry)
        self._directory = directory
        self._own_reader = own_reader
        self._resource = Resource({k: v for k, v in resource.attributes.items() if k not in _PER_PROCESS})
        self._scope = InstrumentationScope("otel_asgi_kit")
        self.merged: Merged | None = None  # the last scrape's sum, read for its exemplars
        install_exemplars(registry, self, lambda: exemplar_index(self.merged))

    # The exporter's collector calls ``reader.collect()`` on every scrape; here that
    # means "sum the snapshots". This reader is never registered on a MeterProvider,
    # so the SDK's own collect path (the reason ``collect`` is marked final) is unused.
    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]
        try:
            if self._own_reader is not None:
                # This process's own points, fresh rather than one interval old.
                self._own_reader.force_flush(timeout_millis)
            merged = self.merged = merge_directory(self._directory)
            metrics = [_prometheus_named(m) for m in merged.to_metrics(time.time_ns())]
            scope_metrics = ScopeMetrics(self._scope, metrics, "")
            self._receive_metrics(MetricsData([ResourceMetrics(self._resource, [scope_metrics], "")]))
        except Exception as exc:
            report_once("merging metric snapshots for /metrics", exc)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        super().shutdown(timeout_millis, **kwargs)


def _prometheus_named(metric: Metric) -> Metric:
    name = PROMETHEUS_NAMES.get(metric.name)
    return metric if name is None else replace(metric, name=name)
