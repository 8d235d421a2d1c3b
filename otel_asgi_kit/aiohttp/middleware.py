"""The aiohttp request path: one aiohttp request translated into the request core's calls.

aiohttp serves each request in its own task, in
``RequestHandler._handle_request``: the app's handler (routing, the app's
middlewares), then ``finish_response`` (prepare, ``write_eof``, the access
log). ``handle_request`` wraps that whole call, so the request's trace
context is current for the app's logs, aiohttp's error log and its access
log, and the request is recorded after all of them. The response is found
where every aiohttp response passes: ``StreamResponse._start`` (status, the
trace header, before the headers are written), ``write``/``write_eof`` (body
bytes, and the request's end at the last byte). A context variable set in the
request's task links those calls to the request; identity checks keep a
response of another request (or a client's) out.

The request itself is the compiled one of the ASGI adapter (``asgi.fast``,
``Core.start_request`` with the values read here, ``finish_common`` for a
request that ended the common way) whenever that path is on; otherwise, and
for every uncommon ending, the same ``RequestLogic`` in Python.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiohttp import hdrs
from aiohttp.web_exceptions import HTTPException
from aiohttp.web_fileresponse import FileResponse
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_urldispatcher import StaticResource
from opentelemetry.propagators.textmap import Getter

from otel_asgi_kit import _state
from otel_asgi_kit.aiohttp.websocket import accept, finish_connection, start_connection
from otel_asgi_kit.asgi import fast
from otel_asgi_kit.core.client_address import client_address
from otel_asgi_kit.core.connection import Connection
from otel_asgi_kit.core.instrumentation import NOT_DECIDED, Instrumentation
from otel_asgi_kit.core.request import RequestLogic, ServerRequest
from otel_asgi_kit.failsafe import report_once, warn_once

Handler = Callable[[BaseRequest], Awaitable[StreamResponse]]


class Traced:
    """One request (or WebSocket connection) in flight; lives in its task's context only."""

    __slots__ = ("core", "error", "inst", "protocol", "request", "response", "returned_after_end")

    def __init__(self, inst: Instrumentation, request: BaseRequest, core: RequestLogic | Connection) -> None:
        self.inst = inst
        self.request = request
        self.core = core
        self.protocol: Any = None
        self.response: StreamResponse | None = None
        self.error: BaseException | None = None
        self.returned_after_end = False


current: ContextVar[Traced | None] = ContextVar("otel_asgi_kit.aiohttp.request", default=None)


