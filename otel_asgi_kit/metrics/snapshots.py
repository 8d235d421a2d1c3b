"""Per-process metric snapshots in a shared directory, and their sum.

Every process (each worker of uvicorn/gunicorn/hypercorn, and the single
process of a one-worker server) periodically writes its cumulative metric
points to ``<dir>/<pid>-<instance>.json`` — atomically, off the request path,
from the SDK's periodic reader thread. The process that holds the admin port
sums all files on each scrape (``prometheus.MergedPrometheusReader``).

A worker that died or was recycled leaves its last file behind, so no counter
goes backwards: on the next scrape its monotonic points (counters and
histograms) are folded into ``archive.json`` and its file removed, while its
non-monotonic points (active requests) are dropped — a dead process has no
requests in flight.

Histogram exemplars travel along (``[value, time_ns, trace_id, span_id]``);
the sum keeps, per bucket, the newest exemplar of any process. Merging is
serialised by a lock: a scrape and the dashboard's sampler may merge at the
same moment, and only one of them may fold a dead worker into the archive.
"""

from __future__ import annotations

import json
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Exemplar,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics import (
    Histogram as HistogramInstrument,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    Sum,
)

from otel_asgi_kit.failsafe import report_once

ARCHIVE = "archive.json"
_merge_lock = threading.Lock()
_CUMULATIVE = {
    kind: AggregationTemporality.CUMULATIVE
    for kind in (
        Counter,
        UpDownCounter,
        HistogramInstrument,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}

Key = tuple[str, str, str, str, bool]  # name, kind, unit, description, monotonic
Labels = tuple[tuple[str, Any], ...]


class SnapshotExporter(MetricExporter):
    """Writes this process's cumulative points to its own file in the shared directory."""

    def __init__(
        self,
        directory: Path,
        instance_id: str,
        inject: Callable[[MetricsData], MetricsData] | None = None,
    ) -> None:
        super().__init__(preferred_temporality=_CUMULATIVE)  # type: ignore[arg-type]
        self._directory = directory
        self._instance_id = instance_id
        self._inject = inject

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            if self._inject is not None:
                metrics_data = self._inject(metrics_data)
            write_snapshot(self._directory, self._instance_id, metrics_data)
        except Exception as exc:
            report_once("writing the metrics snapshot", exc)
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def write_snapshot(directory: Path, instance_id: str, metrics_data: MetricsData) -> None:
    pid = os.getpid()
    doc = {"pid": pid, "instance": instance_id, "time": time.time(), "metrics": _to_json(metrics_data)}
    _write_atomic(directory / f"{pid}-{instance_id}.json", doc)


def _write_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def _to_json(metrics_data: MetricsData) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data = metric.data
                entry: dict[str, Any] = {
                    "name": metric.name,
                    "unit": metric.unit or "",
                    "description": metric.description or "",
                }
                if isinstance(data, Histogram):
                    entry["kind"], entry["monotonic"] = "histogram", True
                    entry["points"] = [
                        {
                            "attributes": dict(p.attributes or {}),
                            "count": p.count,
                            "sum": p.sum,
                            "bounds": list(p.explicit_bounds),
                            "buckets": list(p.bucket_counts),
                            "min": p.min,
                            "max": p.max,
                            **({"exemplars": [_exemplar_json(e) for e in p.exemplars]} if p.exemplars else {}),
                        }
                        for p in data.data_points
                    ]
                elif isinstance(data, Sum | Gauge):
                    entry["kind"] = "sum" if isinstance(data, Sum) else "gauge"
                    entry["monotonic"] = isinstance(data, Sum) and data.is_monotonic
                    entry["points"] = [
                        {"attributes": dict(p.attributes or {}), "value": p.value} for p in data.data_points
                    ]
                else:
                    continue  # exponential histograms are not configured by the kit
                out.append(entry)
    return out


def _exemplar_json(e: Exemplar) -> list[Any]:
    return [e.value, e.time_unix_nano, f"{e.trace_id or 0:032x}", f"{e.span_id or 0:016x}"]


@dataclass
class _Point:
    value: float = 0
    count: int = 0
    sum: float = 0
    bounds: list[float] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)
    min: float = float("inf")
    max: float = float("-inf")
    exemplars: dict[int, list[Any]] = field(default_factory=dict)  # bucket index: the newest exemplar

    def add_exemplars(self, exemplars: list[list[Any]]) -> None:
        for exemplar in exemplars:
            index = bisect_left(self.bounds, exemplar[0])
            kept = self.exemplars.get(index)
            if kept is None or kept[1] < exemplar[1]:
                self.exemplars[index] = exemplar

    def exemplar_list(self) -> list[list[Any]]:
        return [self.exemplars[i] for i in sorted(self.exemplars)]


