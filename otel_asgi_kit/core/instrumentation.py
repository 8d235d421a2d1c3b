"""``Instrumentation``: everything the request core needs, decided once from settings and providers."""

from __future__ import annotations

import re
from typing import Any

from opentelemetry import propagate
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from otel_asgi_kit.core.client_address import TrustedNetworks
from otel_asgi_kit.core.headers import HeaderCapture
from otel_asgi_kit.export.tail_sampling import decisions_of
from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
from otel_asgi_kit.metrics.instruments import HttpServerInstruments
from otel_asgi_kit.metrics.websocket_aggregator import WebSocketMetrics
from otel_asgi_kit.redaction import QueryRedactor
from otel_asgi_kit.sdk.server_span import ServerSpanStarter
from otel_asgi_kit.settings import Settings
from otel_asgi_kit.version import SCOPE_NAME, SCOPE_VERSION

SCHEMA_URL = "https://opentelemetry.io/schemas/1.30.0"
NOT_DECIDED: Any = object()


class Instrumentation:
    """What the request path needs, built once from settings and providers."""

    def __init__(
        self,
        settings: Settings,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider | None,
        http_metrics: HttpServerMetrics | None = None,
        websocket_metrics: WebSocketMetrics | None = None,
    ) -> None:
        self.tracer = tracer_provider.get_tracer(SCOPE_NAME, SCOPE_VERSION, schema_url=SCHEMA_URL)
        self.server_spans = ServerSpanStarter(self.tracer)
        meter = (
            meter_provider.get_meter(SCOPE_NAME, SCOPE_VERSION, schema_url=SCHEMA_URL)
            if meter_provider is not None
            else None
        )
        self.instruments = HttpServerInstruments(meter) if meter is not None else None
        self.http: HttpServerMetrics | None = None
        self.websocket: WebSocketMetrics | None = None
        if meter is not None:
            self.http = http_metrics or HttpServerMetrics(settings.duration_buckets)
            self.websocket = websocket_metrics or WebSocketMetrics()
        patterns = settings.excluded_urls
        self.excluded = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self.trace_header_name = settings.trace_response_header
        self.trace_header = settings.trace_response_header.encode("latin-1") or None
        self.request_headers = HeaderCapture("request", settings.capture_request_headers, settings.sanitize_fields)
        self.response_headers = HeaderCapture("response", settings.capture_response_headers, settings.sanitize_fields)
        self.query = QueryRedactor(settings.redact_query_params)
        self.trusted_proxies = TrustedNetworks(settings.trusted_proxies)
        self.propagator = propagate.get_global_textmap()
        self.propagation_fields = frozenset(f.encode("latin-1") for f in self.propagator.fields)
        self.propagation_names = frozenset(self.propagator.fields)
        # The ASGI adapter's compiled request path (``asgi.fast``), decided on the first request.
        self.asgi_core: Any = NOT_DECIDED
        # ``end_span(span, end_ns)``: the compiled span end (``sdk.span_end``) when it applies, else None.
        self.end_span: Any = None
        # The tail sampler's decisions (trace id -> kept), when it runs: exemplars only of kept traces.
        self.tail_decisions: dict[int, bool] | None = decisions_of(tracer_provider)

    def is_excluded(self, path: str) -> bool:
        return self.excluded is not None and self.excluded.search(path) is not None
