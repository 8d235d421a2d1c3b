"""Compiled parts of otel-asgi-kit: its OTLP writers (``_wire``) and its ASGI request path (``_core``).

``otel_asgi_kit.sdk.accel`` and ``otel_asgi_kit.asgi.fast`` decide whether they run.
"""

__version__ = "0.6.0"
