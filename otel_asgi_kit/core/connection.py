"""What one WebSocket connection records, whatever the protocol: one SERVER span and the WebSocket metrics.

Messages are counted as they flow (two integer additions on cells looked up
once), so message rates are right while the connection is open; the span is
written once, when the connection ends. Never a span per message.
"""

from __future__ import annotations

from time import perf_counter

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_asgi_kit.core import active
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.core.propagation import trace_header_value
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.metrics.websocket_aggregator import MessageCell
from otel_asgi_kit.sdk import current

# 1000 normal, 1001 going away, 1005 no status: the ends of a healthy connection.
NORMAL_CLOSE = frozenset({1000, 1001, 1005})
_UNCOUNTED = MessageCell()  # messages before accept, or with metrics off, go nowhere


class Connection:
    __slots__ = (
        "accepted",
        "close_code",
        "inst",
        "received",
        "received_cell",
        "route",
        "sent",
        "sent_cell",
        "span",
        "start",
        "task",
        "token",
    )

    def __init__(self, inst: Instrumentation, path: str, scheme: str, parent: Context | None) -> None:
        self.inst = inst
        self.span = inst.tracer.start_span(
            "WS",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"url.path": path, "url.scheme": scheme, "network.protocol.name": "websocket"},
        )
        self.token = current.attach_span(self.span, parent)
        self.task = active.enter(self.span)
        self.start = perf_counter()
        self.received = self.sent = 0
        self.close_code: int | None = None
        self.accepted = False
        self.route: str | None = None
        self.received_cell = self.sent_cell = _UNCOUNTED
        ws = inst.websocket
        if ws is not None:
            ws.opened()

    def trace_header(self) -> bytes:
        return trace_header_value(self.span)

    def accept(self, route: str | None) -> None:
        """The handshake succeeded; ``route`` is the matched template, if any."""
        self.accepted = True
        self.route = route
        ws = self.inst.websocket
        if ws is not None:
            try:
                self.received_cell, self.sent_cell = ws.cells(route)
            except Exception as exc:
                report_once("counting WebSocket messages", exc)

    def message_received(self, size: int) -> None:
        self.received += 1
        cell = self.received_cell
        cell.messages += 1
        cell.bytes += size

    def message_sent(self, size: int) -> None:
        self.sent += 1
        cell = self.sent_cell
        cell.messages += 1
        cell.bytes += size

    def closed(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code

    def finish(self, route: str | None, exc: BaseException | None) -> None:
        try:
            self._finish(route, exc)
        except Exception as failure:
            report_once("ending a WebSocket span", failure)

    def _finish(self, route: str | None, exc: BaseException | None) -> None:
        elapsed = perf_counter() - self.start
        span = self.span
        if route is not None:
            span.update_name(f"WS {route}")
            span.set_attribute("http.route", route)
        code = self.close_code
        if code is not None:
            span.set_attribute("websocket.close.code", code)
        span.set_attributes({"websocket.messages.received": self.received, "websocket.messages.sent": self.sent})
        if exc is not None:
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"[:256]))
            span.set_attribute("error.type", type(exc).__qualname__)
        elif code is not None and code not in NORMAL_CLOSE and code >= 1011:
            span.set_status(Status(StatusCode.ERROR, f"closed with {code}"))
            span.set_attribute("error.type", str(code))
        span.end()
        active.leave(self.task)
        if exc is None:
            current.detach(self.token)
        ws = self.inst.websocket
        if ws is not None:
            ws.closed(route if route is not None else self.route, elapsed)
