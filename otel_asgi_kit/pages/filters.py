"""Filters of the trace pages, so a dashboard click lands on the matching requests.

``/kit/traces?route=GET%20/items/{id}&min_ms=250`` lists the held requests of
that route at least that slow; ``&failed=1`` only the failed ones. Held means
the recent, slowest-per-route and failed buffers together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from urllib.parse import parse_qs

from opentelemetry.sdk.trace import ReadableSpan

from otel_asgi_kit.pages.recorder import Snapshot, duration_ns, is_failed

_PARAMS = ("trace", "route", "failed", "min_ms")


@dataclass(frozen=True)
class TraceFilter:
    route: str | None = None
    failed: bool = False
    min_ms: float = 0.0

    @property
    def active(self) -> bool:
        return self.route is not None or self.failed or self.min_ms > 0

    def describe(self) -> str:
        parts = [f"route {self.route}"] if self.route is not None else []
        if self.failed:
            parts.append("failed")
        if self.min_ms > 0:
            parts.append(f"at least {self.min_ms:g} ms")
        return ", ".join(parts)

    def matches(self, span: ReadableSpan) -> bool:
        if self.route is not None and span.name != self.route:
            return False
        if self.failed and not is_failed(span):
            return False
        return duration_ns(span) >= self.min_ms * 1e6


def parse_filter(query: str) -> TraceFilter:
    """The filter in ``query``; ``ValueError`` naming the parameter when a value is not usable."""
    params = parse_qs(query, keep_blank_values=True)
    for name in params:
        if name not in _PARAMS:
            raise ValueError(f"parameter {name!r} is not known (known: {', '.join(_PARAMS)})")
    failed_text = params.get("failed", ["0"])[0]
    if failed_text not in ("0", "1", "true", "false"):
        raise ValueError(f"parameter failed={failed_text[:50]!r}: expected 1 or 0")
    min_text = params.get("min_ms", ["0"])[0]
    try:
        min_ms = float(min_text)
    except ValueError:
        min_ms = -1.0
    if not math.isfinite(min_ms) or not 0 <= min_ms <= 86_400_000:
        raise ValueError(f"parameter min_ms={min_text[:50]!r}: expected milliseconds from 0 to 86400000")
    route = params.get("route", [None])[0]
    return TraceFilter(route=route, failed=failed_text in ("1", "true"), min_ms=min_ms)


def apply(snapshot: Snapshot, keep: TraceFilter) -> Snapshot:
    """The snapshot with only matching routes and requests; ``recent`` gathers every matching held request."""
    held: dict[int, ReadableSpan] = {}
    for span in [*snapshot.recent, *snapshot.failed, *(s for r in snapshot.routes for s in r.slowest)]:
        if span.context is not None and keep.matches(span):
            held.setdefault(span.context.span_id, span)
    return replace(
        snapshot,
        routes=[r for r in snapshot.routes if keep.route is None or r.name == keep.route],
        recent=sorted(held.values(), key=lambda s: s.start_time or 0, reverse=True),
        failed=[s for s in snapshot.failed if keep.matches(s)],
    )
