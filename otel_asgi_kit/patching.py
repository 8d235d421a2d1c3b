"""Every patch the kit applies to another project's code: listed here, applied one way.

A patch wraps one attribute of a third-party class or module once (a marker
on the replacement makes a second call a no-op). A hook names what it relies
on with ``require``; ``guarded`` turns a missing piece into one stderr line,
so the app serves and its spans only lack what the hook would have added. ``KNOWN`` lists each target
with the reason; ``applied()`` says which ones this process has applied
(``otel-asgi-kit doctor`` prints them) and ``tests/test_patching.py`` fails
when a patch is applied that is not listed.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from otel_asgi_kit.failsafe import report_once

PATCHED = "__otel_asgi_kit_patched__"

KNOWN: dict[str, str] = {
    # Servers: load the app through the kit, keep its logging, flush before the process ends.
    "uvicorn.config.Config.load": "wrap the app uvicorn (and gunicorn's UvicornWorker) loads",
    "uvicorn.config.Config.configure_logging": "put the kit's log handlers back after uvicorn's dictConfig",
    "uvicorn.server.Server._serve": "watch the loop; flush before uvicorn re-raises the stopping signal",
    "hypercorn.utils.wrap_app": "wrap the app hypercorn loads",
    "hypercorn.logging.Logger.__init__": "put the kit's log handlers back after hypercorn's logging set-up",
    "gunicorn.glogging.Logger.setup": "put the kit's log handlers back after gunicorn's logging set-up",
    # aiohttp.web: the request core around every request, whatever server runs the app.
    "aiohttp.web_protocol.RequestHandler._handle_request": "one server request per aiohttp request",
    "aiohttp.web_protocol.RequestHandler.handle_error": "what the app raised, where aiohttp answers it",
    "aiohttp.web_response.StreamResponse._start": "status and the trace header",
    "aiohttp.web_response.StreamResponse.write": "response body bytes",
    "aiohttp.web_response.StreamResponse.write_eof": "the response's end",
    "aiohttp.web_runner.BaseRunner.setup": "watch the loop of the server being set up",
    "aiohttp.web_ws.WebSocketResponse.receive": "count WebSocket messages received",
    "aiohttp.web_ws.WebSocketResponse.send_str": "count WebSocket messages sent",
    "aiohttp.web_ws.WebSocketResponse.send_bytes": "count WebSocket messages sent",
    "aiohttp.web_ws.WebSocketResponse.send_frame": "count WebSocket messages sent",
    "aiohttp.web._run_app": "flush when web.run_app stops",
    "aiohttp.worker.GunicornWebWorker._run": "flush when gunicorn's aiohttp worker stops; its access log as JSON",
    # Frameworks: the matched route template (and caught exceptions) into the ASGI scope.
    "starlette.routing.Mount.matches": "record each mount's template prefix",
    "quart.ctx._BaseRequestWebsocketContext.match_request": "record the matched Werkzeug rule (Quart <= 0.22)",
    "quart.ctx.AppContext.match_request": "record the matched Werkzeug rule (Quart >= 0.23, Python >= 3.13)",
    "nexios.routing.router.Route.handle": "record the matched route",
    "nexios.routing.websocket.WebsocketRoute.handle": "record the matched WebSocket route",
    "nexios.routing.grouping.Group.handle": "record each group's prefix",
    "nexios.middleware.errors.server_error_handler.ServerErrorMiddleware.__call__": (
        "see the exception Nexios answers with a 500"
    ),
    "litestar.middleware._internal.exceptions.middleware.ExceptionHandlerMiddleware.handle_request_exception": (
        "hand exceptions Litestar turns into 500s to the span, and log them once"
    ),
    "django.core.handlers.base.BaseHandler.resolve_request": "record the matched URL pattern (resolver_match.route)",
    "falcon.asgi.app.App._get_responder": "record the matched uri_template",
    "falcon.asgi.app.App._handle_exception": "hand exceptions Falcon turns into responses to the span",
    "blacksheep.server.routing.Router.get_match": "record the matched route pattern",
    "blacksheep.server.routing.RouterFiltersMixin.get_match": "record the matched route pattern (filtered routers)",
    "blacksheep.server.application.Application.handle_request_handler_exception": (
        "hand exceptions BlackSheep turns into 500s to the span"
    ),
    "granian.asgi._callback_wrapper": "wrap the app each Granian ASGI worker loads; flush when the worker ends",
    "granian.asgi._build_access_logger": "make the request's span current around Granian's access-log line",
    "granian.server.common.AbstractServer.serve": "say once when Granian serves an RSGI or WSGI app",
    "daphne.server.Server.__init__": "wrap the app Daphne serves; its console access log through the kit",
    "daphne.server.Server.run": "watch the loop; flush when Daphne's reactor stops",
    "daphne.server.Server.application_checker": "run Daphne's periodic check outside any request's context",
    "daphne.server.Server.timeout_checker": "run Daphne's periodic check outside any request's context",
    # Never silently off: untraceable servers say so when they start ...
    "werkzeug.serving.make_server": "say once that a WSGI server (Flask's app.run) serves untraced",
    "waitress.server.create_server": "say once that a WSGI server serves untraced",
    "wsgiref.simple_server.make_server": "say once that a WSGI server serves untraced",
    "tornado.httpserver.HTTPServer.initialize": "say once that Tornado's HTTP server serves untraced",
    "twisted.web.server.Site.__init__": "say once that Twisted Web serves untraced",
    # ... and each app class checks its first request for the middleware, then puts __call__ back.
    "starlette.applications.Starlette.__call__": "say once if requests reach the app without the middleware",
    "litestar.app.Litestar.__call__": "say once if requests reach the app without the middleware",
    "quart.app.Quart.__call__": "say once if requests reach the app without the middleware",
    "nexios.application.NexiosApp.__call__": "say once if requests reach the app without the middleware",
    "django.core.handlers.asgi.ASGIHandler.__call__": "say once if requests reach the app without the middleware",
    "falcon.asgi.app.App.__call__": "say once if requests reach the app without the middleware",
    "blacksheep.server.application.Application.__call__": "say once if requests reach the app without the middleware",
    # The standard library.
    "logging.config.dictConfig": "put the kit's log handlers back after a logging config",
    "logging.config.fileConfig": "put the kit's log handlers back after a logging config",
    "logging.basicConfig": "put the kit's log handlers back after a logging config",
    "asyncio.base_events.BaseEventLoop.run_in_executor": "run executor work in the caller's trace context",
    "uvloop.Loop.run_in_executor": "run executor work in the caller's trace context",
}

_applied: list[str] = []
_lock = threading.Lock()


def target_name(owner: type[Any] | ModuleType, name: str) -> str:
    if isinstance(owner, ModuleType):
        return f"{owner.__name__}.{name}"
    return f"{owner.__module__}.{owner.__qualname__}.{name}"


def patch(owner: type[Any] | ModuleType, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``make(original)``, once; later calls find the marker and do nothing."""
    original = getattr(owner, name)
    if getattr(original, PATCHED, False):
        return
    replacement = functools.wraps(original)(make(original))
    setattr(replacement, PATCHED, True)
    setattr(owner, name, replacement)
    with _lock:
        _applied.append(target_name(owner, name))


class HookUnavailableError(Exception):
    """The installed version of a framework or server lacks something a hook relies on."""


def require(owner: Any, name: str, params: tuple[str, ...] = ()) -> Any:
    """``owner.name``; it must exist and, if ``params`` are given, take them first and in this order."""
    where = f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', owner)}.{name}"
    try:
        attribute = inspect.getattr_static(owner, name)
    except AttributeError:
        raise HookUnavailableError(f"{where} is missing") from None
    if params:
        try:
            found = tuple(inspect.signature(getattr(owner, name)).parameters)
        except (TypeError, ValueError):
            raise HookUnavailableError(f"{where} has no readable signature") from None
        if found[: len(params)] != params:
            raise HookUnavailableError(f"{where} takes {found}, expected {params} first")
    return attribute


def guarded(what: str, install: Callable[[], None]) -> None:
    """Run ``install``; any failure is one line on stderr naming what is lost, never an error."""
    try:
        install()
    except Exception as exc:
        report_once(what, exc)


def applied() -> list[str]:
    """Targets patched in this process, in order."""
    with _lock:
        return list(_applied)
