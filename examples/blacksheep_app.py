"""BlackSheep: a route with a typed parameter, a router with a prefix, a failing route."""

import logging

from blacksheep import Application, Response, Router, json, text

log = logging.getLogger("shop")


async def item(item_id: int) -> Response:
    log.info("looking up item %s", item_id)
    return json({"id": item_id})


async def fail() -> Response:
    raise RuntimeError("boom")


async def health() -> Response:
    return text("ok")


v1 = Router(prefix="/v1")
v1.add_get("/items/{int:item_id}", item)
router = Router(sub_routers=[v1])
router.add_get("/items/{int:item_id}", item)
router.add_get("/fail", fail)
router.add_get("/healthz", health)
app = Application(router=router)
