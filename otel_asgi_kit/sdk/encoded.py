"""Spans and log records encoded when they end, so the batch queue holds bytes, not objects.

The SDK's batch processors queue the span (or log record) objects until the
export thread encodes them, up to 512 at a time: each queued span keeps a
dozen objects alive that the garbage collector tracks, promotes and
traverses. Queued as bytes, the span's objects are freed when the request
is done and the queue holds one untracked object per span. (The collector
runs that the benchmark showed — a young collection every ~50 requests, a
full one every few seconds — came from a reference cycle per request, fixed
in the adapters, see ``tests/test_no_cycles.py``; this keeps queued
telemetry out of the collector's way as well.) It also lets the log handler
queue a record it encoded itself (``logs.otlp_handler``), and a span that
tail sampling drops is never encoded.

``EncodingSpanProcessor`` and ``EncodingLogRecordProcessor`` are the SDK's
``BatchSpanProcessor`` / ``BatchLogRecordProcessor`` (same queue, limits,
drop counting, fork handling, flush and shutdown) whose ``on_end`` /
``on_emit`` encode the item with ``wire`` at once and queue the bytes, which
the collector does not track. The exporter (``otlp_http``) joins them into the
request. An encoded item starts with two bytes naming its (resource, scope)
pair in ``GROUPS``, so the request groups them as the stock encoder does.

Used only in front of the kit's own OTLP/HTTP exporters on their direct path;
they rely on the stock processor's private ``_batch_processor`` (listed in
``sdk.shortcuts``): without it the stock ``on_end``/``on_emit`` run.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_asgi_kit.sdk import accel, wire, wire_logs
from otel_asgi_kit.sdk.wire import Grouped, bucket

_MAX_GROUPS = 1 << 16
_IDENTITY_LIMIT = 4096
_EMPTY_RESOURCE = Resource.create({})
_EMPTY_CONTEXT = Context()


class Groups:
    """(resource, scope) pairs, numbered: an encoded item names its pair in two bytes.

    Looked up by identity first (one dict lookup per item); a new object equal
    to a known pair (``get_tracer`` called again) gets the known number, so the
    table only grows with genuinely different pairs, up to 65,536. Past that,
    items are queued as objects and encoded by the exporter, as before.
    """

    def __init__(self) -> None:
        self._by_identity: dict[tuple[int, int], tuple[bytes, Any, Any]] = {}
        self._by_value: dict[tuple[Any, Any], bytes] = {}
        self._pairs: dict[bytes, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def prefix(self, resource: Any, scope: Any) -> bytes | None:
        known = self._by_identity.get((id(resource), id(scope)))
        if known is not None:
            return known[0]
        return self._add(resource, scope)

    def _add(self, resource: Any, scope: Any) -> bytes | None:
        with self._lock:
            try:
                value_key = (resource, scope)
                number = self._by_value.get(value_key)
            except TypeError:  # unhashable (not an SDK Resource/scope): the exporter encodes it
                return None
            if number is None:
                if len(self._pairs) >= _MAX_GROUPS:
                    return None
                number = len(self._pairs).to_bytes(2, "big")
                self._pairs[number] = (resource, scope)
                self._by_value[value_key] = number
            if len(self._by_identity) >= _IDENTITY_LIMIT:
                self._by_identity.clear()
            # the objects are held with their ids, so an id cannot be reused meanwhile
            self._by_identity[(id(resource), id(scope))] = (number, resource, scope)
            return number

    def pair(self, number: bytes) -> tuple[Any, Any]:
        return self._pairs[number]


GROUPS = Groups()


def span_item(span: ReadableSpan) -> bytes | ReadableSpan:
    """The span's encoding behind its group number, or the span itself when it cannot have one."""
    prefix = GROUPS.prefix(span.resource, span.instrumentation_scope)
    if prefix is None:
        return span
    return prefix + accel.encode_span(span)


def log_item(record: ReadWriteLogRecord) -> bytes | None:
    resource = record.resource if record.resource is not None else _EMPTY_RESOURCE
    prefix = GROUPS.prefix(resource, record.instrumentation_scope)
    if prefix is None:
        return None
    return prefix + wire_logs.encode_log_record(record, accel.encode_log_fields)


