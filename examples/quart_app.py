"""Quart: a route with a parameter, a blueprint prefix, a failing route."""

import logging

from quart import Blueprint, Quart, websocket

log = logging.getLogger("shop")
app = Quart(__name__)
v1 = Blueprint("v1", __name__, url_prefix="/v1")


@app.get("/items/<int:item_id>")
async def item(item_id: int) -> dict[str, int]:
    log.info("looking up item %s", item_id)
    return {"id": item_id}


@v1.get("/items/<int:item_id>")
async def v1_item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/fail")
async def fail() -> str:
    raise RuntimeError("boom")


@app.get("/healthz")
async def health() -> str:
    return "ok"


@app.websocket("/ws/<room>")
async def echo(room: str) -> None:
    while True:
        await websocket.send(await websocket.receive())


app.register_blueprint(v1)
