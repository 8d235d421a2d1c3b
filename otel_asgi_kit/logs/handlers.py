"""Exactly one stdout handler and one OTLP handler on the root logger.

Server and framework loggers (uvicorn, gunicorn, hypercorn, aiohttp, Litestar) are
routed to the root logger (``gunicorn.access`` is left as gunicorn set it:
``UvicornWorker`` copies its handlers to ``uvicorn.access``, which is routed
when gunicorn writes an access log at all) so their lines — the access log included — get the
same format, trace ids and OTLP export. Servers and frameworks apply logging
configs of their own after start-up (uvicorn's ``dictConfig``, Litestar's
queue handler, a user's ``basicConfig``), so the config functions are wrapped
to put the kit's handlers back afterwards instead of printing every line twice.
With ``OTEL_ASGI_KIT_LOG_FORMAT=none`` the console stays the user's: only
the OTLP handler is added.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider

from otel_asgi_kit.failsafe import warn
from otel_asgi_kit.logs.ecs_json import EcsJsonFormatter, TextFormatter
from otel_asgi_kit.logs.file_handler import open_log_file
from otel_asgi_kit.logs.otlp_handler import OtlpLogHandler
from otel_asgi_kit.patching import patch
from otel_asgi_kit.settings import Settings

_MARK = "_otel_asgi_kit_handler"
ROUTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "hypercorn.error",
    "hypercorn.access",
    "_granian",
    "granian.access",
    "litestar",
    "aiohttp.access",
    "aiohttp.server",
    "aiohttp.web",
)
# The exporters' own warnings must not feed back into the pipeline that is failing.
_QUIET_LOGGERS = ("opentelemetry", "urllib3", "requests")

_installed: list[logging.Handler] = []
_settings: Settings | None = None


def install_log_handlers(settings: Settings, logger_provider: LoggerProvider | None) -> None:
    global _settings
    _settings = settings
    _installed.clear()
    if settings.log_format != "none":
        stdout = logging.StreamHandler(sys.stdout)
        stdout.setFormatter(
            EcsJsonFormatter(settings.service_name) if settings.log_format == "json" else TextFormatter()
        )
        _installed.append(stdout)
    log_file = _open_log_file(settings) if settings.log_file else None
    if log_file is not None:
        _installed.append(log_file)
    if logger_provider is not None and settings.logs_exporters:
        otlp = OtlpLogHandler(logger_provider, quiet=_QUIET_LOGGERS)
        _installed.append(otlp)
    for handler in _installed:
        setattr(handler, _MARK, True)
    logging.getLogger().setLevel(settings.log_level.upper())
    restore_log_handlers()
    for owner, name in ((logging.config, "dictConfig"), (logging.config, "fileConfig"), (logging, "basicConfig")):
        patch(owner, name, _restoring)


def _open_log_file(settings: Settings) -> logging.Handler | None:
    try:
        handler = open_log_file(settings.log_file or "", settings.log_file_max_bytes, settings.log_file_backups)
    except OSError as exc:
        warn(f"OTEL_ASGI_KIT_LOG_FILE={settings.log_file!r} cannot be opened ({exc}); logging without the file")
        return None
    # The same lines as stdout; with OTEL_ASGI_KIT_LOG_FORMAT=none the file still gets ECS JSON.
    handler.setFormatter(TextFormatter() if settings.log_format == "text" else EcsJsonFormatter(settings.service_name))
    return handler


def add_root_handler(handler: logging.Handler) -> None:
    """Another kit handler on the root logger (e.g. the trace pages' buffer), kept through log configs."""
    setattr(handler, _MARK, True)
    _installed.append(handler)
    restore_log_handlers()


def restore_log_handlers() -> None:
    """Put the kit's handlers back on root and route server loggers to it."""
    settings = _settings
    if settings is None:
        return
    root = logging.getLogger()
    owns_console = settings.log_format != "none"
    for handler in list(root.handlers):
        if (getattr(handler, _MARK, False) and handler not in _installed) or (
            owns_console and _prints_to_console(handler)
        ):
            root.removeHandler(handler)
    for handler in _installed:
        if handler not in root.handlers:
            root.addHandler(handler)
    if owns_console:
        for name in ROUTED_LOGGERS:
            logger = logging.getLogger(name)
            if name.endswith(".access") and not logger.handlers and not logger.propagate:
                # Switched off on purpose (uvicorn --no-access-log; gunicorn without
                # --access-logfile, whose handlers UvicornWorker copies): stays off.
                continue
            logger.handlers = []
            logger.propagate = True


def route_to_root(name: str) -> None:
    """Route one more logger to the kit's handlers, unless switched off on purpose (no handler, no propagation).

    For a logger a server picks at run time: aiohttp's gunicorn worker writes its access log
    on ``gunicorn.access``, which stays gunicorn's under every other worker.
    """
    settings = _settings
    if settings is None or settings.log_format == "none":
        return
    logger = logging.getLogger(name)
    if logger.handlers or logger.propagate:
        logger.handlers = []
        logger.propagate = True


def _prints_to_console(handler: logging.Handler) -> bool:
    if getattr(handler, _MARK, False):
        return False
    if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
        return getattr(handler, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    # Litestar's default root handler: a queue feeding a stderr stream handler.
    return type(handler).__name__ == "QueueListenerHandler"


def _restoring(original: Callable[..., Any]) -> Callable[..., Any]:
    def configure_then_restore(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            restore_log_handlers()

    return configure_then_restore
