"""OpenTelemetry for ASGI apps: traces, metrics and correlated logs from environment variables.

Under ``opentelemetry-instrument`` nothing needs calling. Without the launcher::

    import otel_asgi_kit
    otel_asgi_kit.configure()
    app = otel_asgi_kit.instrument(app)
"""

from __future__ import annotations

from otel_asgi_kit.asgi.middleware import KitMiddleware
from otel_asgi_kit.bootstrap import configure, current_kit
from otel_asgi_kit.types import ASGIApp
from otel_asgi_kit.version import __version__


def instrument(app: ASGIApp) -> ASGIApp:
    """``app`` wrapped in the kit's middleware; wrapping twice returns the same wrapper."""
    from otel_asgi_kit.asgi.servers import wrap_app

    return wrap_app(app)


__all__ = ["KitMiddleware", "__version__", "configure", "current_kit", "instrument"]
