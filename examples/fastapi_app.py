"""FastAPI: a route with a parameter, an included router, a mounted sub-app, a failing route."""

import logging

from fastapi import APIRouter, FastAPI, Header, HTTPException, WebSocket, WebSocketDisconnect

log = logging.getLogger("shop")
app = FastAPI()
router = APIRouter(prefix="/api")
v1 = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    log.info("looking up item %s", item_id)
    return {"id": item_id}


@router.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, int]:
    return {"order": order_id}


@v1.get("/items/{item_id}")
async def v1_item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/fail")
async def fail() -> None:
    raise RuntimeError("boom")


@app.get("/private")
async def private(authorization: str = Header(default="")) -> dict[str, str]:
    if authorization != "Bearer letmein":
        raise HTTPException(status_code=401, detail="unauthorized")
    return {"secret": "data"}


@app.get("/healthz")
async def health() -> str:
    return "ok"


@app.websocket("/ws/{room}")
async def echo(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


app.include_router(router)
app.mount("/v1", v1)
