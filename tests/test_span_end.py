"""The compiled span end (``sdk.span_end``) exports, records and samples exactly what ``span.end()`` does.

Every case runs through two pipelines built alike (same deterministic ids,
start and end times): one ends its spans with ``span.end(end_ns)``, the other
with the compiled ender. The encoded items the batch queue receives must be
the same bytes, the trace pages the same, the tail sampler's decisions the
same (in the same order); and where the ender must step aside (a processor
added later, a span already ended, a span whose lock another thread holds,
a span that is not the kit's) the result must still be the SDK's.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from otel_asgi_kit.export.tail_sampling import TailSampler
from otel_asgi_kit.pages.recorder import TraceRecorder
from otel_asgi_kit.resource import StableResource
from otel_asgi_kit.sdk import accel, encoded, span_end
from otel_asgi_kit.sdk.server_span import ServerSpanStarter

_core = pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")

START = 1_700_000_000_000_000_000


@pytest.fixture(autouse=True)
def _compiled_writers() -> Any:
    accel.use(True)
    assert accel.compiled(), accel.status()
    yield
    accel.use(False)


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.items: list[Any] = []

    def export(self, batch: Any) -> Any:
        self.items.extend(batch)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class _Counting(IdGenerator):
    """Ids 1, 2, 3, ... mixed into the high bits, so the tail sampler's ratio sees varied low 64 bits."""

    def __init__(self) -> None:
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def generate_span_id(self) -> int:
        return (self._next() * 0x9E3779B97F4A7C15) & ((1 << 64) - 1) or 1

    def generate_trace_id(self) -> int:
        n = self._next()
        return ((n << 64) | ((n * 0x9E3779B97F4A7C15) & ((1 << 64) - 1))) or 1

    def is_trace_id_random(self) -> bool:
        return True


class _Pipeline:
    def __init__(self, *, compiled: bool, tail: dict[str, Any] | None = None) -> None:
        self.keep = _Keep()
        self.provider = TracerProvider(resource=StableResource({"service.name": "end"}), id_generator=_Counting())
        self.batch = encoded.EncodingSpanProcessor(
            self.keep, schedule_delay_millis=60_000, max_queue_size=4096, max_export_batch_size=4096
        )
        self.tail: Any = TailSampler([self.batch], **tail) if tail is not None else None
        self.recorder = TraceRecorder()
        self.provider.add_span_processor(self.tail or self.batch)
        self.provider.add_span_processor(self.recorder)
        self.tracer = self.provider.get_tracer("otel_asgi_kit", "1")
        self.starter = ServerSpanStarter(self.tracer)
        assert self.starter.fast
        self.ender: Any = span_end.compiled_ender(self.starter) if compiled else None
        if compiled:
            assert isinstance(self.ender, _core.Ender)

    def end(self, span: Any, end_ns: int) -> None:
        if self.ender is not None:
            self.ender(span, end_ns)
        else:
            span.end(end_ns)

    def request(
        self,
        i: int,
        *,
        status: int = 200,
        error: bool = False,
        duration_ms: float = 1.0,
        child: str | None = None,
        parent: Any = None,
    ) -> None:
        route = f"/items/{i % 3}"
        span: Any = self.starter.start("GET", parent, {"http.request.method": "GET", "url.path": f"/items/{i}"})
        span._start_time = START + i * 10_000_000
        end_ns = span._start_time + int(duration_ms * 1e6)
        late = None
        if child is not None:
            with trace.use_span(span, end_on_exit=False):
                inner = self.tracer.start_span("db", start_time=span._start_time + 1000)
            if child == "before":
                inner.end(end_ns - 1000)
            else:
                late = inner
        if error:
            span.set_status(Status(StatusCode.ERROR, "RuntimeError: boom"))
            span.add_event("exception", {"exception.type": "RuntimeError"}, timestamp=span._start_time + 500)
        span.set_kit_attributes({"http.route": route, "http.response.status_code": status}, f"GET {route}")
        self.end(span, end_ns)
        if late is not None:
            late.end(end_ns + 1000)

    def exported(self) -> list[Any]:
        self.batch.force_flush()
        return list(self.keep.items)

    def pages(self) -> Any:
        snapshot = self.recorder.snapshot()
        return (
            [(r.name, r.requests, r.failed, [s.context.span_id for s in r.slowest]) for r in snapshot.routes],
            [s.context.span_id for s in snapshot.recent],
            [s.context.span_id for s in snapshot.failed],
            [s.context.span_id for s in self.recorder._spans],  # every span, for the trace page
        )


