"""WebSocket connection and message metrics, counted as messages flow.

Per message this is two integer additions on a cell the connection looked up
once, so ``rate()`` of the message and byte counters is right while a
connection is open (the SDK's ``Counter.add`` would cost about 10 µs per
message). The cells are read at collection time, like ``http_aggregator``.
"""

from __future__ import annotations

import threading
import time

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)

from otel_asgi_kit.metrics.http_aggregator import Histogram
from otel_asgi_kit.metrics.instruments import CONNECTION_BUCKETS

DIRECTIONS = ("received", "sent")


class MessageCell:
    """Messages and bytes of one (route, direction); a connection keeps a reference to its cells."""

    __slots__ = ("bytes", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


class WebSocketMetrics:
    """Cumulative ``websocket.server.*`` metrics of this process."""

    def __init__(self, cardinality_limit: int = 2000) -> None:
        self.active = 0
        self._cells: dict[tuple[str | None, str], MessageCell] = {}
        self._durations: dict[str | None, Histogram] = {}
        self._limit = cardinality_limit
        self._lock = threading.Lock()  # taken to add a series, never per message
        self._start = time.time_ns()

    def opened(self) -> None:
        self.active += 1

    def cells(self, route: str | None) -> tuple[MessageCell, MessageCell]:
        """The (received, sent) cells of ``route``; past the cardinality limit, shared overflow cells."""
        with self._lock:
            if len(self._cells) >= self._limit and (route, "received") not in self._cells:
                route = "_OVERFLOW"
            received = self._cells.setdefault((route, "received"), MessageCell())
            sent = self._cells.setdefault((route, "sent"), MessageCell())
        return received, sent

    def closed(self, route: str | None, duration_s: float) -> None:
        self.active -= 1
        histogram = self._durations.get(route)
        if histogram is None:
            with self._lock:
                if len(self._durations) >= self._limit:
                    route = "_OVERFLOW"
                histogram = self._durations.setdefault(route, Histogram(CONNECTION_BUCKETS))
        histogram.record(duration_s)

    def collect(self) -> list[Metric]:
        now = time.time_ns()
        start = self._start
        cumulative = AggregationTemporality.CUMULATIVE
        if not self._cells and not self._durations and not self.active:
            return []
        messages: list[NumberDataPoint] = []
        sizes: list[NumberDataPoint] = []
        for (route, direction), cell in list(self._cells.items()):
            if not cell.messages:
                continue
            attributes: dict[str, str | int] = {"websocket.message.direction": direction}
            if route is not None:
                attributes["http.route"] = route
            messages.append(NumberDataPoint(attributes, start, now, cell.messages))
            sizes.append(NumberDataPoint(dict(attributes), start, now, cell.bytes))
        durations = [
            h.point({"http.route": route} if route is not None else {}, start, now)
            for route, h in list(self._durations.items())
        ]
        metrics = [
            Metric(
                "websocket.server.active_connections",
                "Open WebSocket connections.",
                "{connection}",
                Sum([NumberDataPoint({}, start, now, self.active)], cumulative, is_monotonic=False),
            )
        ]
        if durations:
            metrics.append(
                Metric(
                    "websocket.server.connection.duration",
                    "How long WebSocket connections stayed open.",
                    "s",
                    HistogramData(durations, cumulative),
                )
            )
        if messages:
            metrics.append(
                Metric(
                    "websocket.server.messages",
                    "WebSocket messages, by direction.",
                    "{message}",
                    Sum(messages, cumulative, is_monotonic=True),
                )
            )
            metrics.append(
                Metric(
                    "websocket.server.message.bytes",
                    "WebSocket message payload bytes, by direction.",
                    "By",
                    Sum(sizes, cumulative, is_monotonic=True),
                )
            )
        return metrics
