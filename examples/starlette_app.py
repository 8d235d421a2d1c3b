"""Starlette: a route with a parameter, a mounted sub-app, a failing route, a loop-blocking route, a WebSocket."""

import asyncio
import logging
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

log = logging.getLogger("shop")


async def item(request: Request) -> JSONResponse:
    item_id = request.path_params["item_id"]
    log.info("looking up item %s", item_id)
    await asyncio.to_thread(log.info, "in a worker thread")
    return JSONResponse({"id": item_id})


async def fail(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


async def block(request: Request) -> PlainTextResponse:
    # A sync call in an async handler (the mistake the blocked-loop detector
    # reports): every other request on this worker waits.
    time.sleep(0.3)
    return PlainTextResponse("done")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


v1 = Starlette(routes=[Route("/items/{item_id}", item)])
app = Starlette(
    routes=[
        Route("/items/{item_id}", item),
        Route("/fail", fail),
        Route("/block", block),
        Route("/healthz", health),
        Mount("/v1", app=v1),
        WebSocketRoute("/ws/{room}", echo),
    ]
)
