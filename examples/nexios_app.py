"""Nexios: a route with a parameter, a mounted router, a failing route."""

import logging
from typing import Any

from nexios import NexiosApp
from nexios.routing import Router

log = logging.getLogger("shop")
app = NexiosApp()
v1 = Router(prefix="/v1")


@app.get("/items/{item_id}")
async def item(request: Any, response: Any, item_id: str) -> Any:
    log.info("looking up item %s", item_id)
    return response.json({"id": item_id})


@v1.get("/items/{item_id}")
async def v1_item(request: Any, response: Any, item_id: str) -> Any:
    return response.json({"id": item_id})


@app.get("/fail")
async def fail(request: Any, response: Any) -> Any:
    raise RuntimeError("boom")


@app.get("/healthz")
async def health(request: Any, response: Any) -> Any:
    return response.text("ok")


@app.ws_route("/ws/{room}")
async def echo(websocket: Any, **params: Any) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except Exception:  # the client went away
        return


app.mount_router(v1)
