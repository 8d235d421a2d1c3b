"""Django (ASGI): the route template and the exceptions Django answers with a 500 itself.

Django routes inside its one ASGI callable. ``BaseHandler.resolve_request``
is where the match is known and the request (``ASGIRequest.scope`` is the
server's scope) is at hand: the hook copies ``resolver_match.route`` there.
The same hook marks the scope: after the last byte Django only closes the
response and sends ``request_finished`` (in its worker thread), which is no
background task of the app. An exception in a view or middleware never
leaves Django: it sends ``got_request_exception`` while the exception is
being handled, then answers 500. The receiver hands that exception to the middleware.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from typing import Any

from otel_asgi_kit.asgi.keys import CLEANUP_KEY, ERROR_KEY, ROUTE_KEY
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.patching import HookUnavailableError, guarded, patch, require

_DISPATCH_UID = "otel_asgi_kit.error"
# "<int:item_id>" (path converters) and "(?P<item_id>...)" (re_path groups, one nesting level).
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^()]*(?:\([^()]*\)[^()]*)*\)")


def install() -> None:
    guarded("naming Django routes (spans get no http.route)", _hook_routes)
    guarded("recording Django's caught exceptions (500s get no exception event)", _hook_errors)


@functools.lru_cache(maxsize=1024)
def route_template(route: str) -> str:
    """``items/<int:item_id>`` → ``/items/{item_id}``; ``^items/(?P<pk>\\d+)/$`` → ``/items/{pk}/``."""
    template = _CONVERTER.sub(r"{\1}", _REGEX_GROUP.sub(r"{\1}", route))
    return "/" + template.replace("^", "").replace("$", "").removeprefix("/")


def _hook_routes() -> None:
    from django.core.handlers.base import BaseHandler
    from django.urls.resolvers import ResolverMatch

    require(BaseHandler, "resolve_request", ("self", "request"))
    if "route" not in inspect.signature(ResolverMatch).parameters:
        raise HookUnavailableError("django.urls.ResolverMatch takes no route")

    def make(original: Any) -> Any:
        def resolve_request(self: Any, request: Any) -> Any:
            scope = getattr(request, "scope", None)  # None under WSGI
            if scope is not None:
                scope[CLEANUP_KEY] = True  # before matching: a 404 (Resolver404) is marked too
            match = original(self, request)
            try:
                route = match.route
                if scope is not None and route is not None:
                    scope[ROUTE_KEY] = route_template(route)
            except Exception as exc:  # never the app's problem
                report_once("naming a Django route", exc)
            return match

        return resolve_request

    patch(BaseHandler, "resolve_request", make)


def _hook_errors() -> None:
    from django.core.signals import got_request_exception

    require(got_request_exception, "connect", ("receiver", "sender", "weak", "dispatch_uid"))
    # A module-level receiver with a fixed uid: connected once however often the app is wrapped.
    got_request_exception.connect(_record_exception, dispatch_uid=_DISPATCH_UID)


def _record_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    scope = getattr(request, "scope", None)
    exc = sys.exc_info()[1]
    if scope is not None and isinstance(exc, Exception):
        scope[ERROR_KEY] = exc
