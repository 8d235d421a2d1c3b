"""Compiled writers for otel-asgi-kit's OTLP encoder (``otel_asgi_kit.sdk.accel`` decides whether they run)."""

__version__ = "0.1.0"