def _mixed(pipeline: _Pipeline) -> None:
    remote = trace.set_span_in_context(NonRecordingSpan(SpanContext(7 << 64 | 9, 77, True, TraceFlags(1))))
    for i in range(300):
        pipeline.request(
            i,
            status=503 if i % 17 == 0 else 404 if i % 13 == 0 else 200,
            error=i % 19 == 0,
            duration_ms=80.0 if i % 23 == 0 else 1.0 + i % 5,
            child="before" if i % 11 == 0 else "after" if i % 29 == 0 else None,
            parent=remote if i % 31 == 0 else None,
        )


def _both(**kwargs: Any) -> tuple[_Pipeline, _Pipeline]:
    python, compiled = _Pipeline(compiled=False, **kwargs), _Pipeline(compiled=True, **kwargs)
    _mixed(python)
    _mixed(compiled)
    return python, compiled


def test_the_same_encoded_items_and_pages_as_span_end() -> None:
    python, compiled = _both()
    items = compiled.exported()
    assert len(items) == 300 + 27 + 11  # every server span, and every child (before: 27, after: 11)
    assert all(type(item) is bytes for item in items)  # the compiled writer's bytes behind the group prefix
    assert items == python.exported()
    assert compiled.pages() == python.pages()


def test_the_same_tail_sampling_decisions_and_exports() -> None:
    python, compiled = _both(tail={"ratio": 0.2, "slow_s": 0.05})
    assert list(compiled.tail._decided.items()) == list(python.tail._decided.items())
    kept = sum(compiled.tail._decided.values())
    assert 300 > kept > 60  # errors, 5xx, slow, the sampled remote parent, and about a fifth of the rest
    items = compiled.exported()
    assert items == python.exported()
    assert compiled.pages() == python.pages()  # the pages see every request, kept or not


def test_the_decision_memory_stays_bounded_in_the_same_order() -> None:
    python, compiled = _both(tail={"ratio": 0.5, "slow_s": 1.0, "max_decisions": 16})
    assert len(compiled.tail._decided) == 16
    assert list(compiled.tail._decided.items()) == list(python.tail._decided.items())
    assert compiled.exported() == python.exported()


