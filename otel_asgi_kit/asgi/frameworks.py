"""Small hooks into framework routing so the route template lands in the scope.

Installed once, when an app is wrapped, for the frameworks already imported.
Each hook does a dict write per matched route; none re-matches anything.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import sys
from collections.abc import Callable
from typing import Any

from otel_asgi_kit.asgi import blacksheep, django, falcon
from otel_asgi_kit.asgi.routes import ERROR_KEY, MOUNT_PREFIX_KEY, ROUTE_KEY
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.patching import HookUnavailableError, guarded, patch, require
from otel_asgi_kit.types import Receive, Scope, Send

_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")


def install_framework_hooks() -> None:
    """Each hook checks what it relies on; one that cannot install costs one stderr line, never the app."""
    for module, lost, install in _HOOKS:
        if module in sys.modules:
            guarded(lost, install)


def _hook_starlette_mount() -> None:
    from starlette.routing import Match, Mount

    require(Mount, "matches", ("self", "scope"))

    def make(original: Any) -> Any:
        def matches(self: Any, scope: Scope) -> Any:
            match, child_scope = original(self, scope)
            if match is Match.FULL:
                # Mount.path_format is "<mount path>/{path}": keep the mount's part.
                child_scope[MOUNT_PREFIX_KEY] = scope.get(MOUNT_PREFIX_KEY, "") + self.path_format[:-7]
            return match, child_scope

        return matches

    patch(Mount, "matches", make)


def _hook_quart() -> None:
    import quart.ctx

    # Quart <= 0.22 routes in _BaseRequestWebsocketContext; 0.23 in AppContext, which
    # holds the request (or websocket) as ``_request_websocket``.
    owner = getattr(quart.ctx, "_BaseRequestWebsocketContext", None)
    attribute = "request_websocket"
    if owner is None:
        owner, attribute = getattr(quart.ctx, "AppContext", None), "_request_websocket"
    if owner is None:
        raise HookUnavailableError("quart.ctx has neither _BaseRequestWebsocketContext nor AppContext")
    require(owner, "match_request", ("self",))
    if not (hasattr(owner, attribute) or attribute in inspect.signature(owner).parameters):
        raise HookUnavailableError(f"quart.ctx.{owner.__name__} has no {attribute}")
    current = operator.attrgetter(attribute)

    def make(original: Any) -> Any:
        def match_request(self: Any) -> None:
            original(self)
            request = current(self)
            rule = request.url_rule if request is not None else None
            if rule is not None:
                request.scope[ROUTE_KEY] = _quart_template(rule.rule)

        return match_request

    patch(owner, "match_request", make)


@functools.lru_cache(maxsize=1024)
def _quart_template(rule: str) -> str:
    # Werkzeug rules read "/items/<int:item_id>"; OTel templates use braces.
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@functools.lru_cache(maxsize=1024)
def _brace_template(path: str) -> str:
    return _CONVERTER.sub(r"{\1}", path)


def _hook_quart_errors() -> None:
    """Quart answers an exception of a view with a 500 itself (unless it propagates them, in testing or
    debug): the exception never reaches the middleware. Quart sends ``got_request_exception`` first,
    with the request's context active; the receiver hands the exception to the middleware."""
    from quart.signals import got_request_exception

    require(got_request_exception, "connect", ("receiver", "sender", "weak"))
    got_request_exception.connect(_quart_exception, weak=False)  # a module function: connected once


async def _quart_exception(sender: Any, exception: BaseException | None = None, **kwargs: Any) -> None:
    # async: blinker awaits it in the request's task (a sync receiver would go to a worker thread).
    try:
        from quart import has_request_context, request

        if isinstance(exception, Exception) and has_request_context():
            scope: Any = request.scope  # the server's scope: the one the middleware reads
            scope[ERROR_KEY] = exception
    except Exception as exc:  # never the app's problem
        report_once("recording a Quart exception", exc)


