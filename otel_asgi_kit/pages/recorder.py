"""What the trace pages show, kept in bounded ring buffers of this process.

``TraceRecorder`` is a span processor: when a span ends it appends a
reference to a deque under a lock (server spans also go to the per-route
slowest heap and, if failed, to the failed deque). ``TraceLogBuffer`` keeps
recent ``logging`` records of requests with their trace id. Nothing is
formatted or copied on the request path; the page does that when asked.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode


def is_failed(span: ReadableSpan) -> bool:
    """Status ERROR, or a 5xx response."""
    if span.status.status_code is StatusCode.ERROR:
        return True
    status = (span.attributes or {}).get("http.response.status_code")
    return isinstance(status, int) and status >= 500


def duration_ns(span: ReadableSpan) -> int:
    return (span.end_time or 0) - (span.start_time or 0)


@dataclass(frozen=True)
class RouteSummary:
    name: str
    requests: int
    failed: int
    slowest: list[ReadableSpan]  # slowest first


@dataclass(frozen=True)
class Snapshot:
    started_ns: int
    routes: list[RouteSummary]
    recent: list[ReadableSpan]  # newest first
    failed: list[ReadableSpan]  # newest first


class _Route:
    __slots__ = ("failed", "requests", "slowest")

    def __init__(self) -> None:
        self.requests = 0
        self.failed = 0
        self.slowest: list[tuple[int, int, ReadableSpan]] = []  # min-heap: the fastest kept one on top


class TraceRecorder(SpanProcessor):
    """Recent server spans, the slowest per route, recent failures, and recent spans of any kind."""

    def __init__(
        self,
        *,
        recent: int = 100,
        slowest_per_route: int = 5,
        failed: int = 50,
        spans: int = 2000,
        max_routes: int = 500,
    ) -> None:
        self._lock = threading.Lock()
        self._recent: deque[ReadableSpan] = deque(maxlen=recent)
        self._failed: deque[ReadableSpan] = deque(maxlen=failed)
        self._spans: deque[ReadableSpan] = deque(maxlen=spans)
        self._routes: dict[str, _Route] = {}
        self._slowest = slowest_per_route
        self._max_routes = max_routes
        self._seq = itertools.count()
        self.started_ns = time.time_ns()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind is not SpanKind.SERVER:
            with self._lock:
                self._spans.append(span)
            return
        failed = is_failed(span)
        entry = (duration_ns(span), next(self._seq), span)
        with self._lock:
            self._spans.append(span)
            self._recent.append(span)
            if failed:
                self._failed.append(span)
            route = self._routes.get(span.name)
            if route is None:
                # Span names of the kit are bounded (method + route template); others may not be.
                if len(self._routes) >= self._max_routes:
                    return
                route = self._routes[span.name] = _Route()
            route.requests += 1
            route.failed += failed
            if len(route.slowest) < self._slowest:
                heapq.heappush(route.slowest, entry)
            elif entry[0] > route.slowest[0][0]:
                heapq.heapreplace(route.slowest, entry)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def snapshot(self) -> Snapshot:
        with self._lock:
            recent = list(self._recent)
            failed = list(self._failed)
            routes = [(name, r.requests, r.failed, list(r.slowest)) for name, r in self._routes.items()]
        return Snapshot(
            started_ns=self.started_ns,
            routes=sorted(
                (
                    RouteSummary(n, count, errors, [s for _, _, s in sorted(slow, reverse=True)])
                    for n, count, errors, slow in routes
                ),
                key=lambda r: r.name,
            ),
            recent=recent[::-1],
            failed=failed[::-1],
        )

    def trace(self, trace_id: int) -> list[ReadableSpan]:
        """The spans of one trace still held, in start order."""
        with self._lock:
            candidates: Iterable[ReadableSpan] = [
                *self._spans,
                *self._recent,
                *self._failed,
                *(s for r in self._routes.values() for _, _, s in r.slowest),
            ]
            found = {
                s.context.span_id: s for s in candidates if s.context is not None and s.context.trace_id == trace_id
            }
        return sorted(found.values(), key=lambda s: s.start_time or 0)


@dataclass(frozen=True)
class LogLine:
    created: float
    level: str
    logger: str
    message: str
    span_id: int


class TraceLogBuffer(logging.Handler):
    """The recent log records written inside a span, with the span's ids; records outside one are skipped."""

    def __init__(self, capacity: int = 1000) -> None:
        super().__init__()
        self._records: deque[tuple[int, int, logging.LogRecord]] = deque(maxlen=capacity)

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock and no formatting: deque.append is atomic.
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            self._records.append((ctx.trace_id, ctx.span_id, record))
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def lines(self, trace_id: int) -> list[LogLine]:
        return [_line(record, span_id) for tid, span_id, record in list(self._records) if tid == trace_id]


def _line(record: logging.LogRecord, span_id: int) -> LogLine:
    try:
        message = record.getMessage()
    except Exception:  # bad %-args: show the template rather than fail the page
        message = str(record.msg)
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        message = f"{message.rstrip()}\n{type(exc).__qualname__}: {exc}"
    return LogLine(record.created, record.levelname, record.name, message, span_id)
