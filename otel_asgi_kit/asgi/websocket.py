"""One SERVER span per WebSocket connection, and connection/message metrics.

Messages are only counted (two integers per direction, on the request's own
state); span and metrics are written once, when the connection ends. The
``traceresponse`` header rides on the accept message.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_asgi_kit.asgi.propagation import extract_parent, trace_header_value
from otel_asgi_kit.asgi.routes import route_template
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from otel_asgi_kit.asgi.middleware import Instrumentation

# 1000 normal, 1001 going away, 1005 no status: the ends of a healthy connection.
_NORMAL_CLOSE = frozenset({1000, 1001, 1005})


async def traced_websocket(inst: Instrumentation, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        conn = _Connection(inst, scope)
    except Exception as exc:
        report_once("starting a WebSocket span", exc)
        await app(scope, receive, send)
        return
    try:
        await app(scope, conn.wrap_receive(receive), conn.wrap_send(send))
    except BaseException as exc:
        conn.finish(scope, exc)
        raise
    conn.finish(scope, None)


class _Connection:
    __slots__ = (
        "accepted",
        "close_code",
        "inst",
        "received",
        "received_bytes",
        "sent",
        "sent_bytes",
        "span",
        "start",
        "token",
    )

    def __init__(self, inst: Instrumentation, scope: Scope) -> None:
        from otel_asgi_kit.asgi.middleware import SPAN_KEY

        self.inst = inst
        parent = extract_parent(inst.propagator, inst.propagation_fields, scope.get("headers") or ())
        self.span = inst.tracer.start_span(
            "WS",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "url.path": scope.get("path", ""),
                "url.scheme": scope.get("scheme", "ws"),
                "network.protocol.name": "websocket",
            },
        )
        self.token = context.attach(trace.set_span_in_context(self.span, parent))
        scope[SPAN_KEY] = self.span
        self.start = perf_counter()
        self.received = self.received_bytes = self.sent = self.sent_bytes = 0
        self.close_code: int | None = None
        self.accepted = False
        ws = inst.websocket
        if ws is not None:
            ws.active.add(1)

    def wrap_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                self.received += 1
                self.received_bytes += _size(message)
            elif kind == "websocket.disconnect" and self.close_code is None:
                self.close_code = message.get("code", 1005)
            return message

        return wrapped

    def wrap_send(self, send: Send) -> Send:
        header = self.inst.trace_header

        async def wrapped(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.send":
                self.sent += 1
                self.sent_bytes += _size(message)
            elif kind == "websocket.accept":
                self.accepted = True
                if header is not None:
                    message["headers"] = [*message.get("headers", ()), (header, trace_header_value(self.span))]
            elif kind == "websocket.close" and self.close_code is None:
                self.close_code = message.get("code", 1000)
            await send(message)

        return wrapped

    def finish(self, scope: Scope, exc: BaseException | None) -> None:
        try:
            self._finish(scope, exc)
        except Exception as failure:
            report_once("ending a WebSocket span", failure)

    def _finish(self, scope: Scope, exc: BaseException | None) -> None:
        elapsed = perf_counter() - self.start
        span = self.span
        route = route_template(scope, 0 if self.accepted else 404)
        if route is not None:
            span.update_name(f"WS {route}")
            span.set_attribute("http.route", route)
        code = self.close_code
        if code is not None:
            span.set_attribute("websocket.close.code", code)
        span.set_attributes(
            {
                "websocket.messages.received": self.received,
                "websocket.messages.sent": self.sent,
            }
        )
        if exc is not None:
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"[:256]))
            span.set_attribute("error.type", type(exc).__qualname__)
        elif code is not None and code not in _NORMAL_CLOSE and code >= 1011:
            span.set_status(Status(StatusCode.ERROR, f"closed with {code}"))
            span.set_attribute("error.type", str(code))
        span.end()
        if exc is None:
            context.detach(self.token)
        ws = self.inst.websocket
        if ws is None:
            return
        attrs: dict[str, Any] = {"http.route": route} if route is not None else {}
        ws.active.add(-1)
        ws.duration.record(elapsed, attrs)
        for direction, count, size in (
            ("received", self.received, self.received_bytes),
            ("sent", self.sent, self.sent_bytes),
        ):
            if count:
                direction_attrs = {**attrs, "websocket.message.direction": direction}
                ws.messages.add(count, direction_attrs)
                ws.bytes.add(size, direction_attrs)


def _size(message: Message) -> int:
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    return len(text.encode("utf-8", "replace")) if text is not None else 0
