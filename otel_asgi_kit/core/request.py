"""What one HTTP request records, whatever the protocol: the SERVER span, HTTP metrics, security event.

An adapter (ASGI middleware, aiohttp middleware) creates a ``ServerRequest``
when the request arrives, tells it when the response starts, how many body
bytes went out and when the last one did, and calls ``finish`` when the app
returned or raised. Everything that can be decided once is in
``Instrumentation``; the per-request work is one span, a few attribute
writes and a few additions to the kit's own metric aggregates.

The request ends when its response is complete (the last body message was
sent): that is the span's end and the recorded duration. Work the app does
after that in the same call (Starlette's and FastAPI's background tasks)
keeps the trace context, so its logs stay linked, and shows as an INTERNAL
span ``<span name> background`` in the same trace, never as request latency.
A response that started but was not completed (the client went away, or
the server cancelled the task) gets ``error.type`` ``incomplete_response``.
"""

from __future__ import annotations

import logging
from asyncio import CancelledError
from collections.abc import Mapping
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_asgi_kit.core import active
from otel_asgi_kit.core.instrumentation import Instrumentation
from otel_asgi_kit.core.propagation import trace_header_value
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.sdk import current
from otel_asgi_kit.sdk.server_span import ServerSpan

security_log = logging.getLogger("otel_asgi_kit.security")
INCOMPLETE = "incomplete_response"
# Work after the response shorter than this gets no span of its own (it is outside the request's
# duration either way): well above the GIL's 5 ms switch interval, so another thread holding the
# GIL (the export thread) or a busy host never makes a plain return look like background work.
BACKGROUND_MIN_S = 0.05
_AUTH_FAILURES = frozenset({401, 403})
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")}


