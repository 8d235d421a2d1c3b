"""Trace context in and out of a request: the client's parent, and the ``traceresponse`` value."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span

from otel_asgi_kit.asgi.headers import GETTER


def trace_header_value(span: Span) -> bytes:
    """The W3C ``traceresponse`` value naming ``span``."""
    ctx = span.get_span_context()
    return b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, ctx.trace_flags)


def extract_parent(
    propagator: TextMapPropagator, fields: Collection[bytes], headers: Sequence[tuple[bytes, bytes]]
) -> Context | None:
    """The client's trace context; the propagator runs only when a header can carry one."""
    for name, _ in headers:
        if name in fields:
            return propagator.extract(headers, getter=GETTER)
    return None
