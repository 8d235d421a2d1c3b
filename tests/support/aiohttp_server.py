"""A real aiohttp server in a thread of the test process, recording with an in-memory instrumentation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from otel_asgi_kit import _state
from otel_asgi_kit.aiohttp.hooks import install_aiohttp_hooks
from otel_asgi_kit.core.instrumentation import Instrumentation
from tests.support.servers import free_port


@contextmanager
def serve_in_thread(app: web.Application, instrumentation: Instrumentation) -> Iterator[str]:
    """Serve ``app`` with AppRunner/TCPSite on 127.0.0.1; yields the base URL. The kit's hooks are installed."""
    install_aiohttp_hooks(lambda: None)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    with _state.use_instrumentation(instrumentation):
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
