"""Small hooks into framework routing so the route template lands in the scope.

Installed once, when an app is wrapped, for the frameworks already imported.
Each hook does a dict write per matched route; none re-matches anything.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Any

from otel_asgi_kit.asgi.keys import ERROR_KEY, MOUNT_PREFIX_KEY, ROUTE_KEY
from otel_asgi_kit.patching import patch
from otel_asgi_kit.types import Receive, Scope, Send

_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")


def install_framework_hooks() -> None:
    if "starlette.routing" in sys.modules:
        _hook_starlette_mount()
    if "quart.ctx" in sys.modules:
        _hook_quart()
    if "nexios.routing.router" in sys.modules:
        _hook_nexios()
    if "litestar.middleware._internal.exceptions.middleware" in sys.modules:
        _hook_litestar()


def _hook_starlette_mount() -> None:
    from starlette.routing import Match, Mount

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
    from quart.ctx import _BaseRequestWebsocketContext

    def make(original: Any) -> Any:
        def match_request(self: Any) -> None:
            original(self)
            rule = self.request_websocket.url_rule
            if rule is not None:
                self.request_websocket.scope[ROUTE_KEY] = _quart_template(rule.rule)

        return match_request

    patch(_BaseRequestWebsocketContext, "match_request", make)


@functools.lru_cache(maxsize=1024)
def _quart_template(rule: str) -> str:
    # Werkzeug rules read "/items/<int:item_id>"; OTel templates use braces.
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@functools.lru_cache(maxsize=1024)
def _brace_template(path: str) -> str:
    return _CONVERTER.sub(r"{\1}", path)


def _hook_nexios() -> None:
    from nexios.exceptions import NotFoundException
    from nexios.routing.grouping import Group
    from nexios.routing.router import Route
    from nexios.routing.websocket import WebsocketRoute

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


def _hook_litestar() -> None:
    """Litestar turns an unhandled exception into a 500 and, outside debug, logs nothing.

    The exception is handed to the kit (span event, ``error.type``) and logged
    once on Litestar's logger with its stack, under the request's trace.
    """
    import logging

    from litestar.exceptions import HTTPException
    from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware

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
