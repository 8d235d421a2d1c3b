"""``configure()``: settings → providers → logging → server hooks, once per process."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from otel_asgi_kit.admin import AdminServer, start_admin_server
from otel_asgi_kit.asgi.middleware import Instrumentation
from otel_asgi_kit.asgi.servers import install_server_hooks
from otel_asgi_kit.executor_context import install_executor_context
from otel_asgi_kit.exporters import hide_secrets_in_sdk_warnings
from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.logs.handlers import install_log_handlers, restore_log_handlers
from otel_asgi_kit.providers import (
    build_logger_provider,
    build_meter_provider,
    build_tracer_provider,
)
from otel_asgi_kit.resource import build_resource
from otel_asgi_kit.settings import Settings, load_settings


@dataclass(frozen=True)
class Kit:
    """What ``configure`` set up in this process."""

    settings: Settings
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    instrumentation: Instrumentation
    registry: CollectorRegistry | None
    admin: AdminServer | None

    def shutdown(self) -> None:
        """Flush and stop every pipeline within the configured bound."""
        timeout_ms = int(self.settings.shutdown_timeout_s * 1000)
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            try:
                provider.force_flush(timeout_ms // 3)
                provider.shutdown()
            except Exception as exc:
                warn(f"shutting down {type(provider).__name__} failed: {exc}")


_lock = threading.Lock()
_kit: Kit | None = None


def current_kit() -> Kit | None:
    return _kit


def current_instrumentation() -> Instrumentation | None:
    return _kit.instrumentation if _kit is not None else None


def configure(environ: Mapping[str, str] | None = None) -> Kit | None:
    """Set up traces, metrics and logs from the environment; a second call returns the first result.

    Returns ``None`` when ``OTEL_SDK_DISABLED`` is true.
    """
    global _kit
    with _lock:
        if _kit is not None:
            return _kit
        settings = load_settings(os.environ if environ is None else environ)
        for problem in settings.problems:
            warn(problem)
        if settings.sdk_disabled:
            return None
        _kit = _build(settings)
    atexit.register(_kit.shutdown)
    return _kit


def _build(settings: Settings) -> Kit:
    hide_secrets_in_sdk_warnings()
    resource = build_resource(settings)
    tracer_provider = build_tracer_provider(settings, resource)
    registry = CollectorRegistry(auto_describe=True) if "prometheus" in settings.metrics_exporters else None
    meter_provider = build_meter_provider(settings, resource, registry)
    logger_provider = build_logger_provider(settings, resource)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    set_logger_provider(logger_provider)
    instrumentation = Instrumentation(settings, tracer_provider, meter_provider if settings.metrics_exporters else None)
    install_log_handlers(settings, logger_provider)
    install_executor_context()
    if settings.auto_instrument:
        install_server_hooks(restore_log_handlers)
    admin = start_admin_server(settings.admin_host, settings.admin_port, registry) if registry is not None else None
    return Kit(
        settings=settings,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        instrumentation=instrumentation,
        registry=registry,
        admin=admin,
    )
