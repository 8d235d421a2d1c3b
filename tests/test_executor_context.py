"""Trace context follows work into executors."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_asgi_kit.executor_context import install_executor_context


def _current_trace_id() -> int:
    return trace.get_current_span().get_span_context().trace_id


def test_run_in_executor_and_to_thread_keep_the_span() -> None:
    """Inside a span, run_in_executor (patched) and to_thread (stdlib) both see that span."""
    install_executor_context()
    tracer = TracerProvider().get_tracer("t")

    async def main() -> tuple[int, int, int]:
        with tracer.start_as_current_span("request") as span:
            loop = asyncio.get_running_loop()
            in_executor = await loop.run_in_executor(None, _current_trace_id)
            in_thread = await asyncio.to_thread(_current_trace_id)
            return span.get_span_context().trace_id, in_executor, in_thread

    expected, in_executor, in_thread = asyncio.run(main())
    assert in_executor == expected and in_thread == expected


def test_uvloop_is_patched_too() -> None:
    """uvloop's loop class gets the same patch."""
    import uvloop

    install_executor_context()
    tracer = TracerProvider().get_tracer("t")

    async def main() -> tuple[int, int]:
        with tracer.start_as_current_span("request") as span:
            found = await asyncio.get_running_loop().run_in_executor(None, _current_trace_id)
            return span.get_span_context().trace_id, found

    expected, found = uvloop.run(main())
    assert found == expected