@dataclass
class Merged:
    """Sums of points across snapshots, keyed by metric and attribute set."""

    points: dict[Key, dict[Labels, _Point]] = field(default_factory=dict)

    def add(self, metrics: Iterable[dict[str, Any]], *, monotonic_only: bool = False) -> None:
        for m in metrics:
            if monotonic_only and not m["monotonic"]:
                continue
            key: Key = (m["name"], m["kind"], m["unit"], m["description"], m["monotonic"])
            series = self.points.setdefault(key, {})
            for p in m["points"]:
                labels = tuple(sorted((k, _hashable(v)) for k, v in p["attributes"].items()))
                point = series.setdefault(labels, _Point())
                if m["kind"] == "histogram":
                    if point.bounds and point.bounds != p["bounds"]:
                        continue  # a worker with other buckets configured: cannot be summed
                    point.bounds = p["bounds"]
                    previous = point.buckets or [0] * len(p["buckets"])
                    point.buckets = [a + b for a, b in zip(previous, p["buckets"], strict=True)]
                    point.count += p["count"]
                    point.sum += p["sum"]
                    point.min = min(point.min, p["min"])
                    point.max = max(point.max, p["max"])
                    if "exemplars" in p:
                        point.add_exemplars(p["exemplars"])
                elif m["kind"] == "gauge":
                    point.value = p["value"]  # last one read; gauges are not summed
                else:
                    point.value += p["value"]

    def to_json(self) -> list[dict[str, Any]]:
        out = []
        for (name, kind, unit, description, monotonic), series in self.points.items():
            points: list[dict[str, Any]] = []
            for labels, p in series.items():
                attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in labels}
                if kind == "histogram":
                    points.append(
                        {
                            "attributes": attrs,
                            "count": p.count,
                            "sum": p.sum,
                            "bounds": p.bounds,
                            "buckets": p.buckets,
                            "min": p.min,
                            "max": p.max,
                            **({"exemplars": p.exemplar_list()} if p.exemplars else {}),
                        }
                    )
                else:
                    points.append({"attributes": attrs, "value": p.value})
            out.append(
                {
                    "name": name,
                    "kind": kind,
                    "unit": unit,
                    "description": description,
                    "monotonic": monotonic,
                    "points": points,
                }
            )
        return out

    def to_metrics(self, now_ns: int) -> list[Metric]:
        metrics: list[Metric] = []
        for (name, kind, unit, description, monotonic), series in self.points.items():
            data: Sum | Gauge | Histogram
            if kind == "histogram":
                data = Histogram(
                    data_points=[
                        HistogramDataPoint(
                            attributes=dict(labels),
                            start_time_unix_nano=0,
                            time_unix_nano=now_ns,
                            count=p.count,
                            sum=p.sum,
                            bucket_counts=p.buckets,
                            explicit_bounds=p.bounds,
                            min=p.min,
                            max=p.max,
                            exemplars=[
                                Exemplar({}, value, ts, int(span, 16), int(trace, 16))
                                for value, ts, trace, span in p.exemplar_list()
                            ],
                        )
                        for labels, p in series.items()
                    ],
                    aggregation_temporality=AggregationTemporality.CUMULATIVE,
                )
            else:
                points = [NumberDataPoint(dict(labels), 0, now_ns, p.value) for labels, p in series.items()]
                data = (
                    Gauge(data_points=points)
                    if kind == "gauge"
                    else Sum(points, AggregationTemporality.CUMULATIVE, is_monotonic=monotonic)
                )
            metrics.append(Metric(name=name, description=description, unit=unit, data=data))
        return metrics


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def merge_directory(directory: Path) -> Merged:
    """Sum every snapshot; fold the files of dead processes into the archive first."""
    with _merge_lock:
        return _merge(directory)


def _merge(directory: Path) -> Merged:
    merged = Merged()
    archive_path = directory / ARCHIVE
    archive = _read(archive_path)
    dead: list[tuple[Path, dict[str, Any]]] = []
    live: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*-*.json")):
        doc = _read(path)
        if doc is None:
            continue
        if _alive(int(doc["pid"])):
            live.append(doc)
        else:
            dead.append((path, doc))
    if dead:
        folded = Merged()
        folded.add(archive["metrics"] if archive else [])
        for _, doc in dead:
            folded.add(doc["metrics"], monotonic_only=True)
        _write_atomic(archive_path, {"pid": 0, "instance": "archive", "time": time.time(), "metrics": folded.to_json()})
        for path, _ in dead:
            path.unlink(missing_ok=True)
        archive = {"metrics": folded.to_json()}
    if archive:
        merged.add(archive["metrics"])
    for doc in live:
        merged.add(doc["metrics"])
    return merged


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc
