"""The ASGI adapter: ASGI scopes and messages translated into the request core's calls.

Per request: one scan of the headers (propagation fields, user agent,
content length), a ``ServerRequest``, one send wrapper. Scopes it does not
trace pass straight through. Failures of the telemetry itself are contained:
the app's request goes on uninstrumented.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from otel_asgi_kit import _state
from otel_asgi_kit.asgi import fast
from otel_asgi_kit.asgi.keys import CLEANUP_KEY, ERROR_KEY, SPAN_KEY
from otel_asgi_kit.asgi.routes import route_template
from otel_asgi_kit.asgi.websocket import traced_websocket
from otel_asgi_kit.core.client_address import client_address
from otel_asgi_kit.core.instrumentation import NOT_DECIDED, Instrumentation
from otel_asgi_kit.core.propagation import RAW_GETTER
from otel_asgi_kit.core.request import RequestLogic, ServerRequest
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.loop_health import ensure_loop_monitor
from otel_asgi_kit.types import ASGIApp, Message, Receive, Scope, Send

_FASTAPI_NATIVE = "fastapi.telemetry"
_RESPONSE_END = frozenset({"http.response.pathsend"})  # a whole response in one message


class KitMiddleware:
    """ASGI middleware; wraps any ASGI 3 app. Scopes it does not trace pass straight through."""

    def __init__(self, app: ASGIApp, *, instrumentation: Instrumentation | None = None) -> None:
        """``instrumentation``: fixed for this middleware; by default the process's, looked up per request
        (a module-level read) so ``configure()`` may run after wrapping and tests may swap it."""
        self.app = app
        self._instrumentation = instrumentation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind != "http" and kind != "websocket") or SPAN_KEY in scope:
            if kind == "lifespan":
                ensure_loop_monitor()  # once per worker, inside its loop: nothing per request
            await self.app(scope, receive, send)
            return
        # FastAPI >= 0.142 traces by itself unless this key is present: the kit's
        # span is the only one, and excluded paths get none from FastAPI either.
        scope.setdefault(_FASTAPI_NATIVE, None)
        inst = self._instrumentation or _state.current_instrumentation()
        if inst is None or (inst.excluded is not None and inst.excluded.search(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await traced_websocket(inst, self.app, scope, receive, send)
            return
        core = inst.asgi_core
        if core is NOT_DECIDED:
            core = fast.core_for(inst)
        if core is not None:
            # The compiled path (a dict scope): the request object is the app's send as well.
            try:
                fast_request = core.start(scope, send)
            except Exception as exc:  # telemetry must never break the app
                report_once("starting a request span", exc)
                await self.app(scope, receive, send)
                return
            if fast_request is not None:  # inline, not a coroutine of its own: one frame fewer per request
                try:
                    await self.app(scope, receive, fast_request)
                except Exception as exc:
                    if not fast_request.status:
                        await _send_error_response(inst, fast_request, fast_request.server_send)
                    _finish(inst, fast_request, scope, fast_request, exc, escaped=True)
                    raise
                except BaseException as exc:  # cancellation: no response of ours
                    _finish(inst, fast_request, scope, fast_request, exc, escaped=True)
                    raise
                error = scope.get(ERROR_KEY)
                if error is None and _finish_common(inst, fast_request, scope):
                    return
                _finish(inst, fast_request, scope, fast_request, error, escaped=False)
                return
        try:
            request = _start(inst, scope)
        except Exception as exc:  # telemetry must never break the app
            report_once("starting a request span", exc)
            await self.app(scope, receive, send)
            return
        responder = _Responder(inst, request, scope, send)
        try:
            await self.app(scope, receive, responder)
        except Exception as exc:
            if not request.status:
                await responder.send_error_response()
            _finish(inst, request, scope, responder, exc, escaped=True)
            raise
        except BaseException as exc:  # cancellation: no response of ours
            _finish(inst, request, scope, responder, exc, escaped=True)
            raise
        _finish(inst, request, scope, responder, scope.get(ERROR_KEY), escaped=False)


def _start(inst: Instrumentation, scope: Scope) -> ServerRequest:
    headers = scope.get("headers") or ()
    propagated = False
    user_agent = None
    request_bytes = None
    fields = inst.propagation_fields
    for name, value in headers:
        if name in fields:
            propagated = True
        elif name == b"user-agent":
            user_agent = value
        elif name == b"content-length" and value.isdigit():
            request_bytes = int(value)
    query = scope.get("query_string")
    request = ServerRequest(
        inst,
        scope.get("method", "GET"),
        scope.get("scheme", "http"),
        scope.get("path", ""),
        query.decode("latin-1") if query else "",
        inst.propagator.extract(headers, getter=RAW_GETTER) if propagated else None,
        user_agent=user_agent.decode("latin-1") if user_agent is not None else None,
        http_version=scope.get("http_version"),
        request_bytes=request_bytes,
        captured_headers=inst.request_headers.attributes(headers) if inst.request_headers.enabled else None,
    )
    scope[SPAN_KEY] = request.span
    return request


def _finish_common(inst: Instrumentation, request: Any, scope: Scope) -> bool:
    """The compiled request's own ending, for a request that ended the common way; False: ``_finish``."""
    try:
        route = route_template(scope, request.status)
        peer = request.peer
        trusted = inst.trusted_proxies
        if not peer:
            client_ip = None
        elif trusted.networks:  # a trusted proxy may say who the client is
            client_ip = client_address(peer, scope.get("headers") or (), trusted)
        else:
            client_ip = peer
    except Exception:  # _finish reports it and ends the request without a route
        return False
    try:
        return bool(request.finish_common(route, client_ip, scope.get("scheme"), CLEANUP_KEY not in scope))
    except Exception as failure:  # part of the ending ran: reported, never run twice
        report_once("ending a request span", failure)
        return True


