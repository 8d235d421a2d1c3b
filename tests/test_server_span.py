"""The kit's short path to a SERVER span gives what ``Tracer.start_span`` gives."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from otel_asgi_kit.sdk.server_span import ServerSpan, ServerSpanStarter


class RecordOnly(Sampler):
    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY, {"sampler.said": "record"}, TraceState([("s", "1")]))

    def get_description(self) -> str:
        return "RecordOnly"


def _parent(sampled: bool, remote: bool = True) -> Context:
    ctx = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0),
        trace_state=TraceState([("vendor", "v")]),
    )
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def _attrs() -> dict[str, Any]:
    return {"http.request.method": "GET", "url.path": "/items/1", "url.scheme": "http"}


def _both(sampler: Sampler, parent: Context | None, limits: SpanLimits | None = None) -> tuple[Any, Any, Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, resource=Resource({"service.name": "t"}), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otel_asgi_kit", "1")
    starter = ServerSpanStarter(tracer)
    ours = starter.start("GET", parent, _attrs())
    stock = tracer.start_span("GET", context=parent, kind=SpanKind.SERVER, attributes=_attrs())
    for span in (ours, stock):
        span.update_name("GET /items/{id}")
        span.set_attribute("user.set", 5)
        span.set_status(Status(StatusCode.ERROR, "boom"))
        span.add_event("e", {"k": "v"})
        span.add_link(SpanContext(5, 6, is_remote=True), {"why": "batch"})
        try:
            raise KeyError("k")
        except KeyError as exc:
            span.record_exception(exc)
        span.end()
    return starter, (ours, stock), exporter.get_finished_spans()


def _without_ids(message: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    for rs in message.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                s.span_id = b""
                s.start_time_unix_nano = s.end_time_unix_nano = 0
                s.trace_id = s.trace_id if s.parent_span_id else b""
                for e in s.events:
                    e.time_unix_nano = 0
                    for kv in e.attributes:
                        if kv.key == "exception.stacktrace":
                            kv.value.string_value = ""
    return message


@pytest.mark.parametrize(
    ("sampler", "parent"),
    [
        (ParentBased(ALWAYS_ON), None),
        (ParentBased(ALWAYS_ON), _parent(sampled=True)),
        (ParentBased(ALWAYS_ON), _parent(sampled=False)),
        (ParentBased(ALWAYS_ON), _parent(sampled=True, remote=False)),
        (ALWAYS_ON, _parent(sampled=False)),
        (ALWAYS_OFF, None),
        (TraceIdRatioBased(1.0), None),
        (ParentBased(TraceIdRatioBased(0.0)), None),
        (RecordOnly(), _parent(sampled=True)),
    ],
)
def test_same_span_as_the_sdk(sampler: Sampler, parent: Context | None) -> None:
    starter, (ours, stock), finished = _both(sampler, parent)
    assert starter.fast
    assert type(ours) is (ServerSpan if stock.is_recording() or isinstance(stock, SdkSpan) else NonRecordingSpan)
    a, b = ours.get_span_context(), stock.get_span_context()
    assert (a.trace_flags, a.trace_state, a.is_remote) == (b.trace_flags, b.trace_state, b.is_remote)
    if parent is None:
        assert a.trace_id != b.trace_id  # each root gets its own trace
    else:
        assert a.trace_id == b.trace_id
    exported = [s for s in finished if isinstance(s, ReadableSpan)]
    if not b.trace_flags.sampled:
        assert exported == []  # neither is exported
        return
    assert len(exported) == 2
    ours_encoded = ExportTraceServiceRequest.FromString(encode_spans(exported[:1]).SerializeToString())
    stock_encoded = ExportTraceServiceRequest.FromString(encode_spans(exported[1:]).SerializeToString())
    assert _without_ids(ours_encoded) == _without_ids(stock_encoded)


def test_fields_match_the_sdk_span() -> None:
    _, (ours, stock), _ = _both(ParentBased(ALWAYS_ON), None)
    assert set(vars(ours)) == set(vars(stock))
    assert set(vars(ours._attributes)) == set(vars(stock._attributes))
    assert dict(ours.attributes) == {**_attrs(), "user.set": 5}


def test_user_attributes_are_still_checked() -> None:
    provider = TracerProvider()
    starter = ServerSpanStarter(provider.get_tracer("t"))
    span = starter.start("GET", None, _attrs())
    span.set_attribute("bad", object())  # type: ignore[arg-type]
    span.set_attribute("list", [1, 2])
    assert type(span.attributes["bad"]) in (str, type(None))  # the SDK's conversion, not the object
    assert span.attributes["list"] == (1, 2)
    assert isinstance(span, ServerSpan)
    span.set_kit_attributes({"http.route": "/x"})
    span.end()
    span.set_kit_attributes({"after.end": "ignored"})
    assert "after.end" not in span.attributes
    assert span.attributes["http.route"] == "/x"


def test_limits_that_truncate_use_the_sdk_path() -> None:
    starter, (ours, _), finished = _both(ParentBased(ALWAYS_ON), None, SpanLimits(max_span_attribute_length=4))
    assert not starter.fast
    assert ours.attributes["url.path"] == "/ite"
    assert len(finished) == 2


def test_disabled_tracer_and_api_tracer() -> None:
    from opentelemetry.trace import NoOpTracer

    starter = ServerSpanStarter(NoOpTracer())
    assert not starter.fast
    assert not starter.start("GET", None, _attrs()).is_recording()


def test_processors_see_start_and_end() -> None:
    seen: list[str] = []

    class Watch(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append(f"start {span.name}")

        def on_end(self, span: ReadableSpan) -> None:
            seen.append(f"end {span.name}")

    provider = TracerProvider()
    provider.add_span_processor(Watch(InMemorySpanExporter()))
    span = ServerSpanStarter(provider.get_tracer("t")).start("GET", None, _attrs())
    span.update_name("GET /r")
    span.end()
    assert seen == ["start GET", "end GET /r"]


def test_an_sdk_that_changed_gets_its_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A constructor or internals the kit does not know: no error, the SDK's start_span as before."""
    from otel_asgi_kit.sdk import server_span

    def changed(self: Any, *args: Any, **kwargs: Any) -> None:
        raise TypeError("__init__() got an unexpected keyword argument 'trace_config'")

    monkeypatch.setattr(server_span.ServerSpan, "__init__", changed)
    starter = ServerSpanStarter(TracerProvider().get_tracer("t"))
    assert not starter.fast
    span = starter.start("GET", None, _attrs())
    assert isinstance(span, SdkSpan) and not isinstance(span, ServerSpan)
    assert span.attributes["url.path"] == "/items/1"


