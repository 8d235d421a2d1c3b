"""A bounded final flush, run where the process really ends.

uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process
dies by the signal before ``atexit`` runs; the flush is therefore hooked to
the end of ``uvicorn.Server.serve`` (also used by gunicorn's
``UvicornWorker``), with ``atexit`` as the fallback for everything else. The
three pipelines flush in parallel and the whole flush is bounded by
``OTEL_ASGI_KIT_SHUTDOWN_TIMEOUT``: with a collector that refuses or never
answers, the process still exits on time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from otel_asgi_kit.failsafe import warn


class BoundedShutdown:
    def __init__(self, steps: Sequence[tuple[str, Callable[[], object]]], timeout_s: float) -> None:
        self._steps = steps
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        deadline = time.monotonic() + self._timeout_s
        threads = [
            threading.Thread(target=_contained(name, step), name=f"otel-asgi-kit-flush-{name}", daemon=True)
            for name, step in self._steps
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [name for (name, _), thread in zip(self._steps, threads, strict=True) if thread.is_alive()]
        if stuck:
            # Daemon threads: they do not hold the process once we return.
            warn(
                f"final flush of {', '.join(stuck)} did not finish within {self._timeout_s:g}s "
                "(OTEL_ASGI_KIT_SHUTDOWN_TIMEOUT); exiting without it"
            )


def _contained(name: str, step: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            step()
        except Exception as exc:
            warn(f"final flush of {name} failed: {exc}")

    return run
