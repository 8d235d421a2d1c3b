"""Which request each event-loop task is serving right now, for the blocked-loop detector.

The request core registers its span under the current task when a request
starts and removes it when the request ends. The watchdog thread asks
``asyncio.current_task(loop)`` which task the blocked loop is running and
looks its span up here: no frames are read, nothing depends on how an
adapter names its locals. Per request this is one ``current_task()`` call,
one dict store and one dict pop.
"""

from __future__ import annotations

import asyncio
from asyncio import AbstractEventLoop
from typing import Any

from opentelemetry.trace import Span, SpanContext

_spans: dict[Any, Span] = {}


def enter(span: Span) -> Any:
    """Register ``span`` for the running task; returns the key to pass to ``leave``."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop (a sync caller, another async library)
        return None
    if task is not None:
        _spans[task] = span
    return task


def leave(task: Any) -> None:
    if task is not None:
        _spans.pop(task, None)


def span_context_on(loop: AbstractEventLoop) -> SpanContext | None:
    """The span context of the request the task running on ``loop`` serves; safe from any thread."""
    try:
        task = asyncio.current_task(loop)
    except Exception:  # a loop implementation without task tracking
        return None
    span = _spans.get(task) if task is not None else None
    if span is None:
        return None
    ctx = span.get_span_context()
    return ctx if ctx.is_valid else None
