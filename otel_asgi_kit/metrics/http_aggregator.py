"""The per-request HTTP metrics, aggregated without the SDK's per-measurement work.

Recording through the SDK's instruments costs about 10 µs per measurement
here — attribute validation and a recursive attribute hash on every call —
and a request makes four. These four instruments have a fixed, allow-listed
attribute set that the middleware already caches as a tuple, so the kit
keeps them in plain cumulative counters keyed by that tuple (a dict lookup,
a ``bisect`` and a few additions per request) and hands them to the
exporters as ordinary OTel ``Metric`` objects at collection time, next to
what the SDK collected (``metrics.injector``). The result on the wire is the
same as the SDK's cumulative aggregation; delta temporality is not offered
for these four.

The duration histogram also keeps, per bucket, the last sampled request that
fell into it (its span context, value and end time): an exemplar, stored as
one tuple in the bucket's slot, so ``/metrics`` in OpenMetrics form can link
a latency bucket to a trace (``metrics.openmetrics``).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)
from opentelemetry.trace import SpanContext

from otel_asgi_kit.metrics.instruments import BYTE_BUCKETS
from otel_asgi_kit.sdk import accel

# method, route, status, error type, scheme
Key = tuple[str, str | None, int, str | None, str]


# value, span context of a sampled request, its end time (ns; 0: unknown)
ExemplarSlot = tuple[float, SpanContext, int]


class _Readout:
    """A histogram's data point: the readout shared by the Python ``Histogram`` and the compiled one."""

    if not TYPE_CHECKING:
        __slots__ = ()
    bounds: Sequence[float]
    buckets: list[int]
    sum: float
    min: float
    max: float
    exemplars: list[ExemplarSlot | None] | None

    def point(self, attributes: dict[str, str | int], start: int, now: int) -> HistogramDataPoint:
        buckets = list(self.buckets)
        return HistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=sum(buckets),  # from the buckets, so a scrape is always self-consistent
            sum=self.sum,
            bucket_counts=buckets,
            explicit_bounds=list(self.bounds),
            min=self.min,
            max=self.max,
            exemplars=self._exemplars(now) if self.exemplars is not None else [],
        )

    def _exemplars(self, now: int) -> list[Exemplar]:
        return [
            Exemplar({}, slot[0], slot[2] or now, slot[1].span_id, slot[1].trace_id)
            for slot in list(self.exemplars or ())
            if slot is not None
        ]


