"""OTLP and console exporters, built from settings (never from the SDK's own env parsing)."""

from __future__ import annotations

import logging
from typing import Any

from otel_asgi_kit.settings import OtlpTarget

_PACKAGES = {
    # Spans and logs: the stock exporters with the kit's encoder (see sdk.otlp_http).
    ("http/protobuf", "traces"): ("otel_asgi_kit.sdk.otlp_http", "DirectSpanExporter"),
    ("http/protobuf", "metrics"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
    ("http/protobuf", "logs"): ("otel_asgi_kit.sdk.otlp_http", "DirectLogExporter"),
    ("grpc", "traces"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("grpc", "metrics"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    ("grpc", "logs"): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
}


def otlp_exporter(signal: str, target: OtlpTarget, **extra: Any) -> Any:
    """The OTLP exporter of ``signal`` for ``target`` (imported lazily: grpc is heavy)."""
    import importlib

    module_name, class_name = _PACKAGES[(target.protocol, signal)]
    cls = getattr(importlib.import_module(module_name), class_name)
    kwargs: dict[str, Any] = {
        "endpoint": target.endpoint,
        "headers": dict(target.headers),
        "timeout": target.timeout_s,
        **extra,
    }
    if target.protocol == "grpc":
        import grpc

        kwargs["insecure"] = target.endpoint.startswith("http://")
        if target.compression == "gzip":
            kwargs["compression"] = grpc.Compression.Gzip
    elif target.compression == "gzip":
        from opentelemetry.exporter.otlp.proto.http import Compression

        kwargs["compression"] = Compression.Gzip
    return cls(**kwargs)


class _HideHeaderValues(logging.Filter):
    """The SDK re-reads OTEL_EXPORTER_OTLP_*HEADERS and warns with the raw value; hide it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = ("<hidden>",)
        return True


def hide_secrets_in_sdk_warnings() -> None:
    logger = logging.getLogger("opentelemetry.util.re")
    if not any(isinstance(f, _HideHeaderValues) for f in logger.filters):
        logger.addFilter(_HideHeaderValues())
