"""Daphne (``daphne app:app``, Channels' ``runserver``): the app, the access log and the final flush.

Every way of starting Daphne builds a ``daphne.server.Server(application,
..., action_logger=...)``, so its ``__init__`` is where the app is wrapped.
The hook waits for Daphne's own import of ``daphne.server``: importing it
earlier would install Twisted's reactor as a side effect.

Daphne writes its access log with ``AccessLogGenerator``, straight to a
stream. When that stream is the console, the generator is replaced by one that
logs the same events on the ``daphne.access`` logger, so the lines get the
kit's format, OTLP export and query redaction. Daphne calls it while the app
sends its last body message, inside the request's span: the line carries the
trace id. An access log written to a file (``--access-log PATH``) stays as
Daphne writes it.

Daphne logs an app's exception from a check that runs every second, far from
the request. The kit logs it instead, with Daphne's words, as the exception
leaves the app - where the failed request's span is still current - and
drops Daphne's later copy of that same exception.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from otel_asgi_kit.asgi.import_hooks import when_imported
from otel_asgi_kit.failsafe import warn_once as warn
from otel_asgi_kit.loop_health import ensure_loop_monitor
from otel_asgi_kit.patching import patch

# Twisted's asyncio reactor fires all due timers from one asyncio timer, armed in
# whatever context last scheduled one - often a request's. Daphne's periodic
# checks would then log under another request's trace id; they run in an empty
# context instead.
_TIMED_CHECKS = ("application_checker", "timeout_checker")
access_logger = logging.getLogger("daphne.access")
server_logger = logging.getLogger("daphne.server")
FAILURE = "Exception inside application: %s"  # Daphne's own message
_LOGGED = "_otel_asgi_kit_logged"


def install(
    after_logging_config: Callable[[], None],
    *,
    wrap_app: Callable[[Any], Any],
    on_server_exit: Callable[[], None],
) -> None:
    """Hook Daphne when (or if) it is imported; nothing is imported here."""
    del after_logging_config  # Daphne's CLI uses basicConfig, which the kit already follows
    when_imported("daphne.server", lambda module: _hook(module, wrap_app, on_server_exit))


def _hook(module: ModuleType, wrap_app: Callable[[Any], Any], on_server_exit: Callable[[], None]) -> None:
    server = getattr(module, "Server", None)
    params = tuple(inspect.signature(server.__init__).parameters) if server is not None else ()
    if "application" not in params or "action_logger" not in params or not hasattr(server, "run"):
        warn(
            "daphne.server.Server(application, ..., action_logger) was not found: requests served by this "
            "Daphne are not traced; wrap the app with otel_asgi_kit.instrument(app)"
        )
        return
    assert server is not None
    signature = inspect.signature(server.__init__)

    def make_init(init: Any) -> Any:
        def patched_init(self: Any, *args: Any, **kwargs: Any) -> None:
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["application"] = _log_failures(wrap_app(bound.arguments["application"]))
            action_logger = bound.arguments.get("action_logger")
            if _writes_to_console(action_logger):
                bound.arguments["action_logger"] = log_action
            init(*bound.args, **bound.kwargs)

        return patched_init

    def make_run(run: Any) -> Any:
        def patched_run(self: Any) -> None:
            _monitor_loop_when_running()
            try:
                run(self)
            finally:
                on_server_exit()  # the reactor stopped: flush before Daphne's exit path

        return patched_run

    patch(server, "__init__", make_init)
    patch(server, "run", make_run)
    for name in _TIMED_CHECKS:
        if callable(getattr(server, name, None)):
            patch(server, name, _in_empty_context)
    if _skip_logged_failures not in server_logger.filters:
        server_logger.addFilter(_skip_logged_failures)


def _log_failures(app: Any) -> Any:
    async def app_logging_failures(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except Exception as exc:
            server_logger.error(FAILURE, exc, exc_info=exc)
            try:
                setattr(exc, _LOGGED, True)
            except Exception:  # noqa: S110 - an exception type without attributes: Daphne's copy stays
                pass
            raise

    return app_logging_failures


def _skip_logged_failures(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not (record.msg == FAILURE and getattr(exc, _LOGGED, False) and record.funcName != "app_logging_failures")


def _in_empty_context(method: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        return contextvars.Context().run(method, *args, **kwargs)

    return run


def _writes_to_console(action_logger: Any) -> bool:
    return (
        type(action_logger).__name__ == "AccessLogGenerator"
        and type(action_logger).__module__ == "daphne.access"
        and getattr(action_logger, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    )


def _monitor_loop_when_running() -> None:
    try:
        from twisted.internet import reactor

        reactor.callWhenRunning(ensure_loop_monitor)
    except Exception as exc:
        warn(f"the event-loop monitor is off under Daphne: {exc}")


def log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
    """Daphne's ``action_logger``: the events ``AccessLogGenerator`` prints, as log records."""
    if protocol == "http" and action == "complete":
        # The URL third, like uvicorn's access record: the kit's redaction filter finds it there.
        access_logger.info(
            '%s - "%s %s" %s %s',
            details.get("client") or "-",
            details.get("method"),
            details.get("path"),
            details.get("status"),
            details.get("size"),
        )
    elif protocol == "websocket" and action in _WS_ACTIONS:
        access_logger.info('%s - "%s %s"', details.get("client") or "-", _WS_ACTIONS[action], details.get("path"))


_WS_ACTIONS = {
    "connecting": "WSCONNECTING",
    "rejected": "WSREJECT",
    "connected": "WSCONNECT",
    "disconnected": "WSDISCONNECT",
}
