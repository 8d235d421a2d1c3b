"""A periodic metric reader that exports on every tick, even when the SDK itself collected nothing.

The SDK's ``PeriodicExportingMetricReader`` skips the export when none of its
own instruments has data, which would also skip the kit's aggregates that
the exporters add (``metrics.injector``). This overrides the private
``_receive_metrics`` to notice whether the SDK delivered anything. When the
installed SDK lacks it, ``make_periodic_reader`` returns the stock reader
(the kit's aggregates then wait for the SDK's first data point) and says so
once.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricsData, PeriodicExportingMetricReader

from otel_asgi_kit.failsafe import warn


def fast() -> bool:
    """Whether the SDK's reader itself defines the private method this shortcut overrides."""
    return "_receive_metrics" in vars(PeriodicExportingMetricReader)


class KitPeriodicReader(PeriodicExportingMetricReader):
    _received = False

    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]
        self._received = False
        super().collect(timeout_millis)
        if not self._received and getattr(self, "_collect", None) is not None:
            self._receive_metrics(MetricsData([]), timeout_millis)

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._received = True
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)


_warned = False


def make_periodic_reader(exporter: MetricExporter, **kwargs: Any) -> PeriodicExportingMetricReader:
    global _warned
    if fast():
        return KitPeriodicReader(exporter, **kwargs)
    if not _warned:
        _warned = True
        warn(
            "the installed opentelemetry-sdk's PeriodicExportingMetricReader has no _receive_metrics; "
            "using it as is (the kit's HTTP metrics are exported once the SDK has data of its own)"
        )
    return PeriodicExportingMetricReader(exporter, **kwargs)
