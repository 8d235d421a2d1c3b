"""Trace context for ``loop.run_in_executor`` work.

``asyncio.to_thread`` copies the context; ``run_in_executor`` does not, so a
log line or span in the worker thread loses its trace. The patch runs the
function inside a copy of the caller's context, as ``to_thread`` does.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
from typing import Any

from otel_asgi_kit.patching import patch


def _make(original: Any) -> Any:
    def run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
        ctx = contextvars.copy_context()
        return original(self, executor, functools.partial(ctx.run, func), *args)

    return run_in_executor


def install_executor_context() -> None:
    loops: list[type[Any]] = [asyncio.BaseEventLoop]
    uvloop = sys.modules.get("uvloop")
    if uvloop is None:
        try:
            import uvloop
        except ImportError:
            uvloop = None
    if uvloop is not None:
        loops.append(uvloop.Loop)
    for cls in loops:
        patch(cls, "run_in_executor", _make)
