"""The ASGI WebSocket adapter: one core ``Connection`` per ``websocket`` scope.

The ``traceresponse`` header rides on the accept message; messages are
counted as they pass through the wrapped ``receive`` and ``send``.
"""

from __future__ import annotations

from otel_asgi_kit.asgi.keys import SPAN_KEY
from otel_asgi_kit.asgi.routes import route_template
from otel_asgi_kit.core.connection import Connection
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.core.propagation import extract_parent
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.types import ASGIApp, Message, Receive, Scope, Send


async def traced_websocket(inst: Instrumentation, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        parent = extract_parent(inst.propagator, inst.propagation_fields, scope.get("headers") or ())
        conn = Connection(inst, scope.get("path", ""), scope.get("scheme", "ws"), parent)
        scope[SPAN_KEY] = conn.span
    except Exception as exc:
        report_once("starting a WebSocket span", exc)
        await app(scope, receive, send)
        return
    try:
        await app(scope, _wrap_receive(conn, receive), _wrap_send(inst, conn, scope, send))
    except BaseException as exc:
        conn.finish(_route(scope, conn), exc)
        raise
    conn.finish(_route(scope, conn), None)


def _route(scope: Scope, conn: Connection) -> str | None:
    return route_template(scope, 0 if conn.accepted else 404)


def _wrap_receive(conn: Connection, receive: Receive) -> Receive:
    async def wrapped() -> Message:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            conn.message_received(_size(message))
        elif kind == "websocket.disconnect":
            conn.closed(message.get("code", 1005))
        return message

    return wrapped


def _wrap_send(inst: Instrumentation, conn: Connection, scope: Scope, send: Send) -> Send:
    header = inst.trace_header

    async def wrapped(message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            conn.message_sent(_size(message))
        elif kind == "websocket.accept":
            conn.accept(route_template(scope, 0))
            if header is not None:
                message["headers"] = [*message.get("headers", ()), (header, conn.trace_header())]
        elif kind == "websocket.close":
            conn.closed(message.get("code", 1000))
        await send(message)

    return wrapped


def _size(message: Message) -> int:
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    return len(text.encode("utf-8", "replace")) if text is not None else 0
