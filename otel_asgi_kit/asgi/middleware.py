"""The request path: one SERVER span and the HTTP metrics per HTTP request.

Everything that can be decided at start-up is in ``Instrumentation``; the
per-request work is a header scan, one span, one send wrapper and a few
metric records with cached attribute sets. Failures of the telemetry itself
are contained: the app's request goes on uninstrumented.
"""

from __future__ import annotations

import logging
import re
from time import perf_counter
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Status, StatusCode, TracerProvider

from otel_asgi_kit.asgi.client import client_address
from otel_asgi_kit.asgi.headers import GETTER, HeaderCapture
from otel_asgi_kit.asgi.propagation import trace_header_value
from otel_asgi_kit.asgi.routes import ERROR_KEY, route_template
from otel_asgi_kit.asgi.server_span import ServerSpan, ServerSpanStarter
from otel_asgi_kit.asgi.websocket import traced_websocket
from otel_asgi_kit.failsafe import report_once
from otel_asgi_kit.loop_health import ensure_loop_monitor
from otel_asgi_kit.metrics.http_aggregator import HttpServerMetrics
from otel_asgi_kit.metrics.instruments import SCOPE_NAME, SCOPE_VERSION, HttpServerInstruments, WebSocketInstruments
from otel_asgi_kit.redaction import QueryRedactor
from otel_asgi_kit.settings import Settings
from otel_asgi_kit.types import ASGIApp, Message, Receive, Scope, Send

SPAN_KEY = "otel_asgi_kit.span"
_FASTAPI_NATIVE = "fastapi.telemetry"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.30.0"
security_log = logging.getLogger("otel_asgi_kit.security")
_AUTH_FAILURES = frozenset({401, 403})
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")}


class Instrumentation:
    """What the request path needs, built once from settings and providers."""

    def __init__(
        self,
        settings: Settings,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider | None,
        http_metrics: HttpServerMetrics | None = None,
    ) -> None:
        self.tracer = tracer_provider.get_tracer(SCOPE_NAME, SCOPE_VERSION, schema_url=_SCHEMA_URL)
        self.server_spans = ServerSpanStarter(self.tracer)
        meter = (
            meter_provider.get_meter(SCOPE_NAME, SCOPE_VERSION, schema_url=_SCHEMA_URL)
            if meter_provider is not None
            else None
        )
        self.instruments = HttpServerInstruments(meter) if meter is not None else None
        self.http: HttpServerMetrics | None = None
        if meter is not None:
            self.http = http_metrics or HttpServerMetrics(settings.duration_buckets)
        self.websocket = WebSocketInstruments(meter) if meter is not None else None
        patterns = settings.excluded_urls
        self.excluded = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        self.trace_header = settings.trace_response_header.encode("latin-1") or None
        self.request_headers = HeaderCapture("request", settings.capture_request_headers, settings.sanitize_fields)
        self.response_headers = HeaderCapture("response", settings.capture_response_headers, settings.sanitize_fields)
        self.query = QueryRedactor(settings.redact_query_params)
        self.trusted_proxies = settings.trusted_proxies
        self.propagator = propagate.get_global_textmap()
        self.propagation_fields = frozenset(f.encode("latin-1") for f in self.propagator.fields)