def _finish(
    inst: Instrumentation,
    request: RequestLogic,
    scope: Scope,
    responder: _Responder | Any,
    exc: BaseException | None,
    *,
    escaped: bool,
) -> None:
    try:
        route = route_template(scope, request.status)
        peer = responder.peer
        client_ip = client_address(peer, scope.get("headers") or (), inst.trusted_proxies) if peer else None
        captured = responder.response_headers
        response_attributes = inst.response_headers.attributes(captured) if captured is not None else None
    except Exception as failure:
        report_once("reading the request's route", failure)
        route, client_ip, response_attributes = None, None, None
    request.finish(
        route,
        exc,
        escaped=escaped,
        client=client_ip,
        scheme=scope.get("scheme"),
        response_attributes=response_attributes,
        background=CLEANUP_KEY not in scope,
    )


class _Responder:
    """The send wrapper of one request: status, body bytes, the trace header, the response's end.

    The wrapper is this object itself (``__call__``), not a closure stored on it:
    a closure referring back to its owner would make every request a reference
    cycle, left for the garbage collector — at thousands of requests a second
    that was a young-generation collection every 50 requests and a full one
    every few seconds.
    """

    __slots__ = ("capture_response", "inst", "peer", "request", "response_headers", "server_send", "trace_header")

    def __init__(self, inst: Instrumentation, request: ServerRequest, scope: Scope, send: Send) -> None:
        self.inst = inst
        self.request = request
        self.server_send = send
        self.trace_header = inst.trace_header
        self.capture_response = inst.response_headers.enabled
        self.response_headers: Any = None
        client = scope.get("client")
        # The peer as the server saw it, before any proxy-headers middleware rewrote it.
        self.peer: str | None = client[0] if client else None

    def __call__(self, message: Message) -> Awaitable[None]:
        """The app's ``send``: returns the server's own awaitable, except for the response's last
        message, whose completion is recorded after the server took it (``_send_last``). No
        coroutine of ours per message in between: one frame fewer on every ``await send(...)``."""
        kind = message["type"]
        if kind == "http.response.body":
            self.request.response_bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                return self._send_last(message)
        elif kind == "http.response.start":
            request = self.request
            request.status = message["status"]
            trace_header = self.trace_header
            if trace_header is not None:
                # A new list: the app may reuse its own (e.g. a module-level Response).
                message["headers"] = [*message.get("headers", ()), (trace_header, request.trace_header())]
            if self.capture_response:
                self.response_headers = message.get("headers")
        elif kind in _RESPONSE_END:
            return self._send_last(message)
        return self.server_send(message)

    async def _send_last(self, message: Message) -> None:
        await self.server_send(message)
        self.request.response_complete()

    async def send_error_response(self) -> None:
        await _send_error_response(self.inst, self.request, self.server_send)


async def _send_error_response(inst: Instrumentation, request: RequestLogic, server_send: Send) -> None:
    """Answer 500 ourselves when the app raised before responding, so the
    response still carries the trace id; the server then logs the error."""
    body = b"Internal Server Error"
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
    if inst.trace_header is not None:
        headers.append((inst.trace_header, request.trace_header()))
    request.status = 500
    request.response_bytes += len(body)
    try:
        await server_send({"type": "http.response.start", "status": 500, "headers": headers})
        await server_send({"type": "http.response.body", "body": body})
    except Exception as exc:  # the client may be gone
        report_once("sending a 500 response", exc)
