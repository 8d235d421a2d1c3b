"""What the trace pages show, kept in bounded ring buffers of this process.

``TraceRecorder`` is a span processor: when a span ends it appends a
reference to a deque (atomic, no lock). Server spans wait in one deque, and
every 64 of them (or when a page asks) they are sorted under one lock into
the recent and failed deques and the per-route slowest heaps — one loop per
batch instead of a lock and a dozen lookups per request; only those are
kept. Spans of other kinds (the requests' children) go to a ring of the
last 2,000, where a listed request's trace finds them. A server span is
held only while its request is listed: holding the last 2,000 of them too
kept megabytes of spans alive, and each request's memory cold in the cache. ``TraceLogBuffer`` keeps
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from otel_asgi_kit.sdk.current import span_context

_DRAIN_EVERY = 64


def is_failed(span: ReadableSpan) -> bool:
    """Status ERROR, or a 5xx response."""
    if span.status.status_code is StatusCode.ERROR:
        return True
    status = (span.attributes or {}).get("http.response.status_code")
    return isinstance(status, int) and status >= 500


def _facts(span: ReadableSpan) -> tuple[str, int, bool]:
    """Name, duration and ``is_failed`` of an ended span, read from the SDK span's fields when it has them
    (its properties and attribute mapping cost a Python call each)."""
    try:
        status, attributes = span._status, span._attributes
        name, start, end = span._name, span._start_time, span._end_time
    except AttributeError:
        return span.name, duration_ns(span), is_failed(span)
    code = (getattr(attributes, "_dict", None) or attributes or {}).get("http.response.status_code")
    failed = status.status_code is StatusCode.ERROR or (isinstance(code, int) and code >= 500)
    return name, (end or 0) - (start or 0), failed


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
    """Recent server spans, the slowest per route, recent failures, and recent spans of other kinds."""

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
        self._incoming: deque[ReadableSpan] = deque(maxlen=_DRAIN_EVERY * 64)  # bounded if draining ever failed
        self._routes: dict[str, _Route] = {}
        self._slowest = slowest_per_route
        self._max_routes = max_routes
        self._seq = itertools.count()
        self.started_ns = time.time_ns()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def starts_nothing(self, quiet: Callable[[Any], bool]) -> bool:
        """Whether ``on_start`` does nothing: true unless a subclass changed it."""
        return type(self).on_start is TraceRecorder.on_start

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind is SpanKind.SERVER:
            incoming = self._incoming
            incoming.append(span)
            if len(incoming) >= _DRAIN_EVERY:
                self._drain()
        else:
            self._spans.append(span)

    def compiled_step(
        self, steps_of: Callable[[Sequence[Any]], tuple[Any, ...]], prefix: bytes
    ) -> tuple[Any, ...] | None:
        """This ``on_end`` as a step of ``sdk.span_end``'s compiled ender, or ``None`` (then it is called);
        ``prefix``: the encoded items' group prefix of the spans it gets, ``steps_of``: other processors' steps."""
        if type(self).on_end is not TraceRecorder.on_end:
            return None
        return (1, self.on_end, self._spans, self._incoming, self._drain, _DRAIN_EVERY, SpanKind.SERVER)

    def _drain(self) -> None:
        incoming = self._incoming
        with self._lock:
            routes, slowest_kept, seq, max_routes = self._routes, self._slowest, self._seq, self._max_routes
            keep_recent, keep_failed = self._recent.append, self._failed.append
            take, error, push, replace = incoming.popleft, StatusCode.ERROR, heapq.heappush, heapq.heapreplace
            while incoming:
                try:
                    span: Any = take()
                except IndexError:  # drained by another thread meanwhile
                    break
                try:  # ``_facts`` inline for an SDK span (a call per span is a good part of this loop)
                    name, duration = span._name, span._end_time - span._start_time
                    code = span._attributes._dict.get("http.response.status_code")
                    failed = span._status.status_code is error or (isinstance(code, int) and code >= 500)
                except (AttributeError, TypeError):  # not the SDK's span, or no times
                    name, duration, failed = _facts(span)
                keep_recent(span)
                if failed:
                    keep_failed(span)
                route = routes.get(name)
                if route is None:
                    # Span names of the kit are bounded (method + route template); others may not be.
                    if len(routes) >= max_routes:
                        continue
                    route = routes[name] = _Route()
                route.requests += 1
                route.failed += failed
                slowest = route.slowest
                if len(slowest) < slowest_kept:
                    push(slowest, (duration, next(seq), span))
                elif duration > slowest[0][0]:
                    replace(slowest, (duration, next(seq), span))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def snapshot(self) -> Snapshot:
        self._drain()
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
        """The spans of one trace still held, in start order (its server span while the request is listed)."""
        self._drain()
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
        ctx = span_context()
        if ctx is not None:
            self._records.append((ctx[0], ctx[1], record))
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
