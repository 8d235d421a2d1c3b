"""HTTP server instruments: names, units, buckets and the attribute allow-list.

Metric attributes are only method, route template, status code, error type
and scheme, so series stay bounded whatever clients send: unknown methods
become ``_OTHER``, unmatched paths have no route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from opentelemetry.metrics import Meter

from otel_asgi_kit.version import __version__

BYTE_BUCKETS = (0, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
_MAX_CACHED = 4096

Attributes = Mapping[str, str | int]


class HttpServerInstruments:
    """Records one finished request; attribute sets are built once and reused."""

    def __init__(self, meter: Meter, duration_buckets: Sequence[float]) -> None:
        self.duration = meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=list(duration_buckets),
        )
        self.active = meter.create_up_down_counter(
            "http.server.active_requests",
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        self.request_size = meter.create_histogram(
            "http.server.request.body.size",
            unit="By",
            description="Size of HTTP server request bodies.",
            explicit_bucket_boundaries_advisory=list(BYTE_BUCKETS),
        )
        self.response_size = meter.create_histogram(
            "http.server.response.body.size",
            unit="By",
            description="Size of HTTP server response bodies.",
            explicit_bucket_boundaries_advisory=list(BYTE_BUCKETS),
        )
        self.auth_failures = meter.create_counter(
            "http.server.auth.failures",
            unit="{request}",
            description="Requests answered 401 or 403, by route.",
        )
        self._active_attrs: dict[tuple[str, str], Attributes] = {}
        self._final_attrs: dict[tuple[str, str | None, int, str | None, str], Attributes] = {}

    def active_attributes(self, method: str, scheme: str) -> Attributes:
        key = (method, scheme)
        attrs = self._active_attrs.get(key)
        if attrs is None:
            attrs = MappingProxyType({"http.request.method": method, "url.scheme": scheme})
            if len(self._active_attrs) < _MAX_CACHED:
                self._active_attrs[key] = attrs
        return attrs

    def final_attributes(
        self, method: str, route: str | None, status: int, error_type: str | None, scheme: str
    ) -> Attributes:
        key = (method, route, status, error_type, scheme)
        attrs = self._final_attrs.get(key)
        if attrs is None:
            built: dict[str, str | int] = {"http.request.method": method, "url.scheme": scheme}
            if status:
                built["http.response.status_code"] = status
            if route is not None:
                built["http.route"] = route
            if error_type is not None:
                built["error.type"] = error_type
            attrs = MappingProxyType(built)
            if len(self._final_attrs) < _MAX_CACHED:
                self._final_attrs[key] = attrs
        return attrs


SCOPE_NAME = "otel_asgi_kit"
SCOPE_VERSION = __version__


CONNECTION_BUCKETS = (0.1, 1, 5, 15, 30, 60, 300, 600, 1800, 3600)


class WebSocketInstruments:
    """Per connection: active count, duration, and message/byte totals by direction (recorded at close)."""

    def __init__(self, meter: Meter) -> None:
        self.active = meter.create_up_down_counter(
            "websocket.server.active_connections",
            unit="{connection}",
            description="Open WebSocket connections.",
        )
        self.duration = meter.create_histogram(
            "websocket.server.connection.duration",
            unit="s",
            description="How long WebSocket connections stayed open.",
            explicit_bucket_boundaries_advisory=list(CONNECTION_BUCKETS),
        )
        self.messages = meter.create_counter(
            "websocket.server.messages",
            unit="{message}",
            description="WebSocket messages, by direction.",
        )
        self.bytes = meter.create_counter(
            "websocket.server.message.bytes",
            unit="By",
            description="WebSocket message payload bytes, by direction.",
        )