def test_root_ids_come_from_the_sdks_generator_and_context_is_the_sdks() -> None:
    """The short path draws ids as ``RandomIdGenerator`` does (``random.getrandbits``) and builds the very
    ``SpanContext`` the constructor builds; a seeded ``random`` gives the SDK's own ids."""
    import random

    provider = TracerProvider(resource=Resource({"service.name": "t"}))
    tracer = provider.get_tracer("otel_asgi_kit", "1")
    starter = ServerSpanStarter(tracer)
    assert starter.fast and starter._new_context is not None
    random.seed(1234)
    ours = starter.start("GET", None, _attrs()).get_span_context()
    random.seed(1234)
    stock = tracer.start_span("GET", kind=SpanKind.SERVER).get_span_context()
    assert (ours.trace_id, ours.span_id) == (stock.trace_id, stock.span_id)
    assert ours == stock and type(ours) is type(stock) is SpanContext
    assert ours.is_valid and not ours.is_remote and ours.trace_state == stock.trace_state


def test_a_users_id_generator_is_asked() -> None:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class Fixed(IdGenerator):
        def generate_span_id(self) -> int:
            return 0x1111

        def generate_trace_id(self) -> int:
            return 0x2222

    tracer = TracerProvider(id_generator=Fixed()).get_tracer("otel_asgi_kit", "1")
    starter = ServerSpanStarter(tracer)
    assert starter.fast
    ctx = starter.start("GET", None, _attrs()).get_span_context()
    assert (ctx.trace_id, ctx.span_id) == (0x2222, 0x1111)
    assert not ctx.trace_flags.random_trace_id


