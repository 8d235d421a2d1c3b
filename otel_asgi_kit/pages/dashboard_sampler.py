"""The dashboard's history: a thread samples the merged metric snapshots into a bounded ring.

Nothing here runs on the request path. Every ``interval`` seconds the thread
in the admin-port process sums the workers' snapshot files (the same sum a
scrape of ``/metrics`` sees) and appends what changed since the previous
sample: per route the requests, failures and duration-bucket counts; the
WebSocket, event-loop and process figures; CPU and memory per worker. A
route that saw no request in an interval takes no room in it, and the ring
holds one hour, so memory is bounded by routes, buckets and samples
(at most ``max_routes`` routes; later ones are counted under ``other``).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.metrics.snapshots import Merged, merge_directory

HISTORY_S = 3600
OTHER = "other"
_DURATION = "http.server.request.duration"
_LAG = "python.asyncio.event_loop.lag"
_BLOCKED = "python.asyncio.event_loop.blocked"
_PER_WORKER = {"process.cpu.time": "cpu", "process.memory.usage": "memory"}


@dataclass
class RouteDelta:
    requests: int
    failed: int
    buckets: tuple[int, ...]


@dataclass
class Interval:
    """What changed during one sampling interval, ending at ``end``."""

    end: float
    seconds: float
    routes: dict[str, RouteDelta]
    ws_active: float
    ws_messages: float
    lag_buckets: tuple[int, ...]
    blocked: float
    cpu_s: float
    memory: float
    workers: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid: (cpu s, memory bytes)


@dataclass
class _Totals:
    """Cumulative figures of one sample, to subtract from the next."""

    routes: dict[str, tuple[int, int, list[int]]]
    ws_messages: float
    lag_buckets: list[int]
    blocked: float
    cpu_s: float
    workers_cpu: dict[int, float]


def route_name(attributes: dict[str, Any]) -> str:
    """The name the trace pages use for the request's span: method and route template."""
    method = str(attributes.get("http.request.method", "HTTP"))
    method = "HTTP" if method == "_OTHER" else method
    route = attributes.get("http.route")
    return f"{method} {route}" if route else method


def is_failure(attributes: dict[str, Any]) -> bool:
    """5xx, an exception or an incomplete response: what the trace pages mark failed."""
    status = attributes.get("http.response.status_code")
    return "error.type" in attributes or (isinstance(status, int) and status >= 500)