def _hook_nexios() -> None:
    from nexios.exceptions import NotFoundException
    from nexios.routing.grouping import Group
    from nexios.routing.router import Route
    from nexios.routing.websocket import WebsocketRoute

    for owner in (Route, WebsocketRoute, Group):
        require(owner, "handle", ("self", "scope", "receive", "send"))

    def make_route(original: Any) -> Any:
        async def handle(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
            scope[ROUTE_KEY] = scope.get(MOUNT_PREFIX_KEY, "") + _brace_template(self.raw_path)
            await original(self, scope, receive, send)

        return handle

    def make_group(original: Any) -> Any:
        async def handle(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
            before = scope.get(MOUNT_PREFIX_KEY, "")
            scope[MOUNT_PREFIX_KEY] = before + _brace_template(self.path.rstrip("/"))
            try:
                await original(self, scope, receive, send)
            except NotFoundException:
                # Nothing in the group matched: the request has no route.
                scope[MOUNT_PREFIX_KEY] = before
                scope.pop(ROUTE_KEY, None)
                raise

        return handle

    patch(Route, "handle", make_route)
    patch(WebsocketRoute, "handle", make_route)
    patch(Group, "handle", make_group)


def _hook_nexios_errors() -> None:
    """Nexios's ``ServerErrorMiddleware`` answers any exception from inside it with a 500 (and logs it):
    the exception never reaches the kit's middleware. The hook sees it on its way there."""
    from nexios.middleware.errors.server_error_handler import ServerErrorMiddleware

    require(ServerErrorMiddleware, "__call__", ("self", "request", "response", "call_next"))

    def make(original: Any) -> Any:
        async def dispatch(self: Any, request: Any, response: Any, call_next: Callable[[], Any]) -> Any:
            async def call_next_recorded() -> Any:
                try:
                    return await call_next()
                except Exception as exc:
                    scope = getattr(request, "scope", None)
                    if isinstance(scope, dict):
                        scope[ERROR_KEY] = exc
                    raise

            return await original(self, request, response, call_next_recorded)

        return dispatch

    patch(ServerErrorMiddleware, "__call__", make)


def _hook_litestar() -> None:
    """Litestar turns an unhandled exception into a 500 and, outside debug, logs nothing.

    The exception is handed to the kit (span event, ``error.type``) and logged
    once on Litestar's logger with its stack, under the request's trace.
    """
    import logging

    from litestar.exceptions import HTTPException
    from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware

    parameters = ("self", "litestar_app", "scope", "receive", "send", "exc")
    require(ExceptionHandlerMiddleware, "handle_request_exception", parameters)

    def make(original: Any) -> Any:
        async def handle_request_exception(
            self: Any, litestar_app: Any, scope: Scope, receive: Receive, send: Send, exc: Exception
        ) -> None:
            status = getattr(exc, "status_code", 500) if isinstance(exc, HTTPException) else 500
            if status >= 500:
                scope[ERROR_KEY] = exc
                config = getattr(litestar_app, "logging_config", None)
                already_logged = config is not None and (
                    config.log_exceptions == "always" or (config.log_exceptions == "debug" and litestar_app.debug)
                )
                if not already_logged:
                    logging.getLogger("litestar").error("Unhandled exception in request", exc_info=exc)
            await original(self, litestar_app, scope, receive, send, exc)

        return handle_request_exception

    patch(ExceptionHandlerMiddleware, "handle_request_exception", make)


# (module imported by the framework, what is lost if its hook fails, the hook)
_HOOKS: tuple[tuple[str, str, Callable[[], None]], ...] = (
    ("starlette.routing", "naming Starlette mount routes", _hook_starlette_mount),
    ("quart.ctx", "naming Quart routes (spans get no http.route)", _hook_quart),
    ("quart.app", "recording Quart's caught exceptions (500s get no exception event)", _hook_quart_errors),
    ("nexios.routing.router", "naming Nexios routes", _hook_nexios),
    (
        "nexios.middleware.errors.server_error_handler",
        "recording Nexios's caught exceptions (500s get no exception event)",
        _hook_nexios_errors,
    ),
    ("litestar.middleware._internal.exceptions.middleware", "recording Litestar's caught exceptions", _hook_litestar),
    ("django.core.handlers.base", "hooking Django", django.install),
    ("falcon.asgi", "hooking Falcon", falcon.install),
    ("blacksheep.server.routing", "hooking BlackSheep", blacksheep.install),
)