class MultiDictGetter(Getter[Any]):
    """Reads aiohttp's case-insensitive header multidict; repeated headers keep their order."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        values: list[str] | None = carrier.getall(key, None)
        if values and key.lower() == "baggage":
            return [",".join(values)]  # the baggage propagator reads only the first value
        return values

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier.keys())


GETTER = MultiDictGetter()
_VERSIONS: dict[Any, str] = {}

# aiohttp's fields behind five of its properties, read directly: each property is a Python call per request.
# The request's two (``scheme``, ``remote``) are checked against the properties on the first request traced,
# the response's two (``status``, ``headers``) on a real response when the hook is made, the match's
# ``route`` on a real one when this module loads (``_route_field``); where they disagree (another aiohttp),
# the properties are read, and that is said once.
_request_fields: bool | None = None  # None: not checked yet
_FIELDS_DIFFER = "aiohttp's {} fields are not what this kit knows: their properties are read instead (slower)"


def _scheme(request: Any) -> str:
    return "https" if request._transport_sslcontext else "http"


def _remote(request: Any) -> str | None:
    peer = request._transport_peername
    if peer is None:
        return None
    return str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer)


def _check_request_fields(request: BaseRequest) -> bool:
    global _request_fields
    try:
        _request_fields = (_scheme(request), _remote(request)) == (request.scheme, request.remote)
    except Exception:
        _request_fields = False
    if not _request_fields:
        warn_once(_FIELDS_DIFFER.format("request"))
    return _request_fields


def handle_request_of(original: Callable[..., Awaitable[tuple[StreamResponse, bool]]]) -> Any:
    """``RequestHandler._handle_request`` with the request recorded around it (one coroutine, no layer)."""

    async def _handle_request(
        protocol: Any, request: BaseRequest, start_time: Any, handler: Handler
    ) -> tuple[StreamResponse, bool]:
        inst = _state.current_instrumentation()
        # aiohttp's own answer to an unparsable request (400) reaches no app: like an ASGI server's, untraced.
        if inst is None or handler is not protocol._request_handler:
            return await original(protocol, request, start_time, handler)
        excluded = inst.excluded
        if excluded is not None and excluded.search(request.path) is not None:
            return await original(protocol, request, start_time, handler)
        try:
            traced = _start(inst, request)
        except Exception as exc:  # telemetry must never break the app
            report_once("starting a request span", exc)
            return await original(protocol, request, start_time, handler)
        traced.protocol = protocol
        current.set(traced)  # the request's own task
        try:
            response, reset = await original(protocol, request, start_time, handler)
        except BaseException as exc:  # the response could not be sent, or the task was cancelled
            _finish(traced, traced.error or exc)
            raise
        finally:
            # The task's context would otherwise keep ``traced`` and through it the request, which refers
            # back to the task: a reference cycle per request, left for the garbage collector.
            current.set(None)
        _finish(traced, traced.error)
        return response, reset

    return _handle_request


def _start(inst: Instrumentation, request: BaseRequest) -> Traced:
    headers = request.headers
    parent = None
    for name in inst.propagation_names:
        if name in headers:
            parent = inst.propagator.extract(headers, getter=GETTER)
            break
    upgrade = headers.get(hdrs.UPGRADE)
    if upgrade is not None and upgrade.lower() == "websocket":
        return Traced(inst, request, start_connection(inst, request, parent))
    length = headers.get(hdrs.CONTENT_LENGTH)
    version = request.version
    http_version = _VERSIONS.get(version)
    if http_version is None:
        http_version = _VERSIONS.setdefault(version, f"{version[0]}.{version[1]}")
    request_bytes = int(length) if length is not None and length.isdigit() else None
    compiled = inst.asgi_core
    if compiled is NOT_DECIDED:
        compiled = fast.core_for(inst)
    fields = _request_fields
    if fields is None:
        fields = _check_request_fields(request)
    core: RequestLogic
    if compiled is not None:  # the compiled request (no headers captured): the same fields, span and context
        core = compiled.start_request(
            request.method,
            ("https" if request._transport_sslcontext else "http") if fields else request.scheme,  # as _scheme
            request.path,
            request.rel_url.raw_query_string,
            parent,
            headers.get(hdrs.USER_AGENT),
            http_version,
            request_bytes,
            None,
        )
    else:
        core = ServerRequest(
            inst,
            request.method,
            request.scheme,
            request.path,
            request.rel_url.raw_query_string,
            parent,
            user_agent=headers.get(hdrs.USER_AGENT),
            http_version=http_version,
            request_bytes=request_bytes,
            captured_headers=inst.request_headers.attributes(headers.items()) if inst.request_headers.enabled else None,
        )
    return Traced(inst, request, core)


def handle_error_of(original: Callable[..., StreamResponse]) -> Any:
    """``RequestHandler.handle_error``: aiohttp's 500 (504 on a timeout) for what the app raised; kept for the span.

    Called inside ``_handle_request``'s ``except`` (the exception is current even when aiohttp
    does not pass it, as for the 504); an ``HTTPException`` is an answer, not an error, and never
    reaches it.
    """

    def handle_error(
        protocol: Any, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: Any = None
    ) -> StreamResponse:
        traced = current.get()
        if traced is not None and traced.request is request and traced.error is None:
            error = exc if exc is not None else sys.exc_info()[1]
            if isinstance(error, Exception) and not isinstance(error, HTTPException):
                traced.error = error
        return original(protocol, request, status, exc, message)

    return handle_error


def _finish(traced: Traced, exc: BaseException | None) -> None:
    request = traced.request
    core = traced.core
    try:  # a matched route's path is kept by route (see ``route_of``): found here without a call
        match_info = getattr(request, "_match_info", None)
        route = _ROUTES.get(match_info._route if _ROUTE_FIELD else match_info.route) if match_info is not None else None
        if route is None:
            route = route_of(request)
    except Exception as failure:
        report_once("reading the request's route", failure)
        route = None
    if isinstance(core, Connection):
        finish_connection(core, traced.response, route, exc)
        return
    client = None
    response_attributes = None
    try:
        if _request_fields:  # as _remote, without a call
            peer = request._transport_peername
            if peer is not None:
                peer = str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer)
        else:
            peer = request.remote
        inst = traced.inst
        trusted = inst.trusted_proxies
        client = client_address(peer, request.headers.items(), trusted) if peer and trusted.networks else peer
        response = traced.response
        if response is not None:
            # A FileResponse is sent by sendfile, not through ``write``. The isinstance comes last: a
            # response is a MutableMapping, so it runs ABCMeta's Python check.
            if not core.response_bytes and request.method != "HEAD" and isinstance(response, FileResponse):
                core.response_bytes = response.content_length or 0
            if inst.response_headers.enabled:
                response_attributes = inst.response_headers.attributes(response.headers.items())
    except Exception as failure:
        report_once("reading the request's client", failure)
    if exc is None and response_attributes is None and isinstance(core, fast.FAST_REQUEST):
        compiled: Any = core
        try:  # the compiled request ends a common request itself; False: the Python ending below
            if compiled.finish_common(route, client, None, traced.returned_after_end):
                return
        except Exception as failure:  # part of the ending ran: reported, never run twice
            report_once("ending a request span", failure)
            return
    core.finish(
        route,
        exc,
        escaped=exc is not None,
        client=client,
        response_attributes=response_attributes,
        background=traced.returned_after_end,
    )


def route_of(request: BaseRequest) -> str | None:
    """The matched resource's canonical path (``/users/{id}``); ``None`` when nothing matched (404, 405)."""
    match_info = getattr(request, "_match_info", None)  # web.Request after routing; a bare Server has none
    if match_info is None:
        return None
    route = match_info.route
    found = _ROUTES.get(route)
    if found is not None:
        return found
    resource = route.resource
    if resource is None:  # aiohttp's SystemRoute (404, 405): made per request, never kept
        return None
    canonical: str = resource.canonical
    if isinstance(resource, StaticResource):
        canonical += "/{filename}"
    if len(_ROUTES) >= _ROUTES_KEPT:  # apps made and dropped at run time (tests): never more than this
        _ROUTES.clear()
    _ROUTES[route] = canonical
    return canonical


