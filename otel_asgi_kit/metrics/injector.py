"""Adds the kit's own aggregates (HTTP, WebSocket) to what the SDK collected, before an exporter sees it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from opentelemetry.sdk.metrics.export import Metric, MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_asgi_kit.version import SCOPE_NAME, SCOPE_VERSION

_SCOPE = InstrumentationScope(SCOPE_NAME, SCOPE_VERSION)


class MetricsInjector:
    """``sources``: callables returning the current cumulative metrics (``HttpServerMetrics.collect`` …)."""

    def __init__(self, resource: Resource, *sources: Callable[[], list[Metric]]) -> None:
        self._resource = resource
        self._sources = sources

    def __call__(self, data: MetricsData | None) -> MetricsData:
        metrics = [m for source in self._sources for m in source()]
        if not metrics:
            return data if data is not None else MetricsData([])
        ours = ScopeMetrics(_SCOPE, metrics, "")
        if data is None or not data.resource_metrics:
            return MetricsData([ResourceMetrics(self._resource, [ours], "")])
        first, *rest = data.resource_metrics
        return MetricsData([replace(first, scope_metrics=[*first.scope_metrics, ours]), *rest])