def test_a_span_context_laid_out_otherwise_uses_its_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    import otel_asgi_kit.sdk.server_span as server_span

    class Other(tuple):  # type: ignore[type-arg]
        def __new__(
            cls, trace_id: int, span_id: int, is_remote: bool, trace_flags: Any = None, trace_state: Any = None
        ):
            return tuple.__new__(cls, (span_id, trace_id, is_remote, trace_flags, trace_state, True))

    monkeypatch.setattr(server_span, "SpanContext", Other)
    assert server_span._context_maker() is None


def test_the_compiled_root_maker_makes_the_pythons_span() -> None:
    """``root_maker()`` (``otel_asgi_kit_accel``) and ``start`` give the same root span: same fields and types,
    the same ids from a seeded ``random``, the processors' ``on_start`` and ``on_end``."""
    import random
    import threading

    pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "t"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    starter = ServerSpanStarter(provider.get_tracer("otel_asgi_kit", "1"))
    maker = starter.root_maker()
    assert maker is not None
    random.seed(99)
    compiled = maker("GET", _attrs())
    random.seed(99)
    python = starter.start("GET", None, _attrs())
    assert type(compiled) is type(python) is ServerSpan
    assert set(vars(compiled)) == set(vars(python))
    for name in vars(python):
        if name in ("_lock", "_start_time"):
            continue
        if name == "_attributes":
            assert vars(compiled._attributes).keys() == vars(python._attributes).keys()
            assert dict(compiled.attributes) == dict(python.attributes) == _attrs()
            assert type(compiled._attributes._lock) is type(threading.Lock())
            assert compiled._attributes._lock is not python._attributes._lock
            continue
        assert getattr(compiled, name) == getattr(python, name), name
    assert compiled.get_span_context() == python.get_span_context()
    assert compiled._lock is not python._lock and compiled.start_time <= python.start_time
    for span in (compiled, python):
        span.set_attribute("user.set", 1)
        span.end()
    finished = exporter.get_finished_spans()
    assert [s.name for s in finished] == ["GET", "GET"] and all(s.attributes["user.set"] == 1 for s in finished)


def test_the_root_maker_falls_back_when_the_tracer_is_disabled() -> None:
    pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")
    tracer = TracerProvider().get_tracer("otel_asgi_kit", "1")
    maker = ServerSpanStarter(tracer).root_maker()
    assert maker is not None and maker("GET", _attrs()).is_recording()
    tracer._tracer_config.is_enabled = False  # as a tracer configurator switching this scope off
    assert not maker("GET", _attrs()).is_recording()


def test_no_root_maker_off_the_short_path() -> None:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class Fixed(IdGenerator):
        def generate_span_id(self) -> int:
            return 5

        def generate_trace_id(self) -> int:
            return 6

    for provider in (
        TracerProvider(sampler=TraceIdRatioBased(0.5)),
        TracerProvider(id_generator=Fixed()),
        TracerProvider(span_limits=SpanLimits(max_span_attribute_length=10)),
    ):
        assert ServerSpanStarter(provider.get_tracer("otel_asgi_kit", "1")).root_maker() is None


