"""The kit's shortcuts around the SDK, what each relies on, and whether each is on here."""

from __future__ import annotations

from collections.abc import Callable

# shortcut -> the private names it uses (module-qualified); documentation and a test checklist.
RELIED_ON: dict[str, tuple[str, ...]] = {
    "server span start": (
        "opentelemetry.sdk.trace.Tracer._is_enabled",
        "SDK Tracer instance fields: _span_limits, _instrumentation_scope",
        "opentelemetry.sdk.trace.Span fields (_name, _context, _attributes, _events, _links, _lock, ...)",
        "opentelemetry.attributes.BoundedAttributes fields (_dict, _lock, ...)",
    ),
    "span encoding": (
        "opentelemetry.exporter.otlp.proto.http._common._is_request_too_large",
        "opentelemetry.exporter.otlp.proto.http._common.RequestPayloadTooLargeError",
        "OTLPSpanExporter._client, ._metrics, ._max_request_size, ._shutdown",
    ),
    "log encoding": (
        "opentelemetry.exporter.otlp.proto.http._common._is_request_too_large",
        "OTLPLogExporter._client, ._metrics, ._max_request_size, ._shutdown",
    ),
    "log batching": ("BatchLogRecordProcessor instance field: _batch_processor",),
    "spans encoded at end": ("BatchSpanProcessor instance field: _batch_processor (its emit)",),
    "log records encoded directly": (
        "LoggerProvider instance field: _multi_log_record_processor (its _log_record_processors tuple)",
        "opentelemetry.sdk._logs.Logger._is_enabled",
        "LoggerProvider instance field: _resource (the compiled path compares it by identity)",
        "BatchProcessor (the batch log processor's _batch_processor) fields _queue, _pid, _shutdown, ...",
    ),
    "current span read directly": (
        "opentelemetry.context._RUNTIME_CONTEXT._current_context",
        "opentelemetry.trace.propagation._SPAN_KEY",
        "SpanContext's tuple layout (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid)",
    ),
    "environment read once per exporter": (
        "the OTLP/HTTP client's _transport._session (a requests.Session) and _endpoint",
    ),
    "collector POSTs over http.client": (
        "opentelemetry.exporter.http.transport._base.BaseHTTPTransport / BaseHTTPResult",
        "the OTLP/HTTP client's _transport, _endpoint and its requests session's proxies, auth, verify, cert",
    ),
    "server span end in C": (
        "SynchronousMultiSpanProcessor instance field: _span_processors (a tuple, new when one is added)",
        "opentelemetry.sdk.trace.SpanProcessor._on_ending",
        "SDK Span fields _end_time, _start_time, _lock, _span_processor, _record_end_metrics, _resource, ...",
        "BatchProcessor (the batch span processor's _batch_processor) fields _queue, _pid, _shutdown, ...",
    ),
    "exemplars of kept traces only": ("TracerProvider instance field: _active_span_processor (its _span_processors)",),
    "metric reader": ("opentelemetry.sdk.metrics.export.PeriodicExportingMetricReader._receive_metrics",),
    "prometheus merge": ("opentelemetry.exporter.prometheus.PrometheusMetricReader._receive_metrics",),
}


def _server_span() -> bool:
    from opentelemetry.sdk.trace import TracerProvider

    from otel_asgi_kit.sdk.server_span import ServerSpanStarter

    return ServerSpanStarter(TracerProvider().get_tracer("doctor")).fast


def _encoders() -> tuple[bool, bool, bool, bool]:
    from otel_asgi_kit.sdk.otlp_http import DirectLogExporter, DirectSpanExporter

    spans = DirectSpanExporter(endpoint="http://127.0.0.1:4318/v1/traces")
    logs = DirectLogExporter(endpoint="http://127.0.0.1:4318/v1/logs")
    found = (
        spans.direct,
        logs.direct,
        spans.environment_read_once and logs.environment_read_once,
        spans.http_client_transport and logs.http_client_transport,
    )
    spans.shutdown()
    logs.shutdown()
    return found


def _log_batching() -> bool:
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter

    processor = BatchLogRecordProcessor(ConsoleLogRecordExporter())
    try:
        return hasattr(processor, "_batch_processor")
    finally:
        processor.shutdown()  # type: ignore[no-untyped-call]


def _spans_encoded_at_end() -> bool:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    from otel_asgi_kit.sdk.encoded import EncodingSpanProcessor

    processor = EncodingSpanProcessor(ConsoleSpanExporter())
    try:
        return processor._emit is not None
    finally:
        processor.shutdown()  # type: ignore[no-untyped-call]


def _logs_encoded_directly() -> bool:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

    from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
    from otel_asgi_kit.sdk.encoded import EncodingLogRecordProcessor

    provider = LoggerProvider()
    processor = EncodingLogRecordProcessor(ConsoleLogRecordExporter())
    provider.add_log_record_processor(processor)
    try:
        handler = OtlpLogHandler(provider)
        return handler._direct() is not None and callable(getattr(provider.get_logger("doctor"), "_is_enabled", None))
    finally:
        provider.shutdown()


def _span_end() -> bool:
    """Whether what the compiled span end relies on is there: the SDK's span fields and processor tuple, and
    the batch processor's fields and ``emit`` (``otel-asgi-kit-accel`` itself: "compiled parts")."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    from otel_asgi_kit.sdk import span_end
    from otel_asgi_kit.sdk.encoded import EncodingSpanProcessor, _queue_of
    from otel_asgi_kit.sdk.server_span import ServerSpanStarter

    provider = TracerProvider()
    processor = EncodingSpanProcessor(ConsoleSpanExporter())
    provider.add_span_processor(processor)
    try:
        return span_end.fits(ServerSpanStarter(provider.get_tracer("doctor"))) and _queue_of(processor) is not None
    finally:
        provider.shutdown()


def _tail_decisions() -> bool:
    """Whether the tail sampler's decisions are found on the provider (exemplars then skip dropped traces)."""
    from opentelemetry.sdk.trace import TracerProvider

    from otel_asgi_kit.export.tail_sampling import TailSampler, decisions_of

    provider = TracerProvider()
    provider.add_span_processor(TailSampler([], 0.5, 1.0))
    return decisions_of(provider) is not None


def _current_span() -> bool:
    from otel_asgi_kit.sdk import current

    return current.FAST


def _metric_reader() -> bool:
    from otel_asgi_kit.sdk.periodic_reader import fast

    return fast()


def _prometheus_merge() -> bool:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    return callable(getattr(PrometheusMetricReader, "_receive_metrics", None))


def status() -> dict[str, bool]:
    """Each shortcut and whether it applies to the installed SDK and exporter releases."""
    spans, logs, environment, transport = _encoders()
    checks: dict[str, Callable[[], bool]] = {
        "server span start": _server_span,
        "log batching": _log_batching,
        "spans encoded at end": _spans_encoded_at_end,
        "log records encoded directly": _logs_encoded_directly,
        "server span end in C": _span_end,
        "exemplars of kept traces only": _tail_decisions,
        "current span read directly": _current_span,
        "metric reader": _metric_reader,
        "prometheus merge": _prometheus_merge,
    }
    found = {name: check() for name, check in checks.items()}
    found["span encoding"] = spans
    found["log encoding"] = logs
    found["environment read once per exporter"] = environment
    found["collector POSTs over http.client"] = transport
    return {name: found[name] for name in RELIED_ON}
