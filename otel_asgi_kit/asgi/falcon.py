"""Falcon (ASGI): the route template and the exceptions Falcon answers with a 5xx itself.

Falcon routes inside its one ASGI callable: ``App._get_responder`` returns
the matched ``uri_template`` (``None`` when nothing matched) and the request
carries the server's scope. Every exception of a responder or middleware
goes through ``App._handle_exception``; when the response it leaves is a
5xx, the exception is handed to the middleware. Only the ASGI app is hooked.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from otel_asgi_kit.asgi.patches import HookUnavailableError, guarded, patch, require
from otel_asgi_kit.asgi.routes import ERROR_KEY, ROUTE_KEY
from otel_asgi_kit.failsafe import report_once

# "{item_id:int}" and "{when:dt("%Y")}" → "{item_id}", "{when}"
_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")


def install() -> None:
    guarded("naming Falcon routes (spans get no http.route)", _hook_routes)
    guarded("recording Falcon's caught exceptions (5xx get no exception event)", _hook_errors)


@functools.lru_cache(maxsize=1024)
def route_template(uri_template: str) -> str:
    return _CONVERTER.sub(r"{\1}", uri_template)


def _hook_routes() -> None:
    from falcon.asgi import App

    require(App, "_get_responder", ("self", "req"))

    def make(original: Any) -> Any:
        def _get_responder(self: Any, req: Any) -> Any:
            found = original(self, req)
            try:
                template = found[3]
                if template is not None:
                    req.scope[ROUTE_KEY] = route_template(template)
            except Exception as exc:  # never the app's problem
                report_once("naming a Falcon route", exc)
            return found

        return _get_responder

    patch(App, "_get_responder", make)


def _hook_errors() -> None:
    from falcon.asgi import App, Response

    require(App, "_handle_exception", ("self", "req", "resp", "ex", "params"))
    if not isinstance(getattr(Response, "status_code", None), property):
        raise HookUnavailableError("falcon.asgi.Response has no status_code")

    def make(original: Any) -> Any:
        async def _handle_exception(self: Any, req: Any, resp: Any, ex: Exception, *args: Any, **kwargs: Any) -> bool:
            handled: bool = await original(self, req, resp, ex, *args, **kwargs)
            try:
                if handled and resp is not None and resp.status_code >= 500:
                    req.scope[ERROR_KEY] = ex
            except Exception as exc:  # never the app's problem
                report_once("recording a Falcon exception", exc)
            return handled

        return _handle_exception

    patch(App, "_handle_exception", make)