class DashboardSampler:
    def __init__(
        self,
        directory: Path,
        interval_s: float,
        *,
        max_routes: int = 30,
        merge: Callable[[Path], Merged] = merge_directory,
    ) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.max_routes = max_routes
        self.ring: deque[Interval] = deque(maxlen=max(2, int(HISTORY_S / interval_s) + 1))
        self.routes: list[str] = []  # in order of first appearance
        self.bounds: list[float] = []
        self.lag_bounds: list[float] = []
        self._merge = merge
        self._previous: _Totals | None = None
        self._previous_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-asgi-kit-dashboard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as exc:  # a bad snapshot must not end the history
                report_once("sampling metrics for the dashboard", exc)
            if self._stop.wait(self.interval_s):
                return

    def sample(self, now: float | None = None) -> None:
        """Sum the snapshots and append the change since the previous call."""
        now = time.time() if now is None else now
        totals, ws_active, memory, workers_memory = self._read(self._merge(self.directory))
        with self._lock:
            previous, self._previous = self._previous, totals
            seconds = now - self._previous_at
            self._previous_at = now
            if previous is None:
                return
            self.ring.append(_delta(previous, totals, now, seconds, ws_active, memory, workers_memory))

    def snapshot(self) -> tuple[list[Interval], list[str]]:
        with self._lock:
            return list(self.ring), list(self.routes)

    def _read(self, merged: Merged) -> tuple[_Totals, float, float, dict[int, float]]:
        routes: dict[str, tuple[int, int, list[int]]] = {}
        ws_messages = blocked = cpu_s = ws_active = memory = 0.0
        lag: list[int] = []
        for (name, _kind, _unit, _desc, _mono), series in merged.points.items():
            for labels, point in series.items():
                attributes = dict(labels)
                if name == _DURATION:
                    self.bounds = point.bounds
                    key = self._route_key(route_name(attributes))
                    requests, failed, buckets = routes.get(key, (0, 0, [0] * len(point.buckets)))
                    if len(buckets) != len(point.buckets):
                        continue
                    failures = point.count if is_failure(attributes) else 0
                    routes[key] = (
                        requests + point.count,
                        failed + failures,
                        [a + b for a, b in zip(buckets, point.buckets, strict=True)],
                    )
                elif name == _LAG:
                    self.lag_bounds = point.bounds
                    lag = [a + b for a, b in zip(lag or [0] * len(point.buckets), point.buckets, strict=False)]
                elif name == _BLOCKED:
                    blocked += point.value
                elif name == "websocket.server.active_connections":
                    ws_active += point.value
                elif name == "websocket.server.messages":
                    ws_messages += point.value
                elif name == "process.cpu.time":
                    cpu_s += point.value
                elif name == "process.memory.usage":
                    memory += point.value
        workers_cpu, workers_memory = _per_worker(self.directory)
        return _Totals(routes, ws_messages, lag, blocked, cpu_s, workers_cpu), ws_active, memory, workers_memory

    def _route_key(self, name: str) -> str:
        if name in self.routes:
            return name
        if len(self.routes) >= self.max_routes:
            if OTHER not in self.routes:
                self.routes.append(OTHER)
            return OTHER
        self.routes.append(name)
        return name


def _delta(
    before: _Totals,
    after: _Totals,
    now: float,
    seconds: float,
    ws_active: float,
    memory: float,
    workers_memory: dict[int, float],
) -> Interval:
    routes: dict[str, RouteDelta] = {}
    for name, (requests, failed, buckets) in after.routes.items():
        old_requests, old_failed, old_buckets = before.routes.get(name, (0, 0, [0] * len(buckets)))
        if requests > old_requests:  # counters only grow; a smaller sum is a restart: skip the interval
            routes[name] = RouteDelta(
                requests - old_requests,
                max(0, failed - old_failed),
                tuple(max(0, a - b) for a, b in zip(buckets, old_buckets, strict=False)),
            )
    workers = {
        pid: (max(0.0, cpu - before.workers_cpu.get(pid, cpu)), workers_memory.get(pid, 0.0))
        for pid, cpu in after.workers_cpu.items()
    }
    if len(before.lag_buckets) == len(after.lag_buckets):
        lag = tuple(max(0, a - b) for a, b in zip(after.lag_buckets, before.lag_buckets, strict=True))
    else:  # the first lag sample: nothing to compare with yet
        lag = tuple(0 for _ in after.lag_buckets)
    return Interval(
        end=now,
        seconds=seconds,
        routes=routes,
        ws_active=ws_active,
        ws_messages=max(0.0, after.ws_messages - before.ws_messages),
        lag_buckets=lag,
        blocked=max(0.0, after.blocked - before.blocked),
        cpu_s=max(0.0, after.cpu_s - before.cpu_s),
        memory=memory,
        workers=workers,
    )


def _per_worker(directory: Path) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds and resident memory of each live worker, from its own snapshot file."""
    cpu: dict[int, float] = {}
    memory: dict[int, float] = {}
    for path in directory.glob("[0-9]*-*.json"):
        try:
            doc = json.loads(path.read_text())
            pid = int(doc["pid"])
            # Only two metrics are wanted: a scan of the raw document, no summing structure.
            for metric in doc["metrics"]:
                target = _PER_WORKER.get(metric["name"])
                if target is not None:
                    value = sum(float(p["value"]) for p in metric["points"])
                    (cpu if target == "cpu" else memory)[pid] = value
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced or removed right now: next time
    return cpu, memory
