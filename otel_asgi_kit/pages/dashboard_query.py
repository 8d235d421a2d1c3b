"""``/kit/dashboard.json``: the sampled history over a window, in chart-sized steps.

Parameters (all optional): ``window`` (``5m``, ``15m`` or ``60m``), ``points``
(chart points per series, 10 to 720) and ``route`` (one route's name, as listed
in ``routes``). A bad one is answered with ``BadParameterError`` → 400 naming it.
Latency quantiles are estimated from the duration buckets summed over each
step, as Prometheus' ``histogram_quantile`` does (linear within a bucket).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from otel_asgi_kit.pages.dashboard_sampler import Interval

WINDOWS = {"5m": 300, "15m": 900, "60m": 3600}
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
_PARAMS = ("window", "points", "route")


class BadParameterError(ValueError):
    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"parameter {name}={value!r}: expected {expected}")
        self.name = name


def parse_query(query: str, routes: Sequence[str]) -> tuple[int, int, str | None]:
    """``(window seconds, points, route or None)`` from the query string."""
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=10)
    except ValueError as exc:
        raise BadParameterError("query", query[:100], "name=value pairs joined by &") from exc
    for name, values in params.items():
        if name not in _PARAMS:
            raise BadParameterError(name, values[0][:100], f"no such parameter (known: {', '.join(_PARAMS)})")
        if len(values) > 1:
            raise BadParameterError(name, values[1][:100], "one value")
    window_text = params.get("window", ["5m"])[0]
    if window_text not in WINDOWS:
        raise BadParameterError("window", window_text[:100], f"one of {', '.join(WINDOWS)}")
    points_text = params.get("points", ["120"])[0]
    if not points_text.isdigit() or not 10 <= int(points_text) <= 720:
        raise BadParameterError("points", points_text[:100], "a whole number from 10 to 720")
    route = params.get("route", [None])[0]
    if route is not None and route not in routes:
        raise BadParameterError("route", route[:200], "a route listed in `routes` of /kit/dashboard.json")
    return WINDOWS[window_text], int(points_text), route


def quantile(q: float, bounds: Sequence[float], buckets: Sequence[int]) -> float | None:
    """The ``q`` quantile (seconds) of a bucketed distribution; ``None`` without observations."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1] if bounds else None  # the +Inf bucket: its lower edge, as Prometheus does
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1] if bounds else None


def build(
    intervals: list[Interval],
    routes: list[str],
    bounds: list[float],
    lag_bounds: list[float],
    now: float,
    window_s: int,
    points: int,
    interval_s: float,
    route: str | None,
) -> dict[str, Any]:
    """The JSON document of the dashboard for one window."""
    step = max(interval_s, math.ceil(window_s / points / interval_s) * interval_s)
    count = max(1, math.ceil(window_s / step))
    start = now - count * step
    steps: list[list[Interval]] = [[] for _ in range(count)]
    for item in intervals:
        if item.end > start:
            # step k holds the intervals that ended in (start + k*step, start + (k+1)*step]
            steps[min(count - 1, math.ceil((item.end - start) / step) - 1)].append(item)
    shown = [route] if route is not None else routes
    times = [round(start + (i + 1) * step, 3) for i in range(count)]
    return {
        "window_s": window_s,
        "step_s": step,
        "interval_s": interval_s,
        "now": now,
        "bounds": bounds,
        "routes": routes,
        "t": times,
        "overall": _http(steps, step, None, bounds),
        "by_route": {name: _http(steps, step, name, bounds) for name in shown},
        "websocket": {
            "active": [_last(s, lambda i: i.ws_active) for s in steps],
            "messages": [_rate(s, step, lambda i: i.ws_messages) for s in steps],
        },
        "loop": {
            "lag_p99_ms": [_ms(quantile(0.99, lag_bounds, _sum_lag(s))) if s else None for s in steps],
            "blocked": [sum(i.blocked for i in s) if s else None for s in steps],
        },
        "process": _process(steps, step),
    }


def _http(steps: list[list[Interval]], step: float, route: str | None, bounds: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"rate": [], "errors": [], **{name: [] for name, _ in QUANTILES}}
    window_buckets = [0] * (len(bounds) + 1)
    requests = failed = 0
    for group in steps:
        buckets = [0] * (len(bounds) + 1)
        n = errors = 0
        for item in group:
            for name, delta in item.routes.items():
                if route is not None and name != route:
                    continue
                n += delta.requests
                errors += delta.failed
                if len(delta.buckets) == len(buckets):
                    buckets = [a + b for a, b in zip(buckets, delta.buckets, strict=True)]
        requests += n
        failed += errors
        window_buckets = [a + b for a, b in zip(window_buckets, buckets, strict=True)]
        seconds = sum(i.seconds for i in group) or step
        out["rate"].append(round(n / seconds, 3) if group else None)
        out["errors"].append(round(errors / seconds, 3) if group else None)
        for name, q in QUANTILES:
            out[name].append(_ms(quantile(q, bounds, buckets)))
    out["window"] = {
        "requests": requests,
        "failed": failed,
        "error_ratio": round(failed / requests, 4) if requests else None,
        **{name: _ms(quantile(q, bounds, window_buckets)) for name, q in QUANTILES},
    }
    return out


def _process(steps: list[list[Interval]], step: float) -> dict[str, Any]:
    pids = sorted({pid for group in steps for item in group for pid in item.workers})
    return {
        "cpu_percent": [_rate(s, step, lambda i: i.cpu_s * 100) for s in steps],
        "memory_mb": [_last(s, lambda i: i.memory / 1e6) for s in steps],
        "workers": {
            str(pid): {
                "cpu_percent": [_rate(s, step, lambda i, p=pid: i.workers.get(p, (0.0, 0.0))[0] * 100) for s in steps],
                "memory_mb": [_last(s, lambda i, p=pid: i.workers.get(p, (0.0, 0.0))[1] / 1e6) for s in steps],
            }
            for pid in pids
        },
    }


def _sum_lag(group: list[Interval]) -> list[int]:
    total: list[int] = []
    for item in group:
        total = [a + b for a, b in zip(total or [0] * len(item.lag_buckets), item.lag_buckets, strict=False)]
    return total


def _rate(group: list[Interval], step: float, value: Any) -> float | None:
    """Per second over the intervals sampled in the step (the edges of a window are partly covered)."""
    return round(sum(value(i) for i in group) / (sum(i.seconds for i in group) or step), 3) if group else None


def _last(group: list[Interval], value: Any) -> float | None:
    return round(float(value(group[-1])), 3) if group else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
