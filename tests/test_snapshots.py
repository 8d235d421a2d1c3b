"""Summing per-worker snapshots: exact totals, dead workers folded in, never counted twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from otel_asgi_kit.metrics.snapshots import ARCHIVE, merge_directory


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _snapshot(directory: Path, pid: int, name: str, requests: int, active: int) -> None:
    metrics: list[dict[str, Any]] = [
        {
            "name": "http.server.request.duration",
            "kind": "histogram",
            "unit": "s",
            "description": "",
            "monotonic": True,
            "points": [
                {
                    "attributes": {"http.route": "/a"},
                    "count": requests,
                    "sum": requests * 0.01,
                    "bounds": [0.005, 0.05],
                    "buckets": [0, requests, 0],
                    "min": 0.01,
                    "max": 0.01,
                }
            ],
        },
        {
            "name": "http.server.active_requests",
            "kind": "sum",
            "unit": "{request}",
            "description": "",
            "monotonic": False,
            "points": [{"attributes": {"http.request.method": "GET"}, "value": active}],
        },
    ]
    doc = {"pid": pid, "instance": name, "time": 0, "metrics": metrics}
    (directory / f"{pid}-{name}.json").write_text(json.dumps(doc))


def _totals(directory: Path) -> tuple[int, float]:
    merged = merge_directory(directory)
    metrics = {m.name: m for m in merged.to_metrics(1)}
    (hist,) = metrics["http.server.request.duration"].data.data_points
    active = sum(p.value for p in metrics["http.server.active_requests"].data.data_points)
    return hist.count, active


def test_live_workers_are_summed(tmp_path: Path) -> None:
    """Two live processes' histograms and gauges add up."""
    _snapshot(tmp_path, os.getpid(), "a", requests=7, active=1)
    _snapshot(tmp_path, os.getppid(), "b", requests=5, active=2)
    assert _totals(tmp_path) == (12, 3)


def test_dead_worker_is_folded_once_and_its_in_flight_dropped(tmp_path: Path) -> None:
    """A dead worker's requests stay counted (archived, file removed); its active gauge is dropped."""
    _snapshot(tmp_path, os.getpid(), "live", requests=10, active=1)
    _snapshot(tmp_path, _dead_pid(), "dead", requests=4, active=3)
    assert _totals(tmp_path) == (14, 1)
    assert (tmp_path / ARCHIVE).exists()
    assert not list(tmp_path.glob("*-dead.json"))
    assert _totals(tmp_path) == (14, 1)  # the archive is not added twice
    _snapshot(tmp_path, _dead_pid(), "dead2", requests=6, active=0)
    assert _totals(tmp_path) == (20, 1)


def test_mismatched_buckets_are_not_summed(tmp_path: Path) -> None:
    """A worker configured with other bucket bounds cannot corrupt the sum."""
    _snapshot(tmp_path, os.getpid(), "a", requests=3, active=0)
    path = next(tmp_path.glob("*-a.json"))
    doc = json.loads(path.read_text())
    doc["metrics"][0]["points"][0]["bounds"] = [1.0, 2.0]
    (tmp_path / f"{os.getppid()}-b.json").write_text(json.dumps(doc))
    count, _ = _totals(tmp_path)
    assert count == 3


def test_unreadable_files_are_skipped(tmp_path: Path) -> None:
    """A half-written or garbage file never breaks the scrape."""
    _snapshot(tmp_path, os.getpid(), "a", requests=2, active=0)
    (tmp_path / "999-garbage.json").write_text("{not json")
    assert _totals(tmp_path) == (2, 0)


def test_kit_aggregates_are_written_even_when_the_sdk_has_nothing(tmp_path: Path) -> None:
    """With no SDK instrument recorded, a tick still writes the kit's HTTP aggregates to the snapshot."""
    from opentelemetry.sdk.resources import Resource

    from otel_asgi_kit.export.health import ExportHealth
    from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
    from otel_asgi_kit.metrics.injector import MetricsInjector
    from otel_asgi_kit.providers import build_meter_provider
    from otel_asgi_kit.settings import load_settings

    settings = load_settings({"OTEL_ASGI_KIT_RUNTIME_METRICS": "false"})
    resource = Resource({"service.name": "t"})
    http = HttpServerMetrics(settings.duration_buckets)
    provider, reader = build_meter_provider(
        settings, resource, tmp_path, ExportHealth(), MetricsInjector(resource, http.collect)
    )
    http.request_started("GET", "http")
    http.request_finished(("GET", "/a", 200, None, "http"), 0.01, None, 10, ("GET", "http"))
    assert reader is not None
    reader.force_flush()
    (snapshot,) = tmp_path.glob("*-*.json")
    names = {m["name"] for m in json.loads(snapshot.read_text())["metrics"]}
    assert {"http.server.request.duration", "http.server.active_requests"} <= names
    provider.shutdown()