class KitMiddleware:
    """ASGI middleware; wraps any ASGI 3 app. Scopes it does not trace pass straight through."""

    def __init__(self, app: ASGIApp, *, instrumentation: Instrumentation | None = None) -> None:
        """``instrumentation``: fixed for this middleware; by default the process's, looked up per request
        (a module-level read) so ``configure()`` may run after wrapping and tests may swap it."""
        from otel_asgi_kit.bootstrap import current_instrumentation

        self.app = app
        self._instrumentation = instrumentation
        self._lookup = current_instrumentation

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
        inst = self._instrumentation or self._lookup()
        if inst is None or (inst.excluded is not None and inst.excluded.search(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await traced_websocket(inst, self.app, scope, receive, send)
            return
        try:
            request = _Request(inst, scope)
        except Exception as exc:  # telemetry must never break the app
            report_once("starting a request span", exc)
            await self.app(scope, receive, send)
            return
        wrapped_send = request.send_wrapper(send)
        try:
            await self.app(scope, receive, wrapped_send)
        except Exception as exc:
            if not request.status:
                await request.send_error_response(wrapped_send)
            request.finish(scope, exc)
            raise
        except BaseException as exc:  # cancellation: no response of ours
            request.finish(scope, exc)
            raise
        request.finish(scope, None)


class _Request:
    """Per-request state; lives only for one request (never on the middleware)."""

    __slots__ = (
        "inst",
        "method",
        "peer",
        "request_bytes",
        "response_bytes",
        "response_headers",
        "scheme",
        "span",
        "start",
        "status",
        "token",
    )

    def __init__(self, inst: Instrumentation, scope: Scope) -> None:
        self.inst = inst
        raw_method = scope.get("method", "GET")
        method = _METHODS.get(raw_method, "_OTHER")
        self.method = method
        self.scheme = scheme = scope.get("scheme", "http")
        self.status = 0
        self.response_bytes = 0
        self.request_bytes: int | None = None
        self.response_headers: Any = None
        client = scope.get("client")
        # The peer as the server saw it, before any proxy-headers middleware rewrote it.
        self.peer: str | None = client[0] if client else None
        headers = scope.get("headers") or ()
        propagated = False
        user_agent = None
        fields = inst.propagation_fields
        for name, value in headers:
            if name in fields:
                propagated = True
            elif name == b"user-agent":
                user_agent = value
            elif name == b"content-length" and value.isdigit():
                self.request_bytes = int(value)
        parent = inst.propagator.extract(headers, getter=GETTER) if propagated else None
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope.get("path", ""),
            "url.scheme": scheme,
        }
        query = scope.get("query_string")
        if query:
            attributes["url.query"] = inst.query.redact(query.decode("latin-1"))
        if method == "_OTHER":
            attributes["http.request.method_original"] = str(raw_method)[:32]
        if user_agent is not None:
            attributes["user_agent.original"] = user_agent.decode("latin-1")
        http_version = scope.get("http_version")
        if http_version:
            attributes["network.protocol.version"] = http_version
        span = inst.server_spans.start("HTTP" if method == "_OTHER" else method, parent, attributes)
        if inst.request_headers.enabled:
            # Header names come from the client: the SDK's checks and limits apply to these.
            span.set_attributes(inst.request_headers.attributes(headers))
        self.span = span
        self.token = context.attach(trace.set_span_in_context(span, parent))
        scope[SPAN_KEY] = span
        http = inst.http
        if http is not None:
            http.request_started(method, scheme)
        self.start = perf_counter()

    def send_wrapper(self, send: Send) -> Send:
        trace_header = self.inst.trace_header
        capture_response = self.inst.response_headers.enabled

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                self.response_bytes += len(message.get("body", b""))
            elif kind == "http.response.start":
                self.status = message["status"]
                if trace_header is not None:
                    # A new list: the app may reuse its own (e.g. a module-level Response).
                    message["headers"] = [*message.get("headers", ()), (trace_header, trace_header_value(self.span))]
                if capture_response:
                    self.response_headers = message.get("headers")
            await send(message)

        return send_wrapper

    def _security_event(self, scope: Scope, route: str | None, status: int, client: str | None) -> None:
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

    async def send_error_response(self, send: Send) -> None:
        """Answer 500 ourselves when the app raised before responding, so the
        response still carries the trace id; the server then logs the error."""
        body = b"Internal Server Error"
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", b"%d" % len(body)),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        except Exception as exc:  # the client may be gone
            report_once("sending a 500 response", exc)

    def finish(self, scope: Scope, exc: BaseException | None) -> None:
        try:
            self._finish(scope, exc)
        except Exception as failure:
            report_once("ending a request span", failure)

    def _finish(self, scope: Scope, escaped: BaseException | None) -> None:
        elapsed = perf_counter() - self.start
        exc = escaped
        span = self.span
        status = self.status
        error_type: str | None = None
        if exc is None:
            exc = scope.get(ERROR_KEY)
        if exc is not None:
            error_type = type(exc).__qualname__
            if not status:
                status = 500  # the server answers 500 when the app raised before responding
            span.record_exception(exc, escaped=escaped is not None)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"[:256]))
        elif status >= 500:
            error_type = str(status)
            span.set_status(Status(StatusCode.ERROR))
        route = route_template(scope, status)
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
        client = client_address(self.peer, scope.get("headers") or (), self.inst.trusted_proxies)
        if client:
            attributes["client.address"] = client
        if type(span) is ServerSpan:
            span.set_kit_attributes(attributes, name)
        else:
            if name is not None:
                span.update_name(name)
            span.set_attributes(attributes)
        if self.response_headers is not None:
            span.set_attributes(self.inst.response_headers.attributes(self.response_headers))
        if status in _AUTH_FAILURES:
            self._security_event(scope, route, status, client)
        span.end()
        if escaped is None:
            context.detach(self.token)
        # On an exception the context stays attached: the server's own error log,
        # written after the exception leaves the app, then carries the trace id.
        # Each request runs in its own task, so nothing leaks to the next one.
        http = self.inst.http
        if http is not None:
            http.request_finished(
                (method, route, status, error_type, scope.get("scheme", self.scheme)),
                elapsed,
                self.request_bytes,
                self.response_bytes,
                (method, self.scheme),
            )
