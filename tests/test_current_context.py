"""The current span read and a request's span attached on OpenTelemetry's context variable directly
(``sdk.current``): the same answers as the public API, and the public API when the shortcut cannot apply."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_asgi_kit.sdk import current
from tests.support.servers import ROOT


def test_the_shortcut_applies_and_agrees_with_the_public_api() -> None:
    assert current.FAST
    assert current.span_context() is None  # no span, or only the invalid one
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("outer") as outer:
        assert current.span_context() is outer.get_span_context()
        inner = tracer.start_span("inner")
        token = current.attach_span(inner, None)
        try:
            assert trace.get_current_span() is inner
            assert current.span_context() is inner.get_span_context()
        finally:
            current.detach(token)
        assert trace.get_current_span() is outer
    assert current.span_context() is None


def test_attach_over_a_given_parent_keeps_the_parent_context_values() -> None:
    """As ``context.attach(trace.set_span_in_context(span, parent))``: the parent's other values stay."""
    parent = context_api.set_value("k", "v", context_api.Context())
    span = NonRecordingSpan(SpanContext(5, 6, is_remote=False, trace_flags=TraceFlags(1)))
    token = current.attach_span(span, parent)
    try:
        assert context_api.get_value("k") == "v"
        assert current.span_context() == SpanContext(5, 6, is_remote=False, trace_flags=TraceFlags(1))
    finally:
        current.detach(token)
    assert context_api.get_value("k") is None


def test_a_span_class_with_its_own_get_span_context_is_asked() -> None:
    class Odd(NonRecordingSpan):
        def get_span_context(self) -> SpanContext:
            return SpanContext(9, 10, is_remote=False)

    token = context_api.attach(trace.set_span_in_context(Odd(SpanContext(1, 2, is_remote=False))))
    try:
        assert current.span_context() == SpanContext(9, 10, is_remote=False)
    finally:
        context_api.detach(token)


def test_another_runtime_context_means_the_public_api_and_logs_still_carry_the_trace() -> None:
    """A runtime context without ``_current_context``: the shortcut is off, doctor's list says so, and
    a request's log line (stdout JSON) still carries the request's trace id."""
    script = textwrap.dedent(
        """
        import asyncio, contextvars, io, json, logging, sys
        import opentelemetry.context as ctx
        from opentelemetry.context.context import _RuntimeContext

        class Other(_RuntimeContext):
            def __init__(self):
                self._var = contextvars.ContextVar("other", default=ctx.Context())
            def attach(self, context):
                return self._var.set(context)
            def get_current(self):
                return self._var.get()
            def detach(self, token):
                self._var.reset(token)

        ctx._RUNTIME_CONTEXT = Other()
        import httpx
        import otel_asgi_kit
        from otel_asgi_kit.sdk import current, shortcuts

        kit = otel_asgi_kit.configure()
        log = logging.getLogger("app")

        async def app(scope, receive, send):
            log.info("inside")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"served"})

        async def main():
            transport = httpx.ASGITransport(app=otel_asgi_kit.instrument(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get("/x")

        response = asyncio.run(main())
        status = shortcuts.status()
        kit.shutdown()
        print(json.dumps({"fast": current.FAST, "status": status, "trace": response.headers["traceresponse"]}))
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_SERVICE_NAME": "fence",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_ASGI_KIT_PAGES": "false",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["fast"] is False
    assert report["status"]["current span read directly"] is False
    trace_id = report["trace"].split("-")[1]
    (line,) = [json.loads(x) for x in lines[:-1] if '"inside"' in x]
    assert line["trace.id"] == trace_id
