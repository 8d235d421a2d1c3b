"""Local trace pages on the admin port (zPages-style): ``/kit/traces`` and ``/kit/traces.json``.

They show what this process holds in memory: recent requests, the slowest
per route, recent failures, each with its spans, events and log lines.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from otel_asgi_kit import admin
from otel_asgi_kit.logs.handlers import add_root_handler
from otel_asgi_kit.pages.recorder import TraceLogBuffer, TraceRecorder
from otel_asgi_kit.pages.render import page_handlers

__all__ = ["TraceLogBuffer", "TraceRecorder", "install_pages"]


def install_pages(tracer_provider: TracerProvider) -> None:
    """Record spans of ``tracer_provider`` and log lines of the root logger; serve them on the admin port."""
    recorder = TraceRecorder()
    logs = TraceLogBuffer()
    tracer_provider.add_span_processor(recorder)
    add_root_handler(logs)  # kept on root through later basicConfig/dictConfig calls
    service = str(tracer_provider.resource.attributes.get("service.name", "unknown_service"))
    html_page, json_page = page_handlers(recorder, logs, service)
    admin.add_route("/kit/traces", html_page)
    admin.add_route("/kit/traces.json", json_page)