def test_start_makes_roots_with_the_root_maker_once_asked() -> None:
    """``use_root_maker()``: ``start`` hands spans without parent to the compiled maker, children stay Python."""
    pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    starter = ServerSpanStarter(provider.get_tracer("otel_asgi_kit", "1"))
    made: list[str] = []
    assert starter.use_root_maker()
    maker = starter._root

    def counting(name: str, attributes: dict[str, Any]) -> Any:
        made.append(name)
        return maker(name, attributes)

    starter._root = counting
    root = starter.start("GET", None, _attrs())
    child = starter.start("POST", _parent(sampled=True), _attrs())
    assert made == ["GET"] and type(root) is type(child) is ServerSpan
    assert child.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    for span in (root, child):
        span.end()
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["GET", "POST"]


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "root-maker"])
def test_on_start_is_skipped_only_while_every_processor_starts_nothing(compiled: bool) -> None:
    """The kit's own processors (and the SDK's empty ones) do nothing in ``on_start``: the call is skipped.
    A processor added later that does something there gets every span's start, on both start paths."""
    from otel_asgi_kit.export.tail_sampling import TailSampler
    from otel_asgi_kit.pages.recorder import TraceRecorder
    from otel_asgi_kit.sdk.server_span import quiet_processors

    provider = TracerProvider()
    provider.add_span_processor(TailSampler([SimpleSpanProcessor(InMemorySpanExporter())], 1.0, 1.0))
    provider.add_span_processor(TraceRecorder())
    starter = ServerSpanStarter(provider.get_tracer("t"))
    assert quiet_processors(provider._active_span_processor) is not None
    if compiled:
        pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")
        assert starter.use_root_maker()
    starter.start("GET", None, _attrs()).end()
    seen: list[str] = []

    class Watch(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append(span.name)

    provider.add_span_processor(Watch(InMemorySpanExporter()))
    assert quiet_processors(provider._active_span_processor) is None
    starter.start("GET", None, _attrs()).end()
    starter.start("POST", _parent(True), _attrs()).end()
    assert seen == ["GET", "POST"]

    class Busy(TraceRecorder):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append("busy")

    other = TracerProvider()
    other.add_span_processor(Busy())
    assert quiet_processors(other._active_span_processor) is None  # a subclass that starts something


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "root-maker"])
def test_processors_added_after_the_starter_was_made_still_skip_on_start(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the kit starts up: the starter is made before the trace pages' recorder (and the tail sampler's
    processors) are added; the multi-processor's ``on_start`` is still skipped once they are all quiet,
    and called again as soon as one that starts something joins."""
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor

    from otel_asgi_kit.export.tail_sampling import TailSampler
    from otel_asgi_kit.pages.recorder import TraceRecorder

    calls: list[str] = []
    original = SynchronousMultiSpanProcessor.on_start

    def counting(self: Any, span: Any, parent_context: Any = None) -> None:
        calls.append(span.name)
        original(self, span, parent_context=parent_context)

    monkeypatch.setattr(SynchronousMultiSpanProcessor, "on_start", counting)
    provider = TracerProvider()
    starter = ServerSpanStarter(provider.get_tracer("t"))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(TailSampler([SimpleSpanProcessor(exporter)], 1.0, 1.0))
    provider.add_span_processor(TraceRecorder())
    if compiled:
        pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")
        assert starter.use_root_maker()
    starter.start("GET", None, _attrs()).end()
    starter.start("PUT", _parent(True), _attrs()).end()
    assert calls == []
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["GET", "PUT"]

    class Watch(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            calls.append("watch")

    provider.add_span_processor(Watch(InMemorySpanExporter()))
    starter.start("POST", None, _attrs()).end()
    starter.start("DELETE", _parent(True), _attrs()).end()
    assert calls == ["POST", "watch", "DELETE", "watch"]


def test_a_compiled_part_that_does_not_fit_leaves_the_python_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``otel-asgi-kit-accel`` build whose ``RootMaker`` takes other arguments (older or newer than the kit):
    no root maker, and spans still start (a failure here once stopped ``configure()`` altogether)."""
    _core = pytest.importorskip("otel_asgi_kit_accel._core", reason="otel-asgi-kit-accel is not installed")

    def old_maker(**kwargs: Any) -> Any:
        raise TypeError("function missing required argument 'multi' (pos 13)")

    monkeypatch.setattr(_core, "RootMaker", old_maker)
    starter = ServerSpanStarter(TracerProvider().get_tracer("t"))
    assert starter.root_maker() is None and not starter.use_root_maker()
    span = starter.start("GET", None, _attrs())
    assert span.is_recording() and span.name == "GET"
