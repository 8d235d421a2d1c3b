"""Ending the kit's SERVER span and running the kit's span processors without their Python steps.

``compiled_ender`` builds ``otel_asgi_kit_accel._core.Ender``: what
``Span.end`` does (the end time and the attribute map made read-only under
the span's lock, the SDK's span-end metrics hook), then each processor's
``on_end``, written in C for the processors the kit knows. Each of them
describes its ``on_end`` as a step (``compiled_step``):
``EncodingSpanProcessor`` (the compiled writer's bytes behind the group
prefix, queued as the batch processor's ``emit`` queues them while that is
all ``emit`` would do, else by ``emit`` itself), ``TraceRecorder`` and
``TailSampler`` (the decision for a local root without waiting children;
every other span goes to its Python code). Any other processor's ``on_end``
is called as the SDK calls it.

The encoding step needs the compiled writers switched on (``sdk.accel``);
without them that processor's ``on_end`` is called. Built only with the
starter's short path (the span fields it was written for), the SDK's
``SynchronousMultiSpanProcessor`` and no processor with an ``_on_ending``
of its own (the SDK's empty ones are known). Per span the ender checks that
the span is a ``ServerSpan`` of this provider whose processor tuple is still
the one it was built for (adding a processor makes a new tuple), not ended,
with the resource and scope the prefix belongs to; anything else, and a
span whose lock another thread holds, ends with ``span.end()``.
``tests/test_span_end.py`` checks both give the same bytes, pages and
decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.sdk.encoded import GROUPS
from otel_asgi_kit.sdk.server_span import ServerSpan, ServerSpanStarter

try:
    from otel_asgi_kit_accel import _core
except ImportError:  # not installed
    _core = None  # type: ignore[assignment]


# The SDK's ``_on_ending`` methods that do nothing: the base class's, and the simple and batch processors' own.
_NOTHING_ON_ENDING = frozenset(
    getattr(cls, "_on_ending", None) for cls in (SpanProcessor, SimpleSpanProcessor, BatchSpanProcessor)
) - {None}


def _steps(processors: Sequence[Any], prefix: bytes) -> tuple[Any, ...]:
    steps: list[tuple[Any, ...]] = []
    for processor in processors:
        describe = getattr(processor, "compiled_step", None)
        step = describe(lambda inner: _steps(inner, prefix), prefix) if describe is not None else None
        steps.append(step if step is not None else (3, processor.on_end))
    return tuple(steps)


def compiled_ender(starter: ServerSpanStarter) -> Any:
    """``ender(span, end_ns)`` for the spans of ``starter``, or ``None`` (``span.end(end_ns)`` then)."""
    try:
        return _build(starter)
    except Exception as exc:  # processors or an SDK this build does not fit: span.end()
        report_once("setting up the compiled span end", exc)
        return None


def fits(starter: ServerSpanStarter) -> bool:
    """Whether the SDK and the provider's processors are what the compiled ender was written for (whether or
    not ``otel-asgi-kit-accel`` is installed: ``doctor`` lists this beside the SDK's other shortcuts)."""
    return _parts(starter) is not None


def _parts(starter: ServerSpanStarter) -> tuple[Any, tuple[Any, ...], Any, Any, bytes] | None:
    if not starter.fast:
        return None
    multi = getattr(starter.tracer, "span_processor", None)
    if type(multi) is not SynchronousMultiSpanProcessor:
        return None
    processors = getattr(multi, "_span_processors", None)
    if type(processors) is not tuple or any(
        getattr(type(p), "_on_ending", None) not in _NOTHING_ON_ENDING for p in processors
    ):
        return None
    resource, scope = starter.span_field("_resource"), starter.span_field("_instrumentation_scope")
    prefix = GROUPS.prefix(resource, scope)
    if prefix is None:
        return None
    return multi, processors, resource, scope, prefix


def _build(starter: ServerSpanStarter) -> Any:
    parts = _parts(starter) if _core is not None and hasattr(_core, "Ender") else None
    if parts is None:
        return None
    multi, processors, resource, scope, prefix = parts
    return _core.Ender(
        span_type=ServerSpan,
        multi=multi,
        processors=processors,
        resource=resource,
        scope=scope,
        steps=_steps(processors, prefix),
    )
