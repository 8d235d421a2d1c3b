"""Instrument names, units and buckets.

HTTP metric attributes are only method, route template, status code, error
type and scheme, so series stay bounded whatever clients send: unknown
methods become ``_OTHER``, unmatched paths have no route.
"""

from __future__ import annotations

from opentelemetry.metrics import Meter

BYTE_BUCKETS = (0, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)


class HttpServerInstruments:
    """SDK instruments for rare HTTP events. The per-request ones live in ``http_aggregator``."""

    def __init__(self, meter: Meter) -> None:
        self.auth_failures = meter.create_counter(
            "http.server.auth.failures",
            unit="{request}",
            description="Requests answered 401 or 403, by route.",
        )


CONNECTION_BUCKETS = (0.1, 1, 5, 15, 30, 60, 300, 600, 1800, 3600)
