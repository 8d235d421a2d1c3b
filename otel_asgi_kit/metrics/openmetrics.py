"""Exemplars on ``/metrics``: the request-duration buckets link to a trace in OpenMetrics form.

The stock Prometheus exporter turns the merged snapshots into
``prometheus_client`` families but drops exemplars (its exemplar support is
an open pull request). ``ExemplarCollector`` sits between the exporter's
collector and the registry: it passes every family through and, on the
``http_server_request_duration`` histogram, sets on each bucket sample the
newest exemplar the merge kept for that bucket (``snapshots.Merged``).
``prometheus_client`` writes exemplars only in the OpenMetrics exposition,
so the plain text format, still the default, is unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import Metric as PrometheusMetric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar, Sample

from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.metrics.snapshots import Merged

DURATION_METRIC = "http.server.request.duration"
_FAMILY_PREFIX = "http_server_request_duration"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")

try:  # the exporter's own label rule, so the keys match the labels it writes
    from opentelemetry.exporter.prometheus._mapping import sanitize_attribute as _sanitize
except ImportError:  # pragma: no cover - an exporter without the module: the same rule, written here

    def _sanitize(key: str) -> str:
        return _INVALID.sub("_", key)


LabelKey = frozenset[tuple[str, str]]
# labels of a point (empty values left out, as the exporter backfills them with "") -> exemplar per bucket
ExemplarIndex = dict[LabelKey, dict[int, list[Any]]]


def exemplar_index(merged: Merged | None) -> ExemplarIndex:
    """The duration histogram's exemplars, keyed as the exporter will label the points."""
    index: ExemplarIndex = {}
    if merged is None:
        return index
    for key, series in merged.points.items():
        if key[0] != DURATION_METRIC or key[1] != "histogram":
            continue
        for labels, point in series.items():
            if point.exemplars:
                label_key = frozenset((_sanitize(k), _label_value(v)) for k, v in labels)
                index[frozenset(item for item in label_key if item[1] != "")] = point.exemplars
    return index


def _label_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


class ExemplarCollector(Collector):
    """The exporter's collector, with exemplars added to the request-duration buckets."""

    def __init__(self, inner: Any, exemplars: Callable[[], ExemplarIndex]) -> None:
        self._inner = inner
        self._exemplars = exemplars

    def __getattr__(self, name: str) -> Any:
        # The reader feeds its collector through ``add_metrics_data``/``_callback``: pass them on.
        return getattr(self._inner, name)

    def collect(self) -> Iterable[PrometheusMetric]:
        families: Iterator[PrometheusMetric] = iter(self._inner.collect())
        for family in families:
            if family.type == "histogram" and family.name.startswith(_FAMILY_PREFIX):
                index = self._exemplars()
                if index:
                    family.samples = _with_exemplars(family.name, family.samples, index)
            yield family


def _with_exemplars(name: str, samples: list[Sample], index: ExemplarIndex) -> list[Sample]:
    bucket_name = f"{name}_bucket"
    position: dict[LabelKey, int] = {}
    out = []
    for sample in samples:
        if sample.name == bucket_name:
            key = frozenset((k, v) for k, v in sample.labels.items() if k != "le" and v != "")
            bucket = position.get(key, 0)
            position[key] = bucket + 1  # the exporter writes a point's buckets in order
            kept = index.get(key, {}).get(bucket)
            if kept is not None:
                value, time_ns, trace_id, span_id = kept
                sample = sample._replace(
                    exemplar=Exemplar({"trace_id": trace_id, "span_id": span_id}, value, time_ns / 1e9)
                )
        out.append(sample)
    return out


def install_exemplars(registry: CollectorRegistry, reader: Any, exemplars: Callable[[], ExemplarIndex]) -> None:
    """Put ``ExemplarCollector`` in place of ``reader``'s collector in ``registry``; without one, warn once."""
    inner = getattr(reader, "_collector", None)
    if inner is None or not callable(getattr(inner, "collect", None)):
        warn("this opentelemetry-exporter-prometheus has no collector the kit knows: /metrics carries no exemplars")
        return
    wrapper = ExemplarCollector(inner, exemplars)
    registry.unregister(inner)
    registry.register(wrapper)
    reader._collector = wrapper  # so the reader's shutdown unregisters what is registered
