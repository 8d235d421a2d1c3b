"""Tail sampling inside the process: keep every failed or slow trace and a ratio of the rest.

The SDK's sampler decides when a span starts, before anyone knows whether
the request will fail. ``TailSampler`` sits in front of the export
processors and decides when a trace's local root ends (the SERVER span, or
any span whose parent is remote or absent):

* kept: the root or a span of its trace has status ERROR, the root answered
  5xx, the root took at least the slow threshold, the root's parent is a
  remote span marked sampled (the caller decided; a distributed trace stays
  whole), or the trace id falls in the ratio (the same rule as
  ``TraceIdRatioBased``, so services with the same ratio agree);
* dropped: everything else — never exported, while metrics, the trace pages
  and logs still see every request (they do not go through this processor).

Children that end before their root wait in a bounded buffer; children that
end after it (work after the response) follow the remembered decision. When
the buffer is full, the oldest waiting trace is exported rather than lost.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

_TRACE_ID_LIMIT = (1 << 64) - 1


_Facts = tuple[Any, Any, Any, Any, int]


def _facts(span: ReadableSpan) -> _Facts:
    """Context, parent, status code, attributes and duration of an ended span: an SDK span's fields
    when it has them (its properties cost a Python call each, ``attributes`` a mapping proxy)."""
    try:
        status, attributes = span._status, span._attributes
        ctx, parent, start, end = span._context, span._parent, span._start_time, span._end_time
        attributes = getattr(attributes, "_dict", attributes)  # BoundedAttributes: its plain dict
    except AttributeError:
        status, attributes = span.status, span.attributes
        ctx, parent, start, end = span.context, span.parent, span.start_time, span.end_time
    return ctx, parent, status.status_code, attributes, (end or 0) - (start or 0)


class TailSampler(SpanProcessor):
    def __init__(
        self,
        processors: Sequence[SpanProcessor],
        ratio: float,
        slow_s: float,
        *,
        max_waiting_traces: int = 4096,
        max_decisions: int = 16384,
    ) -> None:
        self._processors = tuple(processors)
        self._bound = round(ratio * (_TRACE_ID_LIMIT + 1))
        self._slow_ns = int(slow_s * 1e9)
        self._waiting: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._decided: OrderedDict[int, bool] = OrderedDict()
        self._max_waiting = max_waiting_traces
        self._max_decisions = max_decisions
        self._lock = threading.Lock()

    @property
    def decisions(self) -> dict[int, bool]:
        """Trace id -> kept, for the most recent local roots (read without the lock: one lookup)."""
        return self._decided

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context)

    def starts_nothing(self, quiet: Callable[[Any], bool]) -> bool:
        """Whether ``on_start`` does nothing: only when each processor behind it is ``quiet``."""
        return type(self).on_start is TailSampler.on_start and all(quiet(p) for p in self._processors)

    def on_end(self, span: ReadableSpan) -> None:
        facts = _facts(span)
        ctx, parent = facts[0], facts[1]
        if ctx is None:
            return
        trace_id = ctx.trace_id
        if parent is not None and not parent.is_remote:
            self._child_ended(trace_id, span)
            return
        decided = self._decided
        with self._lock:
            waiting = self._waiting.pop(trace_id, None)
            keep = self._keep(facts, waiting)
            decided[trace_id] = keep
            if len(decided) > self._max_decisions:
                decided.popitem(last=False)
        if keep:
            if waiting:
                self._export(waiting)
            for processor in self._processors:
                processor.on_end(span)

    def compiled_step(
        self, steps_of: Callable[[Sequence[Any]], tuple[Any, ...]], prefix: bytes
    ) -> tuple[Any, ...] | None:
        """This ``on_end`` as a step of ``sdk.span_end``'s compiled ender, or ``None`` (then it is called);
        ``prefix``: the encoded items' group prefix of the spans it gets, ``steps_of``: other processors' steps.
        The compiled step decides a local root that has no waiting children as ``_keep`` does and
        records the decision under the same lock; every other span comes here."""
        if type(self).on_end is not TailSampler.on_end or type(self)._keep is not TailSampler._keep:
            return None
        inner = steps_of(self._processors)
        if any(step[0] == 2 for step in inner):
            return None  # a sampler inside a sampler: this code
        return (
            2,
            self.on_end,
            self._lock,
            self._waiting,
            self._decided,
            self._bound,
            self._slow_ns,
            self._max_decisions,
            StatusCode.ERROR,
            inner,
        )

    def _child_ended(self, trace_id: int, span: ReadableSpan) -> None:
        evicted: list[ReadableSpan] = []
        with self._lock:
            decision = self._decided.get(trace_id)
            if decision is None:
                self._waiting.setdefault(trace_id, []).append(span)
                if len(self._waiting) > self._max_waiting:
                    evicted = self._waiting.popitem(last=False)[1]  # its root never ended here: keep it
        if decision:
            self._export([span])
        elif evicted:
            self._export(evicted)

    def _keep(self, facts: _Facts, children: list[ReadableSpan] | None) -> bool:
        ctx, parent, status_code, attributes, duration_ns = facts
        if parent is not None and parent.is_remote and parent.trace_flags.sampled:
            return True
        if status_code is StatusCode.ERROR or (
            children and any(c.status.status_code is StatusCode.ERROR for c in children)
        ):
            return True
        status = attributes.get("http.response.status_code") if attributes else None
        if isinstance(status, int) and status >= 500:
            return True
        if duration_ns >= self._slow_ns:
            return True
        return ctx is not None and (ctx.trace_id & _TRACE_ID_LIMIT) < self._bound

    def _export(self, spans: list[ReadableSpan]) -> None:
        for span in spans:
            for processor in self._processors:
                processor.on_end(span)

    def shutdown(self) -> None:
        with self._lock:
            waiting = [s for spans in self._waiting.values() for s in spans]
            self._waiting.clear()
        self._export(waiting)  # roots that never ended here: nothing is lost at exit
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(processor.force_flush(timeout_millis) for processor in self._processors)


def decisions_of(provider: Any) -> dict[int, bool] | None:
    """The decisions (trace id -> kept) of the provider's tail sampler, or ``None`` without one."""
    for processor in getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ()):
        if isinstance(processor, TailSampler):
            return processor.decisions
    return None
