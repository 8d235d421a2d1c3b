"""Trace context in and out of a request: the client's parent, and the ``traceresponse`` value."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace import Span

RawHeaders = Sequence[tuple[bytes, bytes]]


class RawHeaderGetter(Getter[RawHeaders]):
    """Reads a raw header list with lowercased names (ASGI's); repeated headers keep their order."""

    def get(self, carrier: RawHeaders, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == wanted]
        if not values:
            return None
        if wanted == b"baggage":
            # The baggage propagator reads only the first value.
            return [",".join(values)]
        return values

    def keys(self, carrier: RawHeaders) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


RAW_GETTER = RawHeaderGetter()


def trace_header_value(span: Span) -> bytes:
    """The W3C ``traceresponse`` value naming ``span``."""
    ctx = span.get_span_context()
    return b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, ctx.trace_flags)


def extract_parent(propagator: TextMapPropagator, fields: Collection[bytes], headers: RawHeaders) -> Context | None:
    """The client's trace context; the propagator runs only when a header can carry one."""
    for name, _ in headers:
        if name in fields:
            return propagator.extract(headers, getter=RAW_GETTER)
    return None