def test_a_processor_added_later_gets_every_span() -> None:
    pipeline = _Pipeline(compiled=True)
    seen: list[ReadableSpan] = []

    class Late(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            seen.append(span)

    pipeline.provider.add_span_processor(Late())  # a new processor tuple: the ender steps aside
    pipeline.request(1)
    assert [s.name for s in seen] == ["GET /items/1"]
    assert len(pipeline.exported()) == 1


def test_a_span_ended_twice_is_exported_once_with_the_sdk_warning(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = _Pipeline(compiled=True)
    span: Any = pipeline.starter.start("GET", None, {})
    pipeline.ender(span, time.time_ns())
    with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"):
        pipeline.ender(span, time.time_ns())
    assert "Calling end() on an ended span." in caplog.text
    assert len(pipeline.exported()) == 1
    with pytest.raises(TypeError):  # ended: the attribute map is read-only, as after span.end()
        span._attributes["late"] = 1


def test_a_span_whose_lock_is_held_waits_for_it() -> None:
    pipeline = _Pipeline(compiled=True)
    span: Any = pipeline.starter.start("GET", None, {})
    span._lock.acquire()
    done = threading.Event()

    def end() -> None:
        pipeline.ender(span, time.time_ns())
        done.set()

    ender = threading.Thread(target=end)
    ender.start()
    try:
        assert not done.wait(0.2)  # span.end() waits for the setter holding the lock, as the SDK does
        assert span.end_time is None
    finally:
        span._lock.release()
    ender.join(5)
    assert done.is_set() and span.end_time is not None
    assert len(pipeline.exported()) == 1


def test_a_span_that_is_not_the_kits_ends_as_the_sdk_ends_it() -> None:
    pipeline = _Pipeline(compiled=True)
    span: Any = pipeline.tracer.start_span("plain")
    pipeline.ender(span, START)
    assert span.end_time == START
    assert len(pipeline.exported()) == 1


def test_not_built_for_a_processor_with_work_when_a_span_is_ending() -> None:
    class Ending(SpanProcessor):
        def _on_ending(self, span: Any) -> None:
            span.set_attribute("ending", True)

    provider = TracerProvider()
    provider.add_span_processor(Ending())
    starter = ServerSpanStarter(provider.get_tracer("t"))
    assert span_end.compiled_ender(starter) is None


def test_a_failing_processor_fails_the_end_as_in_the_sdk() -> None:
    pipeline = _Pipeline(compiled=True)

    class Broken(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise ValueError("broken processor")

    pipeline.provider._active_span_processor._span_processors = (
        *pipeline.provider._active_span_processor._span_processors,
        Broken(),
    )
    pipeline.ender = span_end.compiled_ender(pipeline.starter)
    span: Any = pipeline.starter.start("GET", None, {})
    with pytest.raises(ValueError, match="broken processor"):
        pipeline.ender(span, START)
    assert span.end_time == START and len(pipeline.exported()) == 1  # the processors before it ran


def test_the_batch_queue_is_filled_in_c_only_while_emit_would_just_queue(caplog: pytest.LogCaptureFixture) -> None:
    """A full queue and a shut-down processor go through the SDK's own ``emit``: its warning, its drop."""
    release = threading.Event()

    class Stuck(_Keep):
        def export(self, batch: Any) -> Any:
            release.wait(10)
            return super().export(batch)

    keep = Stuck()
    provider = TracerProvider(resource=StableResource({"service.name": "end"}))
    batch = encoded.EncodingSpanProcessor(keep, schedule_delay_millis=60_000, max_queue_size=8, max_export_batch_size=8)
    provider.add_span_processor(batch)
    starter = ServerSpanStarter(provider.get_tracer("t"))
    ender: Any = span_end.compiled_ender(starter)
    queue = batch._batch_processor._queue
    assert encoded._queue_of(batch) is batch._batch_processor
    try:
        for _ in range(8):  # a full batch wakes the worker, which takes all 8 and blocks in export
            ender(starter.start("GET", None, {}), time.time_ns())
        deadline = time.monotonic() + 5
        while queue and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not queue
        with caplog.at_level(logging.WARNING):
            for _ in range(9):
                ender(starter.start("GET", None, {}), time.time_ns())
        assert len(queue) == 8
        assert "Queue full, dropping" in caplog.text  # the ninth: the SDK's emit
    finally:
        release.set()
    batch.shutdown()  # type: ignore[no-untyped-call]
    assert len(keep.items) == 16
    ender(starter.start("GET", None, {}), time.time_ns())  # after shutdown: emit ignores it, as it does
    assert len(keep.items) == 16 and not queue


def test_doctor_does_not_blame_the_sdk_when_the_extension_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``otel-asgi-kit-accel`` no ender is built, but the SDK side still fits: ``doctor``'s fast-path
    list stays on ("compiled parts" is where the extension's absence shows)."""
    from otel_asgi_kit.sdk import shortcuts

    monkeypatch.setattr(span_end, "_core", None)
    assert span_end.compiled_ender(_Pipeline(compiled=False).starter) is None
    assert shortcuts.status()["server span end in C"] is True
