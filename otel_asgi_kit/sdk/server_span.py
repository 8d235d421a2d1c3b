"""Starting the kit's SERVER span for less than the SDK's general ``start_span``.

``Tracer.start_span`` plus ``end`` cost about 20 µs here before any
attribute is added, and the per-attribute type checks about 1.5 µs for each
of the eight or so attributes of a server span (measured in-process while
writing this; ``benchmarks/middleware_micro.py`` shows the whole request).
The kit already knows the attributes are valid: it built them itself from
ASGI's bytes and ints. So ``ServerSpanStarter.start`` does
what ``Tracer.start_span`` does, in fewer steps:

* the sampler is asked through its public ``should_sample``, except for the
  default ``parentbased_always_on``, whose decision only reads the parent's
  sampled flag;
* it makes a ``ServerSpan``, a subclass of the SDK's ``Span``, from a
  prototype built once by the SDK's own constructor. The per-span fields are
  then set: the name, context, parent, start time, lock, attribute map and
  event and link lists;
* it calls ``on_start`` on the provider's span processors, like the SDK, unless
  none of them does anything there (``quiet_processors``: the SDK's empty
  ones and the kit's, checked against the provider's current tuple).

Ending the span is the SDK's own ``end``: processors and exporters see an SDK
``ReadableSpan``, and user code sees an SDK ``Span`` whose ``set_attribute``,
``add_event`` and ``record_exception`` are the SDK's.

The fast path relies on the SDK ``Span``'s field names. At start-up the
prototype's fields are checked against the set this module was written
for. If a future SDK adds, removes or renames one, ``fast`` is False and
every span goes through ``Tracer.start_span`` as before.
``tests/test_server_span.py`` fails then, and checks that both paths give
equal spans.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from time import time_ns
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export as sdk_export
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

_SPAN_FIELDS = frozenset(
    {
        "_name",
        "_context",
        "_kind",
        "_instrumentation_info",
        "_instrumentation_scope",
        "_parent",
        "_start_time",
        "_end_time",
        "_attributes",
        "_events",
        "_links",
        "_resource",
        "_status",
        "_sampler",
        "_trace_config",
        "_record_exception",
        "_set_status_on_exception",
        "_span_processor",
        "_limits",
        "_lock",
        "_record_end_metrics",
    }
)
_ATTRIBUTE_FIELDS = frozenset({"_dict", "maxlen", "dropped", "max_value_len", "_lock", "_immutable"})
_DEFAULT_SAMPLER = ParentBased(ALWAYS_ON).get_description()  # type: ignore[no-untyped-call]
_MOST_KIT_ATTRIBUTES = 32  # more than a server span ever gets from the kit (headers capture included)
# The SDK's ``on_start`` methods that do nothing: the base class's, and the simple and batch processors' own.
_QUIET_ON_START = frozenset(
    getattr(cls, "on_start", None)
    for cls in (sdk_trace.SpanProcessor, sdk_export.SimpleSpanProcessor, sdk_export.BatchSpanProcessor)
) - {None}


def starts_nothing(processor: Any) -> bool:
    """Whether ``processor.on_start`` does nothing: one of the SDK's empty ones, or a processor of the kit
    that says so (``starts_nothing()``, e.g. the trace pages' recorder)."""
    if getattr(type(processor), "on_start", None) in _QUIET_ON_START:
        return True
    says = getattr(processor, "starts_nothing", None)  # asked with this test for the processors behind it
    return bool(says(starts_nothing)) if callable(says) else False


def quiet_processors(multi: Any) -> tuple[Any, ...] | None:
    """The SDK multi-processor's tuple of processors when none of them does anything in ``on_start`` (the
    start then skips the call while that tuple is still the provider's), else ``None``."""
    processors = getattr(multi, "_span_processors", None)
    if type(multi) is not sdk_trace.SynchronousMultiSpanProcessor or type(processors) is not tuple:
        return None
    return processors if all(starts_nothing(p) for p in processors) else None


class ServerSpan(sdk_trace.Span):
    """An SDK ``Span``; only its construction and the kit's own attributes skip the checks.

    Two more savings, both invisible through the span API: the event and link
    lists are made on first use (most server spans have neither), and when
    the span ends, processors get the span itself rather than a copy (it can
    no longer change then: every setter checks ``_end_time``).
    """

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self._make_lists()
        super().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        self._make_lists()
        super().add_link(context, attributes)

    def _make_lists(self) -> None:
        if type(self._events) is tuple:
            with self._lock:
                if type(self._events) is tuple:
                    self._events = BoundedList(self._limits.max_events)
                    self._links = BoundedList(self._limits.max_links)

    def _readable_span(self) -> sdk_trace.ReadableSpan:
        return self

    def set_kit_attributes(self, attributes: dict[str, Any], name: str | None = None) -> None:
        """Attributes the kit built (str, int), and the final name: no type checks, one lock,
        and the SDK's rule that an ended span does not change."""
        bounded: Any = self._attributes
        with self._lock:
            if self._end_time is None:
                bounded._dict.update(attributes)
                if name is not None:
                    self._name = name


def _context_maker() -> Callable[[int, int, TraceFlags], SpanContext] | None:
    """A local, valid ``SpanContext`` without trace state, built as the tuple ``SpanContext.__new__``
    builds (its validation is for ids from outside; these are nonzero and in range by construction).
    ``None`` (the constructor then runs) if this SDK's ``SpanContext`` is laid out otherwise."""
    state = DEFAULT_TRACE_STATE

    def make(trace_id: int, span_id: int, flags: TraceFlags) -> SpanContext:
        return tuple.__new__(SpanContext, (trace_id, span_id, False, flags, state, True))

    try:
        flags = TraceFlags(1)
        same = make(1 << 100, 7, flags) == SpanContext(1 << 100, 7, False, flags)
    except Exception:  # an API whose SpanContext is not a 6-tuple: its constructor
        return None
    return make if same and type(make(1, 1, flags)) is SpanContext else None


def _trusted_attributes(prototype: BoundedAttributes, attributes: dict[str, Any]) -> BoundedAttributes:
    bounded = BoundedAttributes.__new__(BoundedAttributes)
    bounded.__dict__.update(prototype.__dict__)
    bounded._dict = attributes
    bounded._lock = threading.Lock()
    return bounded


class ServerSpanStarter:
    """Starts SERVER spans of ``tracer`` (an SDK tracer); ``fast`` says whether the short path applies."""

    def __init__(self, tracer: trace_api.Tracer) -> None:
        self._tracer: Any = tracer
        self._root: Any = None  # see use_root_maker
        self.fast = False
        # Whether a ServerSpan's get_span_context() is its ``_context`` field (checked on the prototype): then
        # the compiled request reads the field (``otel_asgi_kit_accel._core.fast_span_context``).
        self.context_is_field = False
        if isinstance(tracer, sdk_trace.Tracer) and callable(getattr(tracer, "_is_enabled", None)):
            try:
                self.fast = self._prepare(tracer)
            except Exception:  # an SDK that differs from the one this was written for: its own path
                self.fast = False

    def _prepare(self, tracer: Any) -> bool:
        limits = tracer._span_limits
        if limits.max_span_attribute_length is not None or (
            limits.max_span_attributes is not None and limits.max_span_attributes < _MOST_KIT_ATTRIBUTES
        ):
            return False  # truncation or eviction asked for: the SDK applies it
        prototype = ServerSpan(
            name="",
            context=SpanContext(1, 1, is_remote=False),
            sampler=tracer.sampler,
            resource=tracer.resource,
            span_processor=tracer.span_processor,
            kind=SpanKind.SERVER,
            instrumentation_info=tracer.instrumentation_info,
            limits=limits,
            instrumentation_scope=tracer._instrumentation_scope,
        )
        fields = vars(prototype)
        if set(fields) != _SPAN_FIELDS or set(vars(fields["_attributes"])) != _ATTRIBUTE_FIELDS:
            return False
        self.context_is_field = prototype.get_span_context() is fields["_context"]
        self._prototype = {k: v for k, v in fields.items() if k not in ("_lock", "_attributes", "_events", "_links")}
        self._attributes_prototype = fields["_attributes"]
        self._max_attributes = limits.max_span_attributes
        self._processor = tracer.span_processor
        # Processors are still being added when this runs (the trace pages' recorder, a user's own): the
        # tuple is checked again whenever the provider's changes (``_skips_on_start``).
        self._checked: Any = None
        self._quiet: tuple[Any, ...] | None = None
        self._sampler: Any = tracer.sampler
        self._default_sampler = self._sampler.get_description() == _DEFAULT_SAMPLER
        self._ids = tracer.id_generator
        self._random_ids = tracer.id_generator.is_trace_id_random()
        # The SDK's own id generator is ``random.getrandbits`` until nonzero: called directly.
        self._sdk_ids = type(self._ids) is RandomIdGenerator
        self._flags = {f: TraceFlags(f) for f in range(4)}  # sampled x random: the four a server span gets
        self._new_context = _context_maker()
        return True

    @property
    def tracer(self) -> Any:
        return self._tracer

    def span_field(self, name: str) -> Any:
        """A field every span of the short path starts with (from the prototype); ``None`` without it."""
        return self._prototype.get(name) if self.fast else None

    def root_maker(self) -> Any:
        """The compiled ``start`` for a span without parent (``otel_asgi_kit_accel._core.RootMaker``), or
        ``None``: only with this starter's short path, the default sampler, the SDK's id generator and the
        ``SpanContext`` layout it was written for (the same conditions as the Python lines it replaces)."""
        if not (self.fast and self._default_sampler and self._sdk_ids and self._new_context is not None):
            return None
        if not hasattr(getattr(self._tracer, "_tracer_config", None), "is_enabled"):
            return None
        try:
            from otel_asgi_kit_accel import _core
        except ImportError:
            return None
        maker = getattr(_core, "RootMaker", None)
        if maker is None:
            return None
        try:
            return self._root_maker(maker)
        except Exception:  # a build of otel-asgi-kit-accel older or newer than this kit: the Python start
            return None

    def _root_maker(self, maker: Any) -> Any:
        return maker(
            tracer=self._tracer,
            span_type=ServerSpan,
            prototype=dict(self._prototype),
            attributes_type=BoundedAttributes,
            attributes_prototype=dict(vars(self._attributes_prototype)),
            span_context_type=SpanContext,
            trace_state=DEFAULT_TRACE_STATE,
            flags=self._flags[TraceFlags.SAMPLED | (TraceFlags.RANDOM_TRACE_ID if self._random_ids else 0)],
            random=random,
            allocate_lock=threading.Lock,
            time_ns=time_ns,
            on_start=self._processor.on_start,
            multi=self._processor,
            quiet=self._quiet if self._skips_on_start() else None,  # the processors in place now
            fallback=self._start,
        )

    def use_root_maker(self) -> bool:
        """Let ``start`` make spans without parent with ``root_maker()`` (the adapters that call ``start``
        themselves: aiohttp, and ASGI on its Python path); True if it applies."""
        self._root = self.root_maker()
        return self._root is not None

    def start(self, name: str, parent: context_api.Context | None, attributes: dict[str, Any]) -> trace_api.Span:
        """A started SERVER span named ``name``, child of the span in ``parent`` (if any).

        ``attributes`` is taken over (not copied): the caller must not use it afterwards.
        """
        root = self._root
        if root is not None and parent is None:
            return root(name, attributes)  # type: ignore[no-any-return]
        return self._start(name, parent, attributes)

    def _start(self, name: str, parent: context_api.Context | None, attributes: dict[str, Any]) -> trace_api.Span:
        if not self.fast or not self._tracer._is_enabled():
            started: trace_api.Span = self._tracer.start_span(
                name, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
            return started
        parent_span = trace_api.get_current_span(parent).get_span_context() if parent is not None else None
        sdk_ids = self._sdk_ids
        if parent_span is not None and parent_span.is_valid:
            trace_id = parent_span.trace_id
            random_id = parent_span.trace_flags.random_trace_id
        else:
            parent_span = None
            trace_id = random.getrandbits(128) if sdk_ids else 0
            if not trace_id:
                trace_id = self._ids.generate_trace_id()
            random_id = self._random_ids
        sampler_attributes = None
        if self._default_sampler:
            recording = sampled = parent_span is None or parent_span.trace_flags.sampled
            trace_state = parent_span.trace_state if parent_span is not None else None
        else:
            result = self._sampler.should_sample(parent, trace_id, name, SpanKind.SERVER, attributes, ())
            recording, sampled = result.decision.is_recording(), result.decision.is_sampled()
            trace_state = result.trace_state
            if recording and result.attributes != attributes:
                sampler_attributes = result.attributes  # the span gets the sampler's attributes, as from the SDK
        flags = self._flags[(TraceFlags.SAMPLED if sampled else 0) | (TraceFlags.RANDOM_TRACE_ID if random_id else 0)]
        span_id = random.getrandbits(64) if sdk_ids else 0
        if not span_id:
            span_id = self._ids.generate_span_id()
        new_context = self._new_context
        if new_context is not None and trace_state is None:
            span_context = new_context(trace_id, span_id, flags)
        else:
            span_context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=trace_state)
        if not recording:
            return NonRecordingSpan(span_context)
        span: Any = object.__new__(ServerSpan)
        fields = span.__dict__
        fields.update(self._prototype)
        fields["_name"] = name
        fields["_context"] = span_context
        fields["_parent"] = parent_span
        fields["_lock"] = threading.Lock()
        fields["_attributes"] = (
            _trusted_attributes(self._attributes_prototype, attributes)
            if sampler_attributes is None
            else BoundedAttributes(self._max_attributes, sampler_attributes, immutable=False)
        )
        fields["_events"] = fields["_links"] = ()  # see ServerSpan._make_lists
        fields["_start_time"] = time_ns()
        if not self._skips_on_start():
            self._processor.on_start(span, parent_context=parent)
        return span  # type: ignore[no-any-return]

    def _skips_on_start(self) -> bool:
        """Whether the provider's span processors, as they are now, all do nothing in ``on_start``
        (checked again only when its tuple of processors is another one)."""
        processors = getattr(self._processor, "_span_processors", None)
        if processors is not self._checked:
            self._quiet = quiet_processors(self._processor)
            self._checked = processors
        return self._quiet is not None