def grouped(items: Sequence[Any], encode: Callable[[Any], bytes], owner: Callable[[Any], tuple[Any, Any]]) -> Grouped:
    """``wire._grouped`` for batches that hold encoded items, objects, or both."""
    groups: Grouped = {}
    pair = GROUPS.pair
    last_prefix = b""
    items_of: list[Any] = []
    for item in items:
        if type(item) is bytes:
            prefix = item[:2]
            if prefix != last_prefix:
                items_of = bucket(groups, *pair(prefix))
                last_prefix = prefix
            # A copy, not a memoryview: cheaper (0.07 against 0.22 µs per item) and not tracked by the
            # garbage collector. 512 memoryviews per batch alive at once set off the collector: in a
            # loaded server 119 young, 11 middle and 1 full collection in 9 s (~3 µs per request), 3
            # young ones with copies. The requests themselves leave no young objects behind.
            items_of.append(item[2:])
        else:
            last_prefix = b""
            bucket(groups, *owner(item)).append(encode(item))
    return groups


class EncodingSpanProcessor(BatchSpanProcessor):
    """``BatchSpanProcessor`` queueing each sampled span's encoding (see the module's text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._emit = getattr(getattr(self, "_batch_processor", None), "emit", None)

    def on_end(self, span: ReadableSpan) -> None:
        emit = self._emit
        if emit is None:
            super().on_end(span)
            return
        ctx = span.context
        if ctx is None or not ctx.trace_flags.sampled:
            return
        try:
            item = span_item(span)
        except Exception:  # the exporter's encoder gets the span and reports what fails
            item = span
        emit(item)

    def compiled_step(
        self, steps_of: Callable[[Sequence[Any]], tuple[Any, ...]], prefix: bytes
    ) -> tuple[Any, ...] | None:
        """This ``on_end`` as a step of ``sdk.span_end``'s compiled ender, or ``None`` (then it is called);
        ``prefix``: the encoded items' group prefix of the spans it gets, ``steps_of``: other processors' steps."""
        writer = accel.compiled_span_writer()
        if type(self).on_end is not EncodingSpanProcessor.on_end or self._emit is None or writer is None:
            return None
        return (0, self.on_end, prefix, writer, wire.encode_span, self._emit, _queue_of(self))


# The names the SDK's ``BatchProcessor.emit`` uses (1.45, the pinned release): the compiled ender queues an item as it
# does only while ``emit`` is still that code (a release that counts or checks something more calls it).
_EMIT_NAMES = frozenset(
    {
        "_at_fork_reinit",
        "_bsp_reset_once",
        "_exporting",
        "_logger",
        "_max_export_batch_size",
        "_max_queue_size",
        "_metrics",
        "_pid",
        "_queue",
        "_shutdown",
        "_worker_awaken",
        "appendleft",
        "do_once",
        "drop_items",
        "getpid",
        "info",
        "is_set",
        "len",
        "os",
        "set",
        "warning",
    }
)


def _queue_of(processor: Any) -> Any:
    """The batch processor whose ``emit`` the compiled ender may do itself (see ``_EMIT_NAMES``), or ``None``."""
    batch = getattr(processor, "_batch_processor", None)
    code = getattr(getattr(type(batch), "emit", None), "__code__", None)
    if code is None or frozenset(code.co_names) != _EMIT_NAMES:
        return None
    fields = vars(batch)
    kinds = {"_queue": deque, "_max_queue_size": int, "_max_export_batch_size": int, "_pid": int, "_shutdown": bool}
    if not all(type(fields.get(name)) is kind for name, kind in kinds.items()) or "_worker_awaken" not in fields:
        return None
    return batch


class EncodingLogRecordProcessor(BatchLogRecordProcessor):
    """``BatchLogRecordProcessor`` queueing each record's encoding (see the module's text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._emit = getattr(getattr(self, "_batch_processor", None), "emit", None)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        emit = self._emit
        if emit is None:
            super().on_emit(log_record)
            return
        try:
            item: Any = log_item(log_record)
        except Exception:  # the exporter's encoder gets the record and reports what fails
            item = None
        if item is None:
            if not hasattr(log_record.log_record, "__dict__"):
                super().on_emit(log_record)
                return
            item = _detached(log_record)
        emit(item)


def _detached(log_record: ReadWriteLogRecord) -> ReadableLogRecord:
    """What the stock processor queues: a copy without the context (which may hold large objects)."""
    record = log_record.log_record
    detached = object.__new__(type(record))
    detached.__dict__.update(record.__dict__)
    detached.context = _EMPTY_CONTEXT
    return ReadableLogRecord(
        log_record=detached,
        resource=log_record.resource if log_record.resource is not None else _EMPTY_RESOURCE,
        instrumentation_scope=log_record.instrumentation_scope,
        limits=log_record.limits,
    )
