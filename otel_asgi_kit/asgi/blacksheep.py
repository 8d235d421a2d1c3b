"""BlackSheep: the route pattern and the exceptions BlackSheep answers with a 5xx itself.

BlackSheep routes inside its one ASGI callable: the app asks its router's
``get_match(request)`` (a Python attribute lookup even from BlackSheep's
compiled ``handle``) and the request carries the server's scope. The match
of the main router's fallback (pattern ``*``, e.g. its 404) names no route.
A handler's exception goes to ``handle_request_handler_exception``; when the
response it builds is a 5xx, the exception is handed to the middleware.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from otel_asgi_kit.asgi.patches import HookUnavailableError, guarded, patch, require
from otel_asgi_kit.asgi.routes import ERROR_KEY, ROUTE_KEY
from otel_asgi_kit.failsafe import report_once

_FALLBACK = b"*"
# "/<int:id>", "/<id>", "/{int:id}", "/{id}", "/:id" → "/{id}"
_PARAMETER = re.compile(r"/(?:<(?:\w+:)?(\w+)>|\{(?:\w+:)?(\w+)\}|:([^/]+))")


def install() -> None:
    guarded("naming BlackSheep routes (spans get no http.route)", _hook_routes)
    guarded("recording BlackSheep's caught exceptions (5xx get no exception event)", _hook_errors)


@functools.lru_cache(maxsize=1024)
def route_template(pattern: bytes) -> str:
    return _PARAMETER.sub(lambda m: "/{" + (m[1] or m[2] or m[3]) + "}", pattern.decode("utf-8", "replace"))


def _hook_routes() -> None:
    from blacksheep.messages import Request
    from blacksheep.server.routing import RouteMatch, Router, RouterFiltersMixin

    require(Request, "scope")
    if "pattern" not in getattr(RouteMatch, "__slots__", ()):
        raise HookUnavailableError("blacksheep.server.routing.RouteMatch has no pattern")

    def make(original: Any) -> Any:
        def get_match(self: Any, request: Any) -> Any:
            match = original(self, request)
            try:
                scope = request.scope
                if match is not None and scope is not None and match.pattern != _FALLBACK:
                    scope[ROUTE_KEY] = route_template(match.pattern)
            except Exception as exc:  # never the app's problem
                report_once("naming a BlackSheep route", exc)
            return match

        return get_match

    # A router with sub-routers asks each of them, then ``Router.get_match`` for its own
    # routes; a router with filters has its own matcher.
    for owner in (Router, RouterFiltersMixin):
        require(owner, "get_match", ("self", "request"))
        patch(owner, "get_match", make)


def _hook_errors() -> None:
    from blacksheep.server.application import Application

    require(Application, "handle_request_handler_exception", ("self", "request", "exc"))

    def make(original: Any) -> Any:
        async def handle_request_handler_exception(self: Any, request: Any, exc: Exception) -> Any:
            response = await original(self, request, exc)
            try:
                scope = request.scope
                if scope is not None and response is not None and response.status >= 500:
                    scope[ERROR_KEY] = exc
            except Exception as failure:  # never the app's problem
                report_once("recording a BlackSheep exception", failure)
            return response

        return handle_request_handler_exception

    patch(Application, "handle_request_handler_exception", make)
