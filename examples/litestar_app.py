"""Litestar: a route with a parameter, a router prefix, a failing route."""

import logging

from litestar import Litestar, Router, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect

log = logging.getLogger("shop")


@get("/items/{item_id:int}")
async def item(item_id: int) -> dict[str, int]:
    log.info("looking up item %s", item_id)
    return {"id": item_id}


@get("/fail")
async def fail() -> None:
    raise RuntimeError("boom")


@get("/healthz")
async def health() -> str:
    return "ok"


@websocket("/ws/{room:str}")
async def echo(socket: WebSocket, room: str) -> None:
    await socket.accept()
    try:
        while True:
            await socket.send_text(await socket.receive_text())
    except WebSocketDisconnect:
        pass


v1 = Router(path="/v1", route_handlers=[item])
app = Litestar(route_handlers=[item, fail, health, v1, echo])
