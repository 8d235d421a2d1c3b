"""The tutorials' health-check service: ``/health`` answers ``{"status": "ok"}``.

The tutorial measured response time and errors in a middleware and served
them on ``/metrics``; here the kit does both (``http.server.request.duration``
by route and status on the admin port) and leaves ``/health`` untraced.
A handler that raises (``/fail``) is answered 500 by aiohttp and recorded as
an error with its exception.

    opentelemetry-instrument python -m aiohttp.web -H 127.0.0.1 -P 8080 examples.aiohttp_health_app:create_app
"""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

log = logging.getLogger("health")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def user(request: web.Request) -> web.Response:
    log.info("user %s", request.match_info["user_id"])
    return web.json_response({"id": request.match_info["user_id"]})


async def fail(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


def create_app(argv: list[str] | None = None) -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/users/{user_id}", user)
    app.router.add_get("/fail", fail)
    return app


async def serve(port: int) -> None:
    """The AppRunner/TCPSite set-up some services use instead of run_app."""
    import asyncio

    runner = web.AppRunner(create_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    import asyncio

    asyncio.run(serve(int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "8080"))))