class RequestLogic:
    """What a request does when it ends, on the fields of ``ServerRequest`` (below) or of the compiled
    request of ``otel_asgi_kit_accel`` (``asgi.fast``), which finishes only common requests itself."""

    if not TYPE_CHECKING:  # no fields of its own (mypy would read the empty slots as "no fields at all")
        __slots__ = ()
    inst: Instrumentation
    span: Any
    token: Any
    task: Any
    method: str
    scheme: str
    request_bytes: int | None
    status: int
    response_bytes: int
    start: float
    done_at: float
    done_ns: int

    def trace_header(self) -> bytes:
        """The ``traceresponse`` value for this request's response."""
        return trace_header_value(self.span)

    def response_started(self, status: int) -> None:
        self.status = status

    def response_complete(self) -> None:
        """The last body byte was handed to the server: the request's duration ends here."""
        if not self.done_at:
            self.done_at = perf_counter()
            self.done_ns = time_ns()

    def finish(
        self,
        route: str | None,
        exc: BaseException | None,
        *,
        escaped: bool = False,
        client: str | None = None,
        scheme: str | None = None,
        response_attributes: Mapping[str, Any] | None = None,
        background: bool = True,
    ) -> None:
        """Record the request. ``exc``: what the app raised (``escaped``) or a framework caught and answered.

        ``background``: whether time between the response's end and this call can be the app's own
        work (an ASGI app returns only after its background tasks); ``False`` when the adapter knows
        the app had returned before the response ended (aiohttp: only the server's access log runs).
        """
        try:
            self._finish(route, exc, escaped, client, scheme, response_attributes, background)
        except Exception as failure:
            report_once("ending a request span", failure)

    def _finish(
        self,
        route: str | None,
        exc: BaseException | None,
        escaped: bool,
        client: str | None,
        scheme: str | None,
        response_attributes: Mapping[str, Any] | None,
        background: bool,
    ) -> None:
        now = perf_counter()
        done_at = self.done_at
        elapsed = (done_at or now) - self.start
        span = self.span
        status = self.status
        error_type: str | None = None
        after_response: BaseException | None = None
        if exc is not None and done_at and escaped and status < 500 and background:
            # Raised after a successful response was complete: by work after it (a background task).
            # After a 5xx (Starlette sends its 500, then re-raises) it is the request's own error.
            after_response, exc = exc, None
        if exc is not None and not isinstance(exc, CancelledError):
            error_type = type(exc).__qualname__
            if not status:
                status = 500  # the server answers 500 when the app raised before responding
            span.record_exception(exc, escaped=escaped)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"[:256]))
        elif not done_at and (status or exc is not None):
            error_type = INCOMPLETE
            span.set_status(Status(StatusCode.ERROR, "the response was not completed (client gone or cancelled)"))
        elif status >= 500:
            error_type = str(status)
            span.set_status(Status(StatusCode.ERROR))
        method = self.method
        attributes: dict[str, Any] = {}
        name = None
        if route is not None:
            name = f"{'HTTP' if method == '_OTHER' else method} {route}"
            attributes["http.route"] = route
        if status:
            attributes["http.response.status_code"] = status
        if error_type is not None:
            attributes["error.type"] = error_type
        if client:
            attributes["client.address"] = client
        if type(span) is ServerSpan:
            span.set_kit_attributes(attributes, name)
        else:
            if name is not None:
                span.update_name(name)
            span.set_attributes(attributes)
        if response_attributes:
            span.set_attributes(response_attributes)
        if status in _AUTH_FAILURES:
            self._security_event(route, status, client)
        end_span = self.inst.end_span
        if end_span is not None and self.done_ns:
            end_span(span, self.done_ns)
        else:
            span.end(self.done_ns or None)
        if done_at and background and (after_response is not None or now - done_at >= BACKGROUND_MIN_S):
            self._background_span(name or method, after_response)
        active.leave(self.task)
        if not escaped:
            current.detach(self.token)
        # On an exception the context stays attached: the server's own error log,
        # written after the exception leaves the app, then carries the trace id.
        # Each request runs in its own task, so nothing leaks to the next one.
        http = self.inst.http
        if http is not None:
            span_context = span.get_span_context()
            exemplar = span_context if span_context.trace_flags & 1 else None
            decisions = self.inst.tail_decisions
            if exemplar is not None and decisions is not None and decisions.get(span_context.trace_id) is False:
                exemplar = None  # tail sampling dropped this trace: no exemplar may point at it
            http.request_finished(
                (method, route, status, error_type, scheme or self.scheme),
                elapsed,
                self.request_bytes,
                self.response_bytes,
                (method, self.scheme),
                # A sampled request becomes its latency bucket's exemplar: its trace is exported.
                exemplar,
                self.done_ns,
            )

    def _background_span(self, name: str, exc: BaseException | None) -> None:
        """The app's work after the response, as an INTERNAL child span from the response's end to now."""
        parent = trace.set_span_in_context(self.span)
        span = self.inst.tracer.start_span(
            f"{name} background", context=parent, kind=SpanKind.INTERNAL, start_time=self.done_ns
        )
        if exc is not None:
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"[:256]))
            span.set_attribute("error.type", type(exc).__qualname__)
        span.end()

    def _security_event(self, route: str | None, status: int, client: str | None) -> None:
        """A 401/403: counted by route and logged as an ECS authentication failure, never with the credential."""
        instruments = self.inst.instruments
        if instruments is not None:
            attrs: dict[str, str | int] = {"http.response.status_code": status}
            if route:
                attrs["http.route"] = route
            instruments.auth_failures.add(1, attrs)
        security_log.warning(
            "authentication failure: %s %s answered %d",
            self.method,
            route or "(no route)",
            status,
            extra={
                "event.category": "authentication",
                "event.outcome": "failure",
                "http.request.method": self.method,
                "http.route": route or "",
                "http.response.status_code": status,
                "client.address": client or "",
            },
        )


class ServerRequest(RequestLogic):
    """Per-request state; lives only for one request (never on an adapter object)."""

    __slots__ = (
        "done_at",
        "done_ns",
        "inst",
        "method",
        "request_bytes",
        "response_bytes",
        "scheme",
        "span",
        "start",
        "status",
        "task",
        "token",
    )

    def __init__(
        self,
        inst: Instrumentation,
        raw_method: str,
        scheme: str,
        path: str,
        query: str,
        parent: Context | None,
        *,
        user_agent: str | None = None,
        http_version: str | None = None,
        request_bytes: int | None = None,
        captured_headers: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.inst = inst
        method = _METHODS.get(raw_method, "_OTHER")
        self.method = method
        self.scheme = scheme
        self.status = 0
        self.response_bytes = 0
        self.request_bytes = request_bytes
        self.done_at = 0.0
        self.done_ns = 0
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": path, "url.scheme": scheme}
        if query:
            attributes["url.query"] = inst.query.redact(query)
        if method == "_OTHER":
            attributes["http.request.method_original"] = str(raw_method)[:32]
        if user_agent is not None:
            attributes["user_agent.original"] = user_agent
        if http_version:
            attributes["network.protocol.version"] = http_version
        span = inst.server_spans.start("HTTP" if method == "_OTHER" else method, parent, attributes)
        if captured_headers:
            # Header names come from the client: the SDK's checks and limits apply to these.
            span.set_attributes(captured_headers)
        self.span = span
        self.token = current.attach_span(span, parent)
        self.task = active.enter(span)
        http = inst.http
        if http is not None:
            http.request_started(method, scheme)
        self.start = perf_counter()
