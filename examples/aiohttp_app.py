"""The tutorials' aiohttp.web app, with nothing added for telemetry.

What the tutorials wrote by hand — a Prometheus middleware counting requests,
latency and requests in progress by endpoint, a ``/metrics`` route, a timing
middleware — is gone: under ``opentelemetry-instrument`` the kit records one
span per request named by the route, the same metrics on its admin port
(``/metrics`` on 9464) and the trace id in every log line.

    opentelemetry-instrument python examples/aiohttp_app.py 8080
    gunicorn examples.aiohttp_app:app -k aiohttp.GunicornWebWorker -w 2
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

log = logging.getLogger("shop")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The tutorials' error middleware: any unexpected exception becomes a JSON 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("request failed")
        return web.json_response({"error": str(exc)}, status=500)


async def test(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


async def test1(request: web.Request) -> web.Response:
    raise RuntimeError("boom")


async def item(request: web.Request) -> web.Response:
    item_id = request.match_info["item_id"]
    log.info("looking up item %s", item_id)
    await asyncio.to_thread(log.info, "in a worker thread")
    return web.json_response({"id": item_id})


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(int(request.query.get("chunks", "3"))):
        await response.write(b"x" * 100)
        await asyncio.sleep(float(request.query.get("pause", "0")))
    await response.write_eof()
    return response


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    v1 = web.Application()
    v1.router.add_get("/items/{item_id}", item)
    application = web.Application(middlewares=[error_middleware])
    application.router.add_get("/test", test)
    application.router.add_get("/test1", test1)
    application.router.add_get("/items/{item_id}", item)
    application.router.add_get("/stream", stream)
    application.router.add_get("/ws/{room}", echo)
    application.router.add_get("/health", health)
    application.add_subapp("/v1", v1)
    return application


app = make_app()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "8080")))