class Histogram(_Readout):
    __slots__ = ("bounds", "buckets", "exemplars", "max", "min", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.exemplars: list[ExemplarSlot | None] | None = None  # made on the first sampled request

    def record_sampled(self, value: float, span_context: SpanContext, end_ns: int) -> None:
        """``record``, keeping the request as its bucket's exemplar."""
        index = bisect_left(self.bounds, value)
        self.buckets[index] += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        exemplars = self.exemplars
        if exemplars is None:
            exemplars = self.exemplars = [None] * len(self.buckets)
        exemplars[index] = (value, span_context, end_ns)

    def record(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


try:
    from otel_asgi_kit_accel import _core as _accel_core
except ImportError:  # not installed: the Python histogram only
    _accel_core = None  # type: ignore[assignment]
_HistogramBase = getattr(_accel_core, "HistogramBase", None)


if _HistogramBase is not None:

    class CompiledHistogram(_HistogramBase, _Readout):  # type: ignore[misc,valid-type]
        """``Histogram`` recording in C (``otel_asgi_kit_accel``): the same counts, sum, min, max, exemplars."""

        __slots__ = ()


def histogram_type(compiled: bool | None = None) -> type[Histogram]:
    """The compiled histogram if ``compiled`` (default: the compiled parts are switched on, ``sdk.accel``)
    and installed, else the Python one."""
    if compiled is None:
        compiled = accel.compiled()
    if _HistogramBase is not None and compiled:
        return cast("type[Histogram]", CompiledHistogram)
    return Histogram


class _Series:
    __slots__ = ("attributes", "duration", "request_size", "response_size")

    def __init__(
        self, attributes: dict[str, str | int], duration: Sequence[float], histogram: type[Histogram] = Histogram
    ) -> None:
        self.attributes = attributes
        self.duration = histogram(duration)
        self.request_size = histogram(BYTE_BUCKETS)
        self.response_size = histogram(BYTE_BUCKETS)


class HttpServerMetrics:
    """Cumulative ``http.server.*`` metrics of this process."""

    def __init__(
        self, duration_bounds: Sequence[float], cardinality_limit: int = 2000, *, compiled: bool | None = None
    ) -> None:
        """``compiled``: count in the compiled histogram (default: when ``sdk.accel`` switched it on)."""
        self._histogram = histogram_type(compiled)
        self._duration_bounds = tuple(duration_bounds)
        self._series: dict[Key, _Series] = {}
        self._active: dict[tuple[str, str], int] = {}
        self._limit = cardinality_limit
        self._lock = threading.Lock()  # taken only to add a series, never per request
        self._start = time.time_ns()

    def request_started(self, method: str, scheme: str) -> None:
        key = (method, scheme)
        self._active[key] = self._active.get(key, 0) + 1

    def request_finished(
        self,
        key: Key,
        duration_s: float,
        request_bytes: int | None,
        response_bytes: int,
        active_key: tuple[str, str],
        sampled: SpanContext | None = None,
        end_ns: int = 0,
    ) -> None:
        """``sampled``: the span context of a sampled request, kept as its bucket's exemplar."""
        self._active[active_key] = self._active.get(active_key, 0) - 1
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        if sampled is None:
            series.duration.record(duration_s)
        else:
            series.duration.record_sampled(duration_s, sampled, end_ns)
        series.response_size.record(response_bytes)
        if request_bytes is not None:
            series.request_size.record(request_bytes)

    def _new_series(self, key: Key) -> _Series:
        with self._lock:
            series = self._series.get(key)
            if series is not None:
                return series
            if len(self._series) >= self._limit:
                # As the SDK does past its cardinality limit: one overflow series.
                overflow: Key = ("_OTHER", None, 0, "_OVERFLOW", "")
                series = self._series.get(overflow)
                if series is None:
                    series = _Series({"otel.metric.overflow": "true"}, self._duration_bounds, self._histogram)
                    self._series[overflow] = series
                return series
            method, route, status, error_type, scheme = key
            attributes: dict[str, str | int] = {"http.request.method": method, "url.scheme": scheme}
            if status:
                attributes["http.response.status_code"] = status
            if route is not None:
                attributes["http.route"] = route
            if error_type is not None:
                attributes["error.type"] = error_type
            series = _Series(attributes, self._duration_bounds, self._histogram)
            self._series[key] = series
            return series

    def collect(self) -> list[Metric]:
        now = time.time_ns()
        start = self._start
        series = list(self._series.values())
        if not series and not self._active:
            return []
        temporality = AggregationTemporality.CUMULATIVE
        active = [
            NumberDataPoint({"http.request.method": m, "url.scheme": s}, start, now, v)
            for (m, s), v in list(self._active.items())
        ]
        metrics = [
            Metric(
                "http.server.request.duration",
                "Duration of HTTP server requests.",
                "s",
                HistogramData([s.duration.point(s.attributes, start, now) for s in series], temporality),
            ),
            Metric(
                "http.server.active_requests",
                "Number of active HTTP server requests.",
                "{request}",
                Sum(active, temporality, is_monotonic=False),
            ),
            Metric(
                "http.server.response.body.size",
                "Size of HTTP server response bodies.",
                "By",
                HistogramData([s.response_size.point(s.attributes, start, now) for s in series], temporality),
            ),
        ]
        sized = [s for s in series if sum(s.request_size.buckets)]
        if sized:
            metrics.append(
                Metric(
                    "http.server.request.body.size",
                    "Size of HTTP server request bodies.",
                    "By",
                    HistogramData([s.request_size.point(s.attributes, start, now) for s in sized], temporality),
                )
            )
        return metrics