# A matched route's path, by route (routes are frozen with their app): read from its resource once.
_ROUTES: dict[Any, str] = {}
_ROUTES_KEPT = 4096


def _route_field() -> bool:
    """Whether a match's ``route`` is its ``_route`` field (checked on a real one; said once if not)."""
    try:
        from aiohttp.web_urldispatcher import UrlMappingMatchInfo

        route = object()
        info: Any = UrlMappingMatchInfo({}, route)  # type: ignore[arg-type]
        agree = info._route is route and info.route is route
    except Exception:
        agree = False
    if not agree:
        warn_once(_FIELDS_DIFFER.format("route match"))
    return agree


_ROUTE_FIELD = _route_field()


def response_start_of(original: Callable[..., Awaitable[Any]]) -> Any:
    """``StreamResponse._start``: the status and the trace header, before the headers are written.

    Not a coroutine of its own: it returns aiohttp's (``prepare`` awaits what it returns), so a
    request's response adds no coroutine here; only a WebSocket handshake, recorded after the 101
    is written, goes through ``_accepted``.
    """

    fields = _response_fields()

    def _start(response: Any, request: Any) -> Awaitable[Any]:
        traced = current.get()
        if traced is None or traced.request is not request:
            return original(response, request)
        traced.response = response
        core = traced.core
        name = traced.inst.trace_header_name
        if name:
            (response._headers if fields else response.headers)[name] = core.trace_header().decode("latin-1")
        if isinstance(core, Connection):
            return _accepted(original(response, request), core, response, request)
        core.response_started(response._status if fields else response.status)
        return original(response, request)

    return _start


def _response_fields() -> bool:
    """Whether a response's ``status`` and ``headers`` are its ``_status`` and ``_headers`` (said once if not)."""
    try:
        from aiohttp.web_response import Response

        response: Any = Response(status=299, headers={"X-Kit": "1"})
        agree = response._status == response.status == 299 and response._headers is response.headers
    except Exception:
        agree = False
    if not agree:
        warn_once(_FIELDS_DIFFER.format("response"))
    return agree


async def _accepted(starting: Awaitable[Any], core: Connection, response: StreamResponse, request: Any) -> Any:
    writer = await starting
    accept(core, response, route_of(request))  # the 101 is written: the handshake succeeded
    return writer


def response_write_of(original: Callable[..., Awaitable[None]]) -> Any:
    """``StreamResponse.write``: body bytes."""

    async def write(response: StreamResponse, data: Any) -> None:
        await original(response, data)
        # The request (not a WebSocket connection) of this task whose response this is, if any.
        traced = current.get()
        if traced is not None and traced.response is response and not isinstance(traced.core, Connection):
            core: Any = traced.core
            core.response_bytes += len(data)

    return write


def response_write_eof_of(original: Callable[..., Awaitable[None]]) -> Any:
    """``StreamResponse.write_eof``: the last byte is handed to the transport, the request ends here."""

    async def write_eof(response: StreamResponse, data: Any = b"") -> None:
        await original(response, data)
        traced = current.get()  # as in ``write``
        if traced is None or traced.response is not response or isinstance(traced.core, Connection):
            return
        core: Any = traced.core
        core.response_bytes += len(data)
        if not core.done_at:
            # Written while the app's handler still runs: what it does after is its own work (a
            # background span), not the server's (aiohttp clears this once the handler returned).
            traced.returned_after_end = getattr(traced.protocol, "_current_request", None) is traced.request
        core.response_complete()

    return write_eof
