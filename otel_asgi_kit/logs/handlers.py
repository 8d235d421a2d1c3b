"""Exactly one stdout handler and one OTLP handler on the root logger.

Server loggers (uvicorn, gunicorn, hypercorn) are routed to the root logger
so their lines — the access log included — get the same format, trace ids
and OTLP export. ``reroute_server_loggers`` runs again after a server has
applied its own logging config.
"""

from __future__ import annotations

import logging
import sys

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider

from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter, TextFormatter
from otel_asgi_kit.settings import Settings

_MARK = "_otel_asgi_kit_handler"
SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "gunicorn.access",
    "hypercorn.error",
    "hypercorn.access",
)
# The exporters' own warnings must not feed back into the pipeline that is failing.
_QUIET_LOGGERS = ("opentelemetry", "urllib3", "requests")


def install_log_handlers(settings: Settings, logger_provider: LoggerProvider | None) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    if settings.log_format != "none":
        # basicConfig() or an earlier handler would print each line twice.
        for handler in [h for h in root.handlers if _is_console(h)]:
            root.removeHandler(handler)
        stdout = logging.StreamHandler(sys.stdout)
        stdout.setFormatter(
            EcsJsonFormatter(settings.service_name)
            if settings.log_format == "json"
            else TextFormatter()
        )
        setattr(stdout, _MARK, True)
        root.addHandler(stdout)
    if logger_provider is not None and settings.logs_exporters:
        otlp = LoggingHandler(logger_provider=logger_provider)
        otlp.addFilter(_not_from_exporters)
        setattr(otlp, _MARK, True)
        root.addHandler(otlp)
    root.setLevel(settings.log_level.upper())
    reroute_server_loggers(settings)


def _is_console(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (
        sys.stdout,
        sys.stderr,
    )


def _not_from_exporters(record: logging.LogRecord) -> bool:
    return not record.name.startswith(_QUIET_LOGGERS)


def reroute_server_loggers(settings: Settings) -> None:
    if settings.log_format == "none":
        return
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
